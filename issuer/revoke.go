package issuer

import (
	"context"
	"encoding/base64"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/store"
)

// Revoke implements RFC 7009 for refresh tokens: the session behind the token is recorded as
// logged out, so no renewal of it succeeds again. A grant without a session (its upstream token
// had no sid) is ended alone: one client revoking one grant never ends the user's other
// sessions (see revokeGrant). A token that is not a refresh token of ours is
// answered like a revoked one (RFC 7009 §2.2), except an internal access token, which this
// server does not revoke individually (unsupported_token_type).
func (i *Issuer) Revoke(ctx context.Context, c Client, token, hint string) (err error) {
	ctx, span := i.startSpan(ctx, "issuer.Revoke", c)
	defer func() { endSpan(span, err) }()
	if token == "" {
		return invalidRequest("token is required", nil)
	}
	now := i.cfg.Now()
	g, err := i.unseal(token, now)
	if err != nil {
		if strings.Count(token, ".") == 2 || hint == "access_token" {
			return oauthErr(CodeUnsupportedTokenType, "only refresh tokens can be revoked; they end the whole session", nil)
		}
		return nil
	}
	if g.ClientID != c.ID {
		return oauthErr(CodeUnauthorizedClient, "token was issued to another client", nil)
	}
	if g.SID == "" {
		return i.revokeGrant(ctx, c, g, now)
	}
	r := store.Revocation{SID: g.SID, Sub: g.Subject, At: now, Expires: i.ownRevocationExpiry(now), Reason: "revoke"}
	if err := i.record(ctx, r, ""); err != nil {
		return err
	}
	i.log.InfoContext(ctx, "session revoked", "event", "logout", "reason", "revoke", "client_id", c.ID,
		"sid", g.SID, "sub", g.Subject)
	return nil
}

// grantRevocationPrefix starts the key of a revocation that ends one grant without a session:
// the digest of the grant's upstream token, never a provider's session id (those hold no ':').
const grantRevocationPrefix = "grant:"

// grantRevocationKey is the session-revocation key that ends grant g alone.
func grantRevocationKey(g *grant) string {
	d := g.upstreamDigest()
	return grantRevocationPrefix + base64.RawURLEncoding.EncodeToString(d[:])
}

// revokeGrant ends a grant whose upstream token has no sid, and nothing more — as a recheck of
// such a token does: a subject-wide revocation would end every session of the user at every
// client. It is recorded like any logout (one write path, with its event), as the logout of a
// session whose id is the digest of the grant's upstream token, so the grant's renewals and a
// re-exchange of that token are refused (checkRevoked) at every replica until the token has
// expired; the user's other grants and sessions are untouched. On the feed it names a session
// no internal token carries (their sid is empty), so services refuse nothing more because of it.
func (i *Issuer) revokeGrant(ctx context.Context, c Client, g *grant, now time.Time) error {
	r := store.Revocation{SID: grantRevocationKey(g), Sub: g.Subject, At: now,
		Expires: time.Unix(g.UpstreamExpiry, 0).Add(i.cfg.Skew), Reason: "revoke"}
	if err := i.record(ctx, r, ""); err != nil {
		return err
	}
	i.log.InfoContext(ctx, "grant revoked", "event", "logout", "reason", "revoke", "client_id", c.ID,
		"sub", g.Subject, "upstream_token", TokenHash(g.UpstreamToken))
	return nil
}

// RevokeSession records a logout of session sid on behalf of an operator or another component.
func (i *Issuer) RevokeSession(ctx context.Context, sid, reason string) (store.Revocation, error) {
	if sid == "" {
		return store.Revocation{}, invalidRequest("sid is required", nil)
	}
	now := i.cfg.Now()
	r := store.Revocation{SID: sid, At: now, Expires: i.ownRevocationExpiry(now), Reason: reason}
	return r, i.record(ctx, r, "")
}

// RevokeSubject records a logout of every session of sub issued until now.
func (i *Issuer) RevokeSubject(ctx context.Context, sub, reason string) (store.Revocation, error) {
	if sub == "" {
		return store.Revocation{}, invalidRequest("sub is required", nil)
	}
	now := i.cfg.Now()
	r := store.Revocation{Sub: sub, At: now, Expires: i.ownRevocationExpiry(now), Reason: reason}
	return r, i.record(ctx, r, "")
}
