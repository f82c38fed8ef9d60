package issuer

import (
	"context"

	"github.com/tokengate/tokengate/store"
)

// EventRecorder stores a revocation and appends its event to the revocation event log in one
// transaction (store.EventLog.RecordRevocation), so that every recorded logout — back-channel,
// recheck, RFC 7009 revoke or admin — has exactly one event, and a logout acknowledged to its
// caller can never lose its event to a crash.
type EventRecorder interface {
	RecordRevocation(ctx context.Context, e store.Event) (store.Event, error)
	// RecordNewRevocation is RecordRevocation unless a stored revocation already covers the
	// event's; then nothing is written and it reports false (store.EventLog).
	RecordNewRevocation(ctx context.Context, e store.Event) (store.Event, bool, error)
}

// recordEvent records r with a new event and hands the event to OnEvent. With onlyNew, nothing
// is written when a stored revocation already covers r, and it reports false.
func (i *Issuer) recordEvent(ctx context.Context, r store.Revocation, onlyNew bool) (bool, error) {
	var (
		e        = store.Event{ID: newJTI(), Time: i.cfg.Now(), Revocation: r}
		recorded = true
		err      error
	)
	if onlyNew {
		e, recorded, err = i.Events.RecordNewRevocation(ctx, e)
	} else {
		e, err = i.Events.RecordRevocation(ctx, e)
	}
	if err != nil || !recorded {
		return false, err
	}
	if i.OnEvent != nil {
		i.OnEvent(e)
	}
	return true, nil
}
