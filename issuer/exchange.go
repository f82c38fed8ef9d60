package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/upstream"
)

// ExchangeRequest is an RFC 8693 token exchange request, already parsed.
type ExchangeRequest struct {
	SubjectToken       string
	SubjectTokenType   string
	RequestedTokenType string
	// Audience are the RFC 8693 audience values (logical service names).
	Audience []string
	// Resource are the RFC 8693/RFC 8707 resource values (absolute URIs of services).
	Resource []string
	Scope    string
	// ActorToken and ActorTokenType are RFC 8693 §2.1's, accepted only in a delegation (see
	// checkActor).
	ActorToken     string
	ActorTokenType string
}

// errRevoked marks a session or subject with a recorded logout.
var errRevoked = errors.New("session has been logged out")

// Exchange trades an upstream access token for an internal token and a refresh token. The
// upstream token is introspected once; later exchanges of the same token use the cached answer.
func (i *Issuer) Exchange(ctx context.Context, c Client, r ExchangeRequest) (TokenResponse, error) {
	ctx, span := i.startSpan(ctx, "issuer.Exchange", c)
	resp, err := i.exchange(ctx, c, r)
	i.cfg.Metrics.Exchange(outcome(err))
	endSpan(span, err)
	return resp, err
}

func (i *Issuer) exchange(ctx context.Context, c Client, r ExchangeRequest) (TokenResponse, error) {
	if p := i.peek(r.SubjectToken); p.ours {
		return i.delegate(ctx, c, r, p)
	}
	if err := i.checkFirstExchange(ctx, c, r); err != nil {
		return TokenResponse{}, err
	}
	if r.SubjectTokenType != TokenTypeAccessToken && r.SubjectTokenType != TokenTypeJWT {
		return TokenResponse{}, invalidRequest("subject_token_type must be "+TokenTypeAccessToken+" (or "+TokenTypeJWT+")", nil)
	}
	if r.RequestedTokenType != "" && r.RequestedTokenType != TokenTypeAccessToken {
		return TokenResponse{}, invalidRequest("requested_token_type must be "+TokenTypeAccessToken, nil)
	}
	auds, err := c.audiences(r.Audience, r.Resource)
	if err != nil {
		return TokenResponse{}, err
	}
	key := digest(r.SubjectToken)
	at, intro, fetchedAt, hit, err := i.verifySubject(ctx, c, key, r.SubjectToken)
	if err != nil {
		return TokenResponse{}, err
	}
	if err := i.checkSubject(ctx, c, at, r.SubjectToken); err != nil {
		return TokenResponse{}, err
	}
	if !hit {
		if intro, fetchedAt, hit, err = i.cache.get(ctx, key, r.SubjectToken, at, i.introspect); err != nil {
			return TokenResponse{}, unavailable("upstream provider is unreachable", err)
		}
	}
	i.cfg.Metrics.CacheLookup(hit)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attrCached.Bool(hit))
	}
	if !intro.Active {
		return TokenResponse{}, i.inactive(ctx, c, at, r.SubjectToken)
	}
	if err := i.checkIntrospected(ctx, c, at, intro.ClientID, r.SubjectToken); err != nil {
		return TokenResponse{}, err
	}
	if intro.Subject != "" && intro.Subject != at.Subject {
		return TokenResponse{}, invalidRequest("subject_token introspection does not match the token", nil)
	}
	g := grant{
		Version: grantVersion, ClientID: c.ID, Subject: at.Subject, SID: intro.Session(), Audience: auds,
		Roles: intro.RealmAccess.Roles, PreferredUsername: intro.PreferredUsername, ACR: intro.ACR,
		AuthTime: intro.AuthTime, UpstreamIssuedAt: at.IssuedAt.Unix(), UpstreamExpiry: at.Expiry.Unix(),
		UpstreamToken: r.SubjectToken, upstreamKey: digest(r.SubjectToken),
	}
	if err := i.checkRevoked(ctx, &g); err != nil {
		if errors.Is(err, errRevoked) {
			i.log.InfoContext(ctx, "exchange refused", "event", "exchange_refused", "client_id", c.ID,
				"reason", "logged_out", "sid", g.SID, "subject_token", TokenHash(r.SubjectToken))
			return TokenResponse{}, invalidRequest("subject_token belongs to a session that has been logged out; "+
				"tokengate does not accept that session again, even if the upstream provider revives it: log in again", err)
		}
		return TokenResponse{}, err
	}
	if g.Scope, err = narrowScope(intro.Scope, r.Scope); err != nil {
		return TokenResponse{}, err
	}
	now := i.cfg.Now()
	if now.Unix() >= g.UpstreamExpiry {
		exp := time.Unix(g.UpstreamExpiry, 0).UTC().Format(time.RFC3339)
		i.log.InfoContext(ctx, "exchange refused", "event", "exchange_refused", "client_id", c.ID,
			"reason", upstream.ReasonExpired, "exp", exp, "skew", "0s", "sid", g.SID, "subject_token", TokenHash(r.SubjectToken))
		return TokenResponse{}, invalidRequest("subject_token expired at "+exp+" (tokengate's clock: "+
			now.UTC().Format(time.RFC3339)+"; allowed clock skew for access tokens: 0s)", nil)
	}
	// A cached answer is as old as its introspection: once RecheckAfter has passed since the
	// session was last checked, ask again (with renewal's recheck), so a session that ended
	// upstream without a back-channel logout stops exchanging when it stops renewing.
	i.scheduleRecheck(sessionKey(g.SID, g.Subject), fetchedAt.Add(i.cfg.RecheckAfter), now)
	if err := i.recheck(ctx, &g, ""); err != nil {
		reason, desc := "inactive", "subject_token is not active"
		switch {
		case errors.Is(err, errUpstreamExpired):
			reason, desc = "expired", "subject_token has expired"
		case errors.Is(err, errRevoked):
			reason, desc = "upstream_inactive", "subject_token belongs to a session that is no longer active at the upstream provider"
		case !errors.Is(err, errUpstreamInactive):
			return TokenResponse{}, err
		}
		i.log.InfoContext(ctx, "exchange refused", "event", "exchange_refused", "client_id", c.ID,
			"reason", reason, "sid", g.SID, "subject_token", TokenHash(r.SubjectToken))
		return TokenResponse{}, invalidRequest(desc, err)
	}
	g.IssuedAt = now.Unix()
	resp, claims, err := i.issue(&g, g.Scope, now)
	if err != nil {
		return TokenResponse{}, err
	}
	if resp.RefreshToken, err = i.seal(&g); err != nil {
		return TokenResponse{}, err
	}
	resp.IssuedTokenType = TokenTypeAccessToken
	i.log.InfoContext(ctx, "token exchanged", "event", "exchange", "client_id", c.ID, "sub", g.Subject,
		"sid", g.SID, "jti", claims.JTI, "aud", g.Audience, "subject_token", TokenHash(r.SubjectToken),
		"cached_introspection", hit)
	return resp, nil
}

// verifySubject checks the upstream token (whose digest is key) locally. A token seen before
// (the same bytes, not yet expired) is answered from the introspection cache without repeating
// the check: it passed the same signature check when it was cached; hit reports that, with
// the cached answer and when it was fetched. A refusal names its reason to c (the token is c's
// own: what it says of itself is no secret to c) and in an exchange_refused line.
func (i *Issuer) verifySubject(ctx context.Context, c Client, key [32]byte, token string) (at upstream.AccessToken,
	intro upstream.Introspection, fetchedAt time.Time, hit bool, err error) {
	if e, ok := i.cache.peek(key); ok {
		at, intro = e.unpack()
		return at, intro, e.fetched(), true, nil
	}
	at, err = i.upstream.VerifyAccessToken(ctx, token)
	if err != nil {
		if errors.Is(err, upstream.ErrUnavailable) {
			return at, intro, fetchedAt, false, unavailable("upstream provider is unreachable", err)
		}
		var r *upstream.Refusal
		if !errors.As(err, &r) {
			r = &upstream.Refusal{Reason: upstream.ReasonInvalid, Detail: "is not a valid access token of the upstream provider"}
		}
		attrs := append([]any{"event", "exchange_refused", "client_id", c.ID, "reason", r.Reason}, r.Attrs...)
		i.log.InfoContext(ctx, "exchange refused", append(attrs, "subject_token", TokenHash(token))...)
		return at, intro, fetchedAt, false, invalidRequest("subject_token "+r.Detail, err)
	}
	return at, intro, fetchedAt, false, nil
}

// issue mints an internal token for g.
func (i *Issuer) issue(g *grant, scope string, now time.Time) (TokenResponse, AccessClaims, error) {
	tok, claims, err := i.mint(g, scope, now)
	if err != nil {
		return TokenResponse{}, claims, oauthErr(CodeServerError, "could not sign the token", err)
	}
	return TokenResponse{
		AccessToken: tok, TokenType: "Bearer", ExpiresIn: claims.Expiry - claims.IssuedAt, Scope: scope,
	}, claims, nil
}

// seal encrypts g as a refresh token.
func (i *Issuer) seal(g *grant) (string, error) {
	plain, err := json.Marshal(g)
	if err != nil {
		return "", oauthErr(CodeServerError, "could not seal the refresh token", err)
	}
	rt, err := i.keys.Seal(plain)
	if err != nil {
		return "", oauthErr(CodeServerError, "could not seal the refresh token", err)
	}
	return rt, nil
}

// checkRevoked fails with errRevoked when g's session (for a grant without one: g itself), or
// its subject since g's upstream token was issued, has a recorded logout. When the store cannot answer it fails closed.
func (i *Issuer) checkRevoked(ctx context.Context, g *grant) error {
	key := g.SID
	if key == "" {
		key = grantRevocationKey(g) // a grant without a session is revoked alone (revokeGrant)
	}
	// A logout the store could not write yet is refused here all the same.
	if i.pending.session(key) {
		return fmt.Errorf("session %s (not yet written): %w", key, errRevoked)
	}
	if r, ok := i.pending.subject(g.Subject); ok && g.sessionStart() <= r.At.Unix() {
		return fmt.Errorf("subject (not yet written): %w", errRevoked)
	}
	_, err := i.store.SessionRevocation(ctx, key)
	switch {
	case err == nil:
		return fmt.Errorf("session %s: %w", key, errRevoked)
	case !errors.Is(err, store.ErrNotFound):
		return unavailable("revocation state is unknown", err)
	}
	r, err := i.store.SubjectRevocation(ctx, g.Subject)
	switch {
	case err == nil:
		// The session's start, not the upstream token's iat: Keycloak's refreshed tokens of a
		// session that began before the revocation carry a later iat but the same auth_time.
		if g.sessionStart() <= r.At.Unix() {
			return fmt.Errorf("subject: %w", errRevoked)
		}
	case !errors.Is(err, store.ErrNotFound):
		return unavailable("revocation state is unknown", err)
	}
	return nil
}
