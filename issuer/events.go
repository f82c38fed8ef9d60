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
}

// recordEvent records r with a new event and hands the event to OnEvent.
func (i *Issuer) recordEvent(ctx context.Context, r store.Revocation) error {
	e, err := i.Events.RecordRevocation(ctx, store.Event{ID: newJTI(), Time: i.cfg.Now(), Revocation: r})
	if err != nil {
		return err
	}
	if i.OnEvent != nil {
		i.OnEvent(e)
	}
	return nil
}

// AnnounceKeyRevoked appends the emergency revocation of signing key kid to the event log, so
// that services following their Shared Signals stream refetch the JWKS at once instead of at
// its max-age. Without an event log it does nothing (services then refetch at max-age).
func (i *Issuer) AnnounceKeyRevoked(ctx context.Context, kid string) error {
	if i.Events == nil {
		return nil
	}
	e, err := i.Events.RecordRevocation(ctx, store.Event{ID: newJTI(), Time: i.cfg.Now(), KeyRevoked: kid})
	if err != nil {
		return unavailable("the key revocation could not be announced", err)
	}
	if i.OnEvent != nil {
		i.OnEvent(e)
	}
	return nil
}
