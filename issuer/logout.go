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
// carries, with the claim of the token's jti in the same store transaction, before returning.
// A replayed jti (claimed before, so its logout is on record) is refused.
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
	// The logout and the claim of its token's jti are one store transaction, bounded: a store
	// that cannot commit (disk full, etcd without quorum) is answered 503 promptly, never
	// holding the provider's call, and the logout is held in memory (refused here at once,
	// written — its jti claimed — when the store can). A jti is claimed only with its logout,
	// so a claimed one is a replay; a logout Keycloak also signalled on its Shared Signals
	// stream may be on record already: then only the jti is claimed, nothing is put on the feed
	// again, but the relay still forwards the token (the BFF needs it to end its own session).
	claim := store.Claim{JTI: lt.JTI, Expires: replayUntil.Add(i.cfg.Skew)}
	wctx, cancel := context.WithTimeout(ctx, i.cfg.WriteTimeout)
	e, o, err := i.store.RecordNewRevocation(wctx, store.Event{ID: newJTI(), Time: now, Revocation: r, Claim: claim})
	cancel()
	if err != nil {
		i.holdUnwritten(ctx, r, raw, claim, err)
		return store.Revocation{}, unavailable("revocation could not be recorded", err)
	}
	if o == store.Replayed {
		i.log.WarnContext(ctx, "logout refused", "event", "logout_refused", "reason", "replayed jti", "jti", lt.JTI)
		i.cfg.Metrics.Logout("backchannel", "refused", "replay")
		return store.Revocation{}, invalidRequest("logout_token was already used", nil)
	}
	i.pending.written(r)
	msg, result := "logout recorded", "recorded"
	if o == store.Covered {
		msg, result = "logout already on record", "duplicate"
	}
	i.cfg.Metrics.Logout("backchannel", result, "")
	if o == store.Recorded {
		i.publish.Recorded(e, raw)
	} else {
		i.publish.AlreadyRecorded(raw)
	}
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
func (i *Issuer) RecordUpstreamLogout(ctx context.Context, r store.Revocation) (bool, error) {
	return i.RecordUpstreamSET(ctx, store.Claim{}, r)
}

// RecordUpstreamSET is RecordUpstreamLogout for a logout carried by a verified Security Event
// Token: c claims the SET's jti in the same store transaction that records r (the one write
// path, store.RecordNewRevocation). It reports false, writing nothing, for a SET whose jti is
// claimed already (delivered again); a covered logout is not recorded again but its jti is
// claimed. When it fails nothing is claimed: the SET, not acknowledged, comes again.
func (i *Issuer) RecordUpstreamSET(ctx context.Context, c store.Claim, r store.Revocation) (_ bool, err error) {
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
	return i.recordNew(ctx, r, c)
}
