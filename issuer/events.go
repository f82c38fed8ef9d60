package issuer

import (
	"context"
	"errors"
	"strings"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/keys"
)

// Publisher is told what happens after a revocation is durably recorded: the Shared Signals
// transmitter wakes its polls, the logout relay forwards the back-channel logout token. It is
// called after the commit, so it never announces a logout that could still be lost, and it
// must not block.
type Publisher interface {
	// Recorded is called once per recorded revocation with its event, as appended to the
	// event log (Seq set). logoutToken is the verified back-channel logout token behind it,
	// empty for every other source.
	Recorded(e store.Event, logoutToken string)
	// AlreadyRecorded is called for a verified back-channel logout whose revocation was
	// already on record (Keycloak's Shared Signals stream was first): no event was appended,
	// so there is nothing new for the feed, but logoutToken is still to be relayed.
	AlreadyRecorded(logoutToken string)
}

// noPublisher tells nobody.
type noPublisher struct{}

func (noPublisher) Recorded(store.Event, string) {}
func (noPublisher) AlreadyRecorded(string)       {}

// record durably stores r with a new event in the revocation event log (one transaction), then
// tells the publisher. logoutToken is the back-channel logout token behind r, if any.
//
// A revocation the store does not commit within WriteTimeout is held in memory (refused here at
// once, written by FlushPending) and the caller gets temporarily_unavailable.
func (i *Issuer) record(ctx context.Context, r store.Revocation, logoutToken string) error {
	wctx, cancel := context.WithTimeout(ctx, i.cfg.WriteTimeout)
	e, err := i.store.RecordRevocation(wctx, store.Event{ID: newJTI(), Time: i.cfg.Now(), Revocation: r})
	cancel()
	if err != nil {
		i.holdUnwritten(ctx, r, logoutToken, store.Claim{}, err)
		return unavailable("revocation could not be recorded", err)
	}
	i.pending.written(r)
	source, _, _ := strings.Cut(r.Reason, ":")
	i.cfg.Metrics.Logout(source, "recorded", "")
	i.publish.Recorded(e, logoutToken)
	return nil
}

// recordNew is record unless a stored revocation already covers r — the same logout delivered
// by the other channel (back-channel logout and Keycloak's Shared Signals stream), or again.
// Then nothing is written, no event is appended or published, and it reports false. The check
// is part of the store's write transaction, and so is the claim of c.JTI when set (the jti of
// the Security Event Token that carried r): a jti claimed before is a replay, reported false
// with nothing written; a write that fails claims nothing, so the SET may come again.
func (i *Issuer) recordNew(ctx context.Context, r store.Revocation, c store.Claim) (bool, error) {
	wctx, cancel := context.WithTimeout(ctx, i.cfg.WriteTimeout)
	e, o, err := i.store.RecordNewRevocation(wctx, store.Event{ID: newJTI(), Time: i.cfg.Now(), Revocation: r, Claim: c})
	cancel()
	if err != nil {
		i.holdUnwritten(ctx, r, "", store.Claim{}, err)
		return false, unavailable("revocation could not be recorded", err)
	}
	if o != store.Replayed {
		i.pending.written(r)
	}
	source, _, _ := strings.Cut(r.Reason, ":")
	if o != store.Recorded {
		i.cfg.Metrics.Logout(source, "duplicate", "")
		return false, nil
	}
	i.cfg.Metrics.Logout(source, "recorded", "")
	i.publish.Recorded(e, "")
	return true, nil
}

// RevokeKey revokes signing key kid in an emergency (a suspected leak): the key leaves the JWKS
// and its key event is appended to the revocation event log in one store transaction, so a
// revoked key is always announced (services following their Shared Signals stream refetch the
// JWKS at once instead of at its max-age). The publisher is then told, as for a revocation (no
// logout token). A kid revoked before is announced again. An unknown kid is returned as
// keys.ErrNoKey (nothing written); a store that cannot commit, as temporarily_unavailable
// (nothing written either).
func (i *Issuer) RevokeKey(ctx context.Context, kid string) (keys.Change, error) {
	ch, err := i.keys.RevokeKey(ctx, kid)
	switch {
	case errors.Is(err, keys.ErrNoKey):
		return keys.Change{}, err
	case err != nil:
		return keys.Change{}, unavailable("the key revocation could not be stored", err)
	}
	i.publish.Recorded(ch.Event, "")
	return ch, nil
}
