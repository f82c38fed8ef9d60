package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// AccessToken is what a locally verified provider access token says.
type AccessToken struct {
	Subject  string
	Expiry   time.Time
	IssuedAt time.Time
	// Audience is the aud claim (a string or an array in the token; a list here).
	Audience []string
	// AuthorizedParty is the azp claim: the provider client the token was issued to.
	AuthorizedParty string
}

// VerifyAccessToken checks a provider access token locally: signature against the provider's
// JWKS with pinned algorithms, iss, exp, and that it is an access token (Keycloak's typ claim,
// when present, is "Bearer"; its JOSE typ, when present, JWT or at+jwt). Introspection
// remains the authority on whether it is active. A refusal is a *Refusal naming its reason,
// or wraps ErrUnavailable when the provider's keys cannot be fetched.
func (c *Client) VerifyAccessToken(ctx context.Context, raw string) (AccessToken, error) {
	d, err := c.discover(ctx)
	if err != nil {
		return AccessToken{}, err
	}
	// What the token says of itself is read first: a refusal then names the token's kind, its
	// issuer or its exp, and costs no key fetch. Only go-oidc's verifier below accepts.
	if r := precheck(raw, c.cfg.Issuer, d.algs, time.Now()); r != nil {
		return AccessToken{}, r
	}
	slot := &keyErr{}
	tok, err := d.access.Verify(context.WithValue(ctx, keyErrKey{}, slot), raw)
	if err != nil {
		return AccessToken{}, classifyAccess(err, slot.err, raw, c.refetchInterval(), time.Now())
	}
	var extra struct {
		Typ string `json:"typ"`
		AZP string `json:"azp"`
	}
	if err := tok.Claims(&extra); err != nil {
		return AccessToken{}, refuse(ReasonInvalid, "has claims that cannot be read", err)
	}
	if extra.Typ != "" && !strings.EqualFold(extra.Typ, "Bearer") {
		// Unreachable after precheck; kept so that acceptance never depends on it.
		return AccessToken{}, refuse(ReasonTokenType, "is not an access token: its typ is "+echo(extra.Typ), nil)
	}
	return AccessToken{Subject: tok.Subject, Expiry: tok.Expiry, IssuedAt: tok.IssuedAt,
		Audience: tok.Audience, AuthorizedParty: extra.AZP}, nil
}

// BackchannelLogoutEvent is the events member that marks a logout token.
const BackchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// LogoutToken is a verified OIDC Back-Channel Logout token.
type LogoutToken struct {
	Subject  string
	SID      string
	JTI      string
	IssuedAt time.Time
	Expiry   time.Time // zero when absent
}

// LogoutPolicy says what a logout token must satisfy beyond its signature and issuer.
type LogoutPolicy struct {
	// Audiences: the token's aud must contain at least one of these.
	Audiences []string
	// Now is the current time; Skew the allowed clock difference.
	Now  time.Time
	Skew time.Duration
}

// VerifyLogoutToken validates a logout token per OIDC Back-Channel Logout 1.0 §2.6.
func (c *Client) VerifyLogoutToken(ctx context.Context, raw string, p LogoutPolicy) (LogoutToken, error) {
	d, err := c.discover(ctx)
	if err != nil {
		return LogoutToken{}, err
	}
	algs := make([]jose.SignatureAlgorithm, len(d.algs))
	for i, a := range d.algs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	jws, err := jose.ParseSignedCompact(raw, algs)
	if err != nil {
		return LogoutToken{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if len(jws.Signatures) != 1 {
		return LogoutToken{}, fmt.Errorf("%w: want exactly one signature", ErrInvalidToken)
	}
	if typ, ok := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType]; ok {
		if s, _ := typ.(string); !strings.EqualFold(s, "logout+jwt") && !strings.EqualFold(s, "application/logout+jwt") {
			return LogoutToken{}, fmt.Errorf("%w: JOSE typ %v is not logout+jwt", ErrInvalidToken, typ)
		}
	}
	tok, err := d.logout.Verify(ctx, raw)
	if err != nil {
		return LogoutToken{}, classify(err)
	}
	var cl struct {
		SID    string                     `json:"sid"`
		JTI    string                     `json:"jti"`
		Events map[string]json.RawMessage `json:"events"`
		Iat    *json.Number               `json:"iat"`
		Exp    *json.Number               `json:"exp"`
	}
	if err := tok.Claims(&cl); err != nil {
		return LogoutToken{}, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	// §2.4: nonce MUST NOT be present, so "nonce": null counts (a nil pointer would not tell).
	var present map[string]json.RawMessage
	if err := tok.Claims(&present); err != nil {
		return LogoutToken{}, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	_, hasNonce := present["nonce"]
	out := LogoutToken{Subject: tok.Subject, SID: cl.SID, JTI: cl.JTI, IssuedAt: tok.IssuedAt, Expiry: tok.Expiry}
	if err := checkLogout(out, hasNonce, cl.Iat != nil, cl.Events, tok.Audience, p); err != nil {
		return LogoutToken{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return out, nil
}

func checkLogout(t LogoutToken, hasNonce, hasIat bool, events map[string]json.RawMessage, aud []string, p LogoutPolicy) error {
	switch {
	case hasNonce:
		return errors.New("logout token must not contain nonce")
	case !hasIat:
		return errors.New("logout token has no iat")
	case t.IssuedAt.After(p.Now.Add(p.Skew)):
		return errors.New("logout token iat is in the future")
	case !t.Expiry.IsZero() && t.Expiry.Add(p.Skew).Before(p.Now):
		return errors.New("logout token has expired")
	case t.JTI == "":
		return errors.New("logout token has no jti")
	case t.SID == "" && t.Subject == "":
		return errors.New("logout token has neither sid nor sub")
	case !intersects(aud, p.Audiences):
		return fmt.Errorf("logout token audience %v is not accepted", aud)
	}
	ev, ok := events[BackchannelLogoutEvent]
	if !ok {
		return errors.New("logout token events lack the back-channel logout event")
	}
	var obj map[string]any
	if err := json.Unmarshal(ev, &obj); err != nil {
		return errors.New("logout token event member is not a JSON object")
	}
	return nil
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// classify tells a provider we cannot reach from a token we must refuse. go-oidc flattens the
// key set's error into text ("failed to verify signature: …"), so the text is all there is to go
// on: jwks.ErrFetch reads "fetching keys".
func classify(err error) error {
	if strings.Contains(err.Error(), "fetching keys") {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %v", ErrInvalidToken, err)
}
