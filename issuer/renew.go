package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/internal/store"
)

// recheckBackoff is how long a session waits before re-introspecting after the provider failed to answer.
const recheckBackoff = 5 * time.Second

// Renew issues a new internal token from a refresh token without calling the provider, except
// for one re-introspection per session every RecheckAfter.
func (i *Issuer) Renew(ctx context.Context, c Client, refreshToken, scope string) (TokenResponse, error) {
	ctx, span := i.startSpan(ctx, "issuer.Renew", c)
	resp, err := i.renew(ctx, c, refreshToken, scope)
	result, reason := outcome(err)
	if result != "refused" { // refusals are counted with their precise reason
		i.cfg.Metrics.Renewal(result, reason)
	}
	endSpan(span, err)
	return resp, err
}

func (i *Issuer) renew(ctx context.Context, c Client, refreshToken, scope string) (TokenResponse, error) {
	now := i.cfg.Now()
	g, err := i.unseal(refreshToken, now)
	if err != nil {
		i.cfg.Metrics.Renewal("refused", "malformed")
		return TokenResponse{}, invalidGrant("refresh token is invalid", err)
	}
	if g.ClientID != c.ID {
		i.refused(ctx, c, g, "wrong_client")
		return TokenResponse{}, invalidGrant("refresh token was issued to another client", nil)
	}
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
	if err := i.recheck(ctx, g, refreshToken); err != nil {
		switch {
		case errors.Is(err, errUpstreamExpired):
			i.refused(ctx, c, g, "upstream_expired")
			return TokenResponse{}, invalidGrant("the upstream token behind this grant has expired; exchange a new one", err)
		case errors.Is(err, errRevoked), errors.Is(err, errUpstreamInactive):
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
	spanReason(ctx, reason)
	i.log.InfoContext(ctx, "renewal refused", "event", "renewal_refused", "client_id", c.ID,
		"sub", g.Subject, "sid", g.SID, "reason", reason)
}

// unseal opens a refresh token (from the grant cache when it was opened before) at now. The
// cache keeps the grant without its upstream token (the bulk of it): a recheck, once per
// RecheckAfter, opens the refresh token again for it (upstreamToken).
func (i *Issuer) unseal(token string, now time.Time) (*grant, error) {
	if token == "" {
		return nil, errors.New("empty refresh token")
	}
	key := digest(token)
	if g, ok := i.grants.get(key, now); ok {
		return g, nil
	}
	g, err := i.open(token)
	if err != nil {
		return nil, err
	}
	slim := *g
	slim.UpstreamToken = ""
	i.grants.put(key, &slim, time.Unix(g.UpstreamExpiry, 0), now)
	return g, nil
}

// upstreamToken returns g's upstream token, opening refreshToken (g's sealed form) again when
// g came from the grant cache without it.
func (i *Issuer) upstreamToken(g *grant, refreshToken string) (string, error) {
	if g.UpstreamToken != "" {
		return g.UpstreamToken, nil
	}
	full, err := i.open(refreshToken)
	if err != nil {
		return "", err
	}
	return full.UpstreamToken, nil
}

// open unseals and decodes a refresh token.
func (i *Issuer) open(token string) (*grant, error) {
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
	g.upstreamKey = digest(g.UpstreamToken)
	return &g, nil
}

// scheduleRecheck sets when the session's upstream token is next introspected, unless a later
// time is already set. The entry expires at that time: once due, a session needs no entry.
func (i *Issuer) scheduleRecheck(key sessionID, due, now time.Time) {
	i.rechecks.update(key, now, func(old int64, ok bool) (int64, time.Time, bool) {
		if ok && due.UnixNano() <= old {
			return old, time.Time{}, false
		}
		return due.UnixNano(), due, true
	})
}

// recheckDue reports whether the session's upstream token is due for introspection at now (a
// session never introspected by this process, or whose entry was evicted, is).
func (i *Issuer) recheckDue(key sessionID, now time.Time) bool {
	due, ok := i.rechecks.get(key, now)
	return !ok || now.UnixNano() >= due
}

// Outcomes of a recheck that refuse: the session ended upstream and its logout is recorded
// (errRevoked), the upstream token expired (by the provider's clock, within Skew of its exp), or
// the provider called a token without sid inactive (refused, nothing recorded).
var (
	errUpstreamExpired  = errors.New("the upstream token has expired")
	errUpstreamInactive = errors.New("the upstream token is no longer active")
)

// recheck re-introspects g's upstream token when RecheckAfter has passed since the session was
// last introspected (renewal and exchange share it, and one call per session at a time).
// Inactive means the session ended upstream without telling us (idle expiry, user disabled,
// lost logout): it is recorded as a logout of that session, and of nothing more — a token
// without sid is refused without a record, never by a subject-wide revocation. Inactive for a
// token within Skew of its exp is its expiry by a provider whose clock runs ahead, not a logout.
// The answer is remembered for the token (the introspection cache), so its later renewals and
// exchanges are refused without asking again. An unreachable provider does not stop renewal;
// the next attempt waits recheckBackoff.
func (i *Issuer) recheck(ctx context.Context, g *grant, refreshToken string) error {
	key := sessionKey(g.SID, g.Subject)
	tokKey := g.upstreamDigest()
	if e, ok := i.cache.peek(tokKey); ok && !e.active {
		return fmt.Errorf("recheck: %w", errUpstreamInactive)
	}
	now := i.cfg.Now()
	if !i.recheckDue(key, now) {
		return nil
	}
	_, err, _ := i.cache.flight.Do("recheck:"+string(key[:]), func() (any, error) {
		if !i.recheckDue(key, i.cfg.Now()) {
			return nil, nil // another caller just checked
		}
		tok, err := i.upstreamToken(g, refreshToken)
		if err != nil {
			return nil, oauthErr(CodeServerError, "could not open the refresh token again", err)
		}
		intro, err := i.introspect(context.WithoutCancel(ctx), tok)
		if err != nil {
			i.scheduleRecheck(key, now.Add(recheckBackoff), now)
			i.log.WarnContext(ctx, "session recheck failed; renewal allowed", "event", "recheck_failed",
				"sid", g.SID, "error", err.Error())
			return nil, nil
		}
		if intro.Active {
			i.scheduleRecheck(key, now.Add(i.cfg.RecheckAfter), now)
			return nil, nil
		}
		// The cached verdict refuses the token's later renewals and exchanges without asking.
		// The session stays due: should the verdict be evicted, the next renewal asks again
		// instead of passing as "checked recently".
		i.rechecks.forget(key)
		exp := time.Unix(g.UpstreamExpiry, 0)
		i.cache.markInactive(tokKey, exp)
		switch {
		case !now.Add(i.cfg.Skew).Before(exp):
			i.log.InfoContext(ctx, "upstream token expired", "event", "recheck_expired", "sid", g.SID, "sub", g.Subject)
			return nil, fmt.Errorf("recheck: %w", errUpstreamExpired)
		case g.SID == "":
			i.log.InfoContext(ctx, "upstream token inactive; no session to revoke", "event", "recheck_inactive", "sub", g.Subject)
			return nil, fmt.Errorf("recheck: %w", errUpstreamInactive)
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
