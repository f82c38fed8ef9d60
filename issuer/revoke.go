package issuer

import (
	"context"
	"strings"

	"github.com/tokengate/tokengate/internal/store"
)

// Revoke implements RFC 7009 for refresh tokens: the session behind the token is recorded as
// logged out, so no renewal of it succeeds again. A token that is not a refresh token of ours is
// answered like a revoked one (RFC 7009 §2.2), except an internal access token, which this
// server does not revoke individually (unsupported_token_type).
func (i *Issuer) Revoke(ctx context.Context, c Client, token, hint string) error {
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
	r := store.Revocation{SID: g.SID, Sub: g.Subject, At: now, Expires: i.ownRevocationExpiry(now), Reason: "revoke"}
	if err := i.record(ctx, r, ""); err != nil {
		return err
	}
	i.log.InfoContext(ctx, "session revoked", "event", "logout", "reason", "revoke", "client_id", c.ID,
		"sid", g.SID, "sub", g.Subject)
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
