package issuer

import (
	"context"
	"errors"
	"time"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/upstream"
)

// maxLogoutAge bounds how old a logout token without exp may be.
const maxLogoutAge = 5 * time.Minute

// RecordLogout verifies an OIDC Back-Channel Logout token and durably records the logout it
// carries before returning. A replayed jti is refused.
func (i *Issuer) RecordLogout(ctx context.Context, raw string) (_ store.Revocation, err error) {
	ctx, span := i.startSpan(ctx, "issuer.RecordLogout", Client{})
	defer func() { endSpan(span, err) }()
	if raw == "" {
		return store.Revocation{}, invalidRequest("logout_token is required", nil)
	}
	now := i.cfg.Now()
	lt, err := i.upstream.VerifyLogoutToken(ctx, raw, upstream.LogoutPolicy{
		Audiences: i.cfg.LogoutAudiences, Now: now, Skew: i.cfg.Skew,
	})
	if err != nil {
		if errors.Is(err, upstream.ErrUnavailable) {
			return store.Revocation{}, unavailable("upstream provider is unreachable", err)
		}
		i.log.WarnContext(ctx, "logout refused", "event", "logout_refused", "reason", err.Error(),
			"logout_token", TokenHash(raw))
		i.cfg.Metrics.Logout("backchannel", "refused", "invalid")
		return store.Revocation{}, invalidRequest("logout_token is invalid", err)
	}
	replayUntil := lt.Expiry
	if replayUntil.IsZero() {
		if lt.IssuedAt.Add(maxLogoutAge + i.cfg.Skew).Before(now) {
			return store.Revocation{}, invalidRequest("logout_token without exp is too old", nil)
		}
		replayUntil = lt.IssuedAt.Add(maxLogoutAge)
	}
	r := store.Revocation{SID: lt.SID, Sub: lt.Subject, At: now, Expires: i.revocationExpiry(now), Reason: "backchannel"}
	if lt.SID == "" {
		// Refuse what was issued up to the logout itself, by the provider's clock (the
		// verifier refused an iat more than Skew ahead of ours): a replica whose clock runs
		// behind would otherwise leave renewable the sessions begun in between. A later login
		// stays valid.
		r.At = lt.IssuedAt
	}
	// The store's work for this logout shares one bound: a store that cannot commit (disk
	// full, etcd without quorum) is answered 503 promptly, never holding the provider's call,
	// and the logout is held in memory (refused here at once, written when the store can).
	wctx, cancel := context.WithTimeout(ctx, i.cfg.WriteTimeout)
	defer cancel()
	fresh, err := i.store.ClaimJTI(wctx, lt.JTI, replayUntil.Add(i.cfg.Skew))
	if err != nil {
		i.holdUnwritten(ctx, r, raw, err)
		return store.Revocation{}, unavailable("replay state is unknown", err)
	}
	if !fresh {
		// The jti was claimed before. If that delivery's logout is on record this is a replay;
		// if not, recording failed after the claim (503 to the sender) and this is its retry.
		recorded, err := i.alreadyRecorded(wctx, r)
		if err != nil {
			i.holdUnwritten(ctx, r, raw, err)
			return store.Revocation{}, err
		}
		if recorded {
			i.log.WarnContext(ctx, "logout refused", "event", "logout_refused", "reason", "replayed jti", "jti", lt.JTI)
			i.cfg.Metrics.Logout("backchannel", "refused", "replay")
			return store.Revocation{}, invalidRequest("logout_token was already used", nil)
		}
	}
	// A logout Keycloak also signalled on its Shared Signals stream may be on record already:
	// then it is not recorded (nor put on the feed) again, but the relay still forwards the
	// token (the BFF needs it to end its own session).
	e, recorded, err := i.store.RecordNewRevocation(wctx, store.Event{ID: newJTI(), Time: now, Revocation: r})
	if err != nil {
		i.holdUnwritten(ctx, r, raw, err)
		return store.Revocation{}, unavailable("revocation could not be recorded", err)
	}
	i.pending.written(r)
	msg, result := "logout recorded", "recorded"
	if !recorded {
		msg, result = "logout already on record", "duplicate"
		e = store.Event{Time: now, Revocation: r} // not in the log: Seq 0
	}
	i.cfg.Metrics.Logout("backchannel", result, "")
	i.publish.Recorded(e, raw)
	i.log.InfoContext(ctx, msg, "event", "logout", "reason", "backchannel", "sid", lt.SID,
		"sub", lt.Subject, "jti", lt.JTI)
	return r, nil
}

// RecordUpstreamLogout durably records a logout the provider signalled by another channel than
// back-channel logout (its Shared Signals stream): r names the session (SID) or the subject
// and its At, and its Reason; the issuer sets Expires. It reports false, writing nothing, when
// a stored revocation already covers r, so a logout delivered by both channels is one
// revocation and one event on the feed.
//
// A session logout ended the session at the provider: it is kept while the session's upstream
// tokens may live. A subject-wide one (a credential changed or compromised, an account
// disabled) may leave the provider's sessions alive and issuing tokens — a password changed
// without signing out other devices, an administrator's password reset — so it is kept for
// the longest session, as an operator's revocation is.
func (i *Issuer) RecordUpstreamLogout(ctx context.Context, r store.Revocation) (_ bool, err error) {
	ctx, span := i.startSpan(ctx, "issuer.RecordUpstreamLogout", Client{})
	defer func() { endSpan(span, err) }()
	if r.SID == "" && r.Sub == "" {
		return false, invalidRequest("a logout names a session or a subject", nil)
	}
	now := i.cfg.Now()
	// The provider's time of the logout, as RecordLogout takes a logout token's iat: within
	// Skew ahead of this replica's clock it is the provider's clock, not a forgery; beyond it,
	// it is not trusted to refuse logins that begin later, and the logout counts from now.
	if r.At.IsZero() || r.At.After(now.Add(i.cfg.Skew)) {
		r.At = now
	}
	r.Expires = i.revocationExpiry(now)
	if r.SID == "" {
		r.Expires = i.ownRevocationExpiry(now)
	}
	return i.recordNew(ctx, r)
}

// alreadyRecorded reports whether the logout r describes is already on record (a session logout
// of r.SID, or a subject-wide one of r.Sub at or after r.At).
func (i *Issuer) alreadyRecorded(ctx context.Context, r store.Revocation) (bool, error) {
	var (
		got store.Revocation
		err error
	)
	if r.SID != "" {
		got, err = i.store.SessionRevocation(ctx, r.SID)
	} else {
		got, err = i.store.SubjectRevocation(ctx, r.Sub)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, unavailable("revocation state is unknown", err)
	}
	return r.SID != "" || !got.At.Before(r.At), nil
}
