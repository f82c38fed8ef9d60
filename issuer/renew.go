package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/store"
)

// recheckBackoff is how long a session waits before re-introspecting after the provider failed to answer.
const recheckBackoff = 5 * time.Second

// Renew issues a new internal token from a refresh token without calling the provider, except
// for one re-introspection per session every RecheckAfter.
func (i *Issuer) Renew(ctx context.Context, c Client, refreshToken, scope string) (TokenResponse, error) {
	resp, err := i.renew(ctx, c, refreshToken, scope)
	result, reason := outcome(err)
	if result != "refused" { // refusals are counted with their precise reason
		i.cfg.Metrics.Renewal(result, reason)
	}
	return resp, err
}

func (i *Issuer) renew(ctx context.Context, c Client, refreshToken, scope string) (TokenResponse, error) {
	g, err := i.unseal(refreshToken)
	if err != nil {
		i.cfg.Metrics.Renewal("refused", "malformed")
		return TokenResponse{}, invalidGrant("refresh token is invalid", err)
	}
	if g.ClientID != c.ID {
		i.refused(ctx, c, g, "wrong_client")
		return TokenResponse{}, invalidGrant("refresh token was issued to another client", nil)
	}
	now := i.cfg.Now()
	if now.Unix() >= g.UpstreamExpiry {
		i.refused(ctx, c, g, "upstream_expired")
		return TokenResponse{}, invalidGrant("the upstream token behind this grant has expired; exchange a new one", nil)
	}
	if err := i.checkRevoked(ctx, g); err != nil {
		if errors.Is(err, errRevoked) {
			i.refused(ctx, c, g, "logged_out")
			return TokenResponse{}, invalidGrant("session has been logged out", err)
		}
		return TokenResponse{}, err
	}
	if err := i.recheck(ctx, g); err != nil {
		if errors.Is(err, errRevoked) {
			i.refused(ctx, c, g, "upstream_inactive")
			return TokenResponse{}, invalidGrant("session is no longer active at the upstream provider", err)
		}
		return TokenResponse{}, err
	}
	sc, err := narrowScope(g.Scope, scope)
	if err != nil {
		i.cfg.Metrics.Renewal("refused", "invalid_scope")
		return TokenResponse{}, err
	}
	// The answer carries no refresh_token: the client keeps using the one it has (RFC 6749 §6
	// lets the server issue a new one or not; re-sending the same 2 KiB token is pure cost).
	resp, _, err := i.issue(g, sc, now)
	return resp, err
}

func (i *Issuer) refused(ctx context.Context, c Client, g *grant, reason string) {
	i.cfg.Metrics.Renewal("refused", reason)
	i.log.InfoContext(ctx, "renewal refused", "event", "renewal_refused", "client_id", c.ID,
		"sub", g.Subject, "sid", g.SID, "reason", reason)
}

func (i *Issuer) unseal(token string) (*grant, error) {
	if token == "" {
		return nil, errors.New("empty refresh token")
	}
	key := refreshKey(token)
	if g := i.grants.get(key); g != nil {
		return g, nil
	}
	plain, err := i.keys.Unseal(token)
	if err != nil {
		return nil, err
	}
	var g grant
	if err := json.Unmarshal(plain, &g); err != nil {
		return nil, fmt.Errorf("decode grant: %w", err)
	}
	if g.Version != grantVersion || g.ClientID == "" || g.Subject == "" {
		return nil, errors.New("grant is incomplete")
	}
	i.grants.put(key, &g)
	return &g, nil
}

// markChecked records that the session's upstream token was introspected at t.
func (i *Issuer) markChecked(key string, t time.Time) {
	i.checkMu.Lock()
	if t.After(i.lastChecked[key]) {
		i.lastChecked[key] = t
	}
	i.checkMu.Unlock()
}

// recheck re-introspects g's upstream token when RecheckAfter has passed since the session was
// last introspected. Inactive means the session ended upstream without telling us (idle expiry,
// user disabled, lost logout): it is recorded as logged out. An unreachable provider does not
// stop renewal; the next attempt waits recheckBackoff.
func (i *Issuer) recheck(ctx context.Context, g *grant) error {
	key := sessionKey(g.SID, g.Subject)
	now := i.cfg.Now()
	i.checkMu.Lock()
	last := i.lastChecked[key]
	i.checkMu.Unlock()
	if now.Sub(last) < i.cfg.RecheckAfter {
		return nil
	}
	_, err, _ := i.cache.flight.Do("recheck:"+key, func() (any, error) {
		i.checkMu.Lock()
		last := i.lastChecked[key]
		i.checkMu.Unlock()
		if i.cfg.Now().Sub(last) < i.cfg.RecheckAfter {
			return nil, nil // another caller just checked
		}
		intro, err := i.introspect(context.WithoutCancel(ctx), g.UpstreamToken)
		if err != nil {
			i.markChecked(key, now.Add(recheckBackoff-i.cfg.RecheckAfter))
			i.log.WarnContext(ctx, "session recheck failed; renewal allowed", "event", "recheck_failed",
				"sid", g.SID, "error", err.Error())
			return nil, nil
		}
		i.markChecked(key, now)
		if intro.Active {
			return nil, nil
		}
		r := store.Revocation{SID: g.SID, Sub: g.Subject, At: now, Expires: i.revocationExpiry(now), Reason: "recheck"}
		if err := i.record(ctx, r, ""); err != nil {
			return nil, err
		}
		i.log.InfoContext(ctx, "session ended upstream", "event", "logout", "reason", "recheck",
			"sid", g.SID, "sub", g.Subject)
		return nil, fmt.Errorf("recheck: %w", errRevoked)
	})
	return err
}

// Sweep forgets recheck bookkeeping older than any upstream token can live. Call it periodically.
func (i *Issuer) Sweep(now time.Time) {
	i.checkMu.Lock()
	defer i.checkMu.Unlock()
	for k, t := range i.lastChecked {
		if now.Sub(t) > i.cfg.MaxUpstreamLifetime+i.cfg.RecheckAfter {
			delete(i.lastChecked, k)
		}
	}
}
