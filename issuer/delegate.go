package issuer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Delegation is what a client — a service — may do with the internal tokens it receives: RFC
// 8693 delegation, a token for another service on the same user's behalf, bound to the same
// session (docs/delegation.md).
type Delegation struct {
	// To are the audiences (logical names, or absolute URIs for RFC 8707 resource) it may get
	// delegated tokens for. Empty: the client does not delegate.
	To []string
	// MaxDepth is the longest actor chain a token it obtains may carry, itself included
	// (DefaultMaxDelegationDepth when 0).
	MaxDepth int
	// Audience is the aud that names the client as a service: a subject token it delegates
	// must carry it. Empty: the client id.
	Audience string
}

// DefaultMaxDelegationDepth is a client's longest actor chain when Delegation.MaxDepth is 0.
const DefaultMaxDelegationDepth = 3

// MaxActorChain bounds the actor chain read from any token, whatever a client's MaxDepth: a
// longer chain is refused before it is walked further.
const MaxActorChain = 10

// serviceAudience is the aud naming c as a service.
func (d Delegation) serviceAudience(id string) string {
	if d.Audience != "" {
		return d.Audience
	}
	return id
}

func (d Delegation) maxDepth() int {
	if d.MaxDepth > 0 {
		return min(d.MaxDepth, MaxActorChain)
	}
	return DefaultMaxDelegationDepth
}

// Actor is one link of an actor chain (RFC 8693 §4.1): the party acting, and the one that acted
// before it, if any.
type Actor struct {
	Subject string `json:"sub"`
	Actor   *Actor `json:"act,omitempty"`
}

// delegatedClaims are the claims of an internal token with its actor chain, as read.
type delegatedClaims struct {
	AccessClaims
	Act json.RawMessage `json:"act,omitempty"`
}

// delegatedToken are the claims of a delegated token, as written.
type delegatedToken struct {
	AccessClaims
	Act *Actor `json:"act,omitempty"`
}

// rawActor is a link of an actor chain as read from a token: the rest of the chain stays raw,
// so a chain is walked link by link, never decoded deeper than MaxActorChain.
type rawActor struct {
	Subject string          `json:"sub"`
	Act     json.RawMessage `json:"act"`
}

// errChainTooLong marks an actor chain longer than MaxActorChain.
var errChainTooLong = errors.New("actor chain is longer than the limit")

// actorChain returns the subjects of the chain act, outermost (the latest actor) first.
func actorChain(act json.RawMessage) ([]string, error) {
	var chain []string
	for len(act) > 0 && !bytes.Equal(bytes.TrimSpace(act), []byte("null")) {
		if len(chain) == MaxActorChain {
			return nil, errChainTooLong
		}
		var a rawActor
		if err := json.Unmarshal(act, &a); err != nil {
			return nil, fmt.Errorf("act: %w", err)
		}
		if a.Subject == "" {
			return nil, errors.New("act without sub")
		}
		chain = append(chain, a.Subject)
		act = a.Act
	}
	return chain, nil
}

// nestActors builds the act claim of chain (outermost first).
func nestActors(chain []string) *Actor {
	var a *Actor
	for n := len(chain) - 1; n >= 0; n-- {
		a = &Actor{Subject: chain[n], Actor: a}
	}
	return a
}

// peeked is a token's payload, read once before its signature is checked: whether its iss is
// tokengate's own, which routes a subject token to delegation, and, for such a token, its
// claims. Nothing in it is trusted until verifyInternal has verified the signature over these
// very bytes.
type peeked struct {
	ours    bool
	payload []byte
	claims  delegatedClaims
	err     error // why payload does not decode as an internal token's claims
}

// peek reads token's unverified iss (and, when it is tokengate's own, its claims). The claims
// are decoded at once when the payload holds the iss member as tokengate writes it, so a
// delegation decodes its subject token once; any other payload (an upstream token) is read
// for its iss alone, as before.
func (i *Issuer) peek(token string) peeked {
	payload, ok := payloadOf(token)
	if !ok {
		return peeked{}
	}
	p := peeked{payload: payload}
	decoded := bytes.Contains(payload, i.issClaim)
	if decoded {
		if p.err = json.Unmarshal(payload, &p.claims); p.err == nil {
			p.ours = p.claims.Issuer == i.cfg.Issuer
			return p
		}
	}
	iss, ok := issuerOf(payload)
	if p.ours = ok && iss == i.cfg.Issuer; p.ours && !decoded {
		p.err = json.Unmarshal(payload, &p.claims)
	}
	return p
}

// payloadOf decodes the payload of a compact JWT without verifying it.
func payloadOf(token string) ([]byte, bool) {
	first := strings.IndexByte(token, '.')
	if first < 0 {
		return nil, false
	}
	rest := token[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 || len(rest[:second]) > 64<<10 {
		return nil, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(rest[:second])
	return payload, err == nil
}

// issuerOf reads the iss claim of a JWT payload.
func issuerOf(payload []byte) (string, bool) {
	var c struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) == nil {
		return c.Issuer, true
	}
	return streamIssuer(payload) // e.g. nested deeper than encoding/json decodes
}

// streamIssuer finds the top-level iss member of a JSON object token by token, skipping the
// other members without a depth limit and without decoding them.
func streamIssuer(payload []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	for {
		key, err := dec.Token()
		if err != nil || key == json.Delim('}') {
			return "", false
		}
		if key == "iss" {
			v, err := dec.Token()
			s, ok := v.(string)
			return s, err == nil && ok
		}
		for depth := 0; ; { // skip the member's value
			t, err := dec.Token()
			if err != nil {
				return "", false
			}
			switch t {
			case json.Delim('{'), json.Delim('['):
				depth++
			case json.Delim('}'), json.Delim(']'):
				depth--
			}
			if depth == 0 {
				break
			}
		}
	}
}

// keyRevoked is what the key manager's KeyError answers (issuer does not import keys).
type keyRevoked interface {
	error
	KeyRevoked() bool
}

// delegate serves a token exchange whose subject token tokengate issued: c, a service that
// received it, asks for a token for a service in its delegate_to, acting for the same user in
// the same session (RFC 8693 §1.1 delegation). It verifies the subject token with tokengate's
// own keys in process (one signature check; no call to the provider, no write), applies the
// session rules of a renewal, and mints a token with act = {sub: c, act: <subject's act>},
// scope within the subject's, exp no later than the subject's, and no refresh token.
func (i *Issuer) delegate(ctx context.Context, c Client, r ExchangeRequest, subject peeked) (TokenResponse, error) {
	refuse := func(reason string, err error, attrs ...any) (TokenResponse, error) {
		a := append([]any{"event", "delegation_refused", "client_id", c.ID, "reason", reason}, attrs...)
		i.log.InfoContext(ctx, "delegation refused", append(a, "subject_token", TokenHash(r.SubjectToken))...)
		return TokenResponse{}, err
	}
	if len(c.Delegation.To) == 0 {
		return refuse("no_delegate_to", oauthErr(CodeUnauthorizedClient, "subject_token was issued by tokengate: "+
			"exchanging it is delegation, and this client has no delegate_to (a first exchange takes the upstream "+
			"provider's access token)", nil))
	}
	if r.SubjectTokenType != TokenTypeAccessToken && r.SubjectTokenType != TokenTypeJWT { // jwt: Spring's resource servers
		return refuse("token_type", invalidRequest("subject_token_type must be "+TokenTypeAccessToken+" (or "+TokenTypeJWT+")", nil))
	}
	if r.RequestedTokenType != "" && r.RequestedTokenType != TokenTypeAccessToken {
		return refuse("token_type", invalidRequest("requested_token_type must be "+TokenTypeAccessToken, nil))
	}
	auds, err := c.Delegation.targets(r.Audience, r.Resource)
	if err != nil {
		return refuse("audience", err, "audience", r.Audience, "resource", r.Resource)
	}
	now := i.cfg.Now()
	sub, chain, rf := i.verifyInternal(r.SubjectToken, subject, "subject_token", now)
	if rf != nil {
		return refuse(rf.reason, rf.err)
	}
	if own := c.Delegation.serviceAudience(c.ID); !slices.Contains(sub.Audience, own) {
		return refuse("subject_audience", invalidRequest("subject_token is for "+quoteList(sub.Audience)+
			", not for this client's service audience "+quote(own)+": a service delegates only tokens it received", nil),
			"aud", sub.Audience)
	}
	if sub.SID == "" {
		return refuse("no_session", invalidRequest("subject_token has no sid: delegation needs a session, "+
			"so that every hop is refused once it is logged out", nil))
	}
	if r.ActorToken != "" || r.ActorTokenType != "" {
		if rf := i.checkActor(c, r, now); rf != nil {
			return refuse(rf.reason, rf.err)
		}
	}
	chain = append([]string{c.ID}, chain...)
	if limit := c.Delegation.maxDepth(); len(chain) > limit {
		return refuse("depth", invalidRequest(fmt.Sprintf("the actor chain would hold %d actors (%s), over this "+
			"client's max_delegation_depth of %d", len(chain), strings.Join(chain, " ← "), limit), nil))
	}
	scope, err := narrowScope(sub.Scope, r.Scope)
	if err != nil {
		var oe *Error
		errors.As(err, &oe)
		return refuse("scope", oauthErr(oe.Code, oe.Description+" to the subject_token", nil))
	}
	g := grant{Subject: sub.Subject, SID: sub.SID, AuthTime: sub.AuthTime, UpstreamIssuedAt: sub.IssuedAt}
	if err := i.checkRevoked(ctx, &g); err != nil {
		if errors.Is(err, errRevoked) {
			return refuse("logged_out", invalidRequest("subject_token belongs to a session that has been logged out", err),
				"sid", sub.SID)
		}
		return TokenResponse{}, err
	}
	claims := delegatedToken{AccessClaims: AccessClaims{
		Issuer: i.cfg.Issuer, Subject: sub.Subject, Audience: auds, Expiry: min(now.Add(i.cfg.TTL).Unix(), sub.Expiry),
		IssuedAt: now.Unix(), JTI: newJTI(), ClientID: c.ID, SID: sub.SID, Scope: scope, Roles: sub.Roles,
		PreferredUsername: sub.PreferredUsername, ACR: sub.ACR, AuthTime: sub.AuthTime,
	}, Act: nestActors(chain)}
	payload, err := json.Marshal(claims)
	if err != nil {
		return TokenResponse{}, oauthErr(CodeServerError, "could not encode the claims", err)
	}
	tok, _, err := i.keys.Sign(payload)
	if err != nil {
		return TokenResponse{}, oauthErr(CodeServerError, "could not sign the token", err)
	}
	i.log.InfoContext(ctx, "token delegated", "event", "delegation", "client_id", c.ID, "sub", sub.Subject,
		"sid", sub.SID, "jti", claims.JTI, "aud", auds, "act", chain, "subject_token", TokenHash(r.SubjectToken))
	return TokenResponse{AccessToken: tok, IssuedTokenType: TokenTypeAccessToken, TokenType: "Bearer",
		ExpiresIn: claims.Expiry - claims.IssuedAt, Scope: scope}, nil
}

// refusal is a delegation refusal: its audit reason and the caller's error.
type refusal struct {
	reason string
	err    *Error
}

// verifyInternal verifies token (named what in descriptions), an internal access token
// tokengate issued, at now: signature with a published key, iss, exp, and its actor chain
// (outermost first). p is token as peek read it: its claims are used once the signature over
// the same payload verifies.
func (i *Issuer) verifyInternal(token string, p peeked, what string, now time.Time) (delegatedClaims, []string, *refusal) {
	var c delegatedClaims
	payload, err := i.keys.VerifyAccessToken(token)
	if err != nil {
		var kr keyRevoked
		switch {
		case errors.As(err, &kr) && kr.KeyRevoked():
			return c, nil, &refusal{"revoked_key", invalidRequest(what+" was signed by a key tokengate has revoked: "+
				"it is refused everywhere; ask for a new token", err)}
		case errors.As(err, &kr):
			return c, nil, &refusal{"unknown_key", invalidRequest(what+" names a signing key tokengate does not publish "+
				"(not one of its tokens, or older than its key retention)", err)}
		}
		return c, nil, &refusal{"invalid", invalidRequest(what+" is not a valid tokengate access token "+
			"(its signature or JOSE header does not verify)", err)}
	}
	if !bytes.Equal(payload, p.payload) { // one token, one payload: a mismatch is a bug, refused all the same
		return c, nil, &refusal{"invalid", invalidRequest(what+" is not a valid tokengate access token (its claims)",
			errors.New("the verified payload is not the one read"))}
	}
	if c = p.claims; p.err != nil || c.Issuer != i.cfg.Issuer || c.Subject == "" {
		return c, nil, &refusal{"invalid", invalidRequest(what+" is not a valid tokengate access token (its claims)", p.err)}
	}
	if now.Unix() >= c.Expiry {
		exp := time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339)
		return c, nil, &refusal{"expired", invalidRequest(what+" expired at "+exp+" (tokengate's clock: "+
			now.UTC().Format(time.RFC3339)+")", nil)}
	}
	chain, err := actorChain(c.Act)
	switch {
	case errors.Is(err, errChainTooLong):
		return c, nil, &refusal{"depth", invalidRequest(fmt.Sprintf("%s carries an actor chain longer than %d", what, MaxActorChain), err)}
	case err != nil:
		return c, nil, &refusal{"invalid", invalidRequest(what+" carries a malformed act claim", err)}
	}
	return c, chain, nil
}

// checkActor checks r's actor_token. tokengate has no tokens of its own for services, so the
// one actor_token it accepts is an internal access token issued to the calling client itself
// (client_id): it names the same actor the client authentication already proved, and the
// actor stays c. Any other actor token is refused.
func (i *Issuer) checkActor(c Client, r ExchangeRequest, now time.Time) *refusal {
	if r.ActorToken == "" || r.ActorTokenType == "" {
		return &refusal{"actor_token", invalidRequest("actor_token and actor_token_type go together (RFC 8693 §2.1)", nil)}
	}
	if r.ActorTokenType != TokenTypeAccessToken {
		return &refusal{"actor_token", invalidRequest("actor_token_type must be "+TokenTypeAccessToken+
			": the actor_token accepted is a tokengate access token issued to this client", nil)}
	}
	p := i.peek(r.ActorToken)
	if !p.ours {
		return &refusal{"actor_token", invalidRequest("actor_token was not issued by tokengate: the actor_token accepted "+
			"is a tokengate access token issued to this client (or leave it out: the client is the actor)", nil)}
	}
	act, _, rf := i.verifyInternal(r.ActorToken, p, "actor_token", now)
	if rf != nil {
		rf.reason = "actor_token"
		return rf
	}
	if act.ClientID != c.ID {
		return &refusal{"actor_token", invalidRequest("actor_token was issued to another client: the actor is the "+
			"authenticated client, and an actor_token must be one issued to it", nil)}
	}
	return nil
}

// targets resolves a delegation's requested audience and resource values against d.To, as
// Client.audiences does for a first exchange.
func (d Delegation) targets(audience, resource []string) ([]string, error) {
	for _, res := range resource {
		u, err := url.Parse(res)
		if err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(res, "#") {
			return nil, oauthErr(CodeInvalidTarget, "resource "+quote(res)+" must be an absolute URI without a fragment (RFC 8707)", nil)
		}
	}
	requested := append(slices.Clone(audience), resource...)
	for _, a := range requested {
		if !slices.Contains(d.To, a) {
			return nil, oauthErr(CodeInvalidTarget, quote(a)+" is not in this client's delegate_to", nil)
		}
	}
	switch {
	case len(requested) > 0:
		return slices.Compact(slices.Sorted(slices.Values(requested))), nil
	case len(d.To) == 1:
		return slices.Clone(d.To), nil
	default:
		return nil, oauthErr(CodeInvalidTarget, "this client may delegate to several services: name one with audience or resource", nil)
	}
}

func quoteList(l []string) string {
	q := make([]string, 0, min(len(l), 4))
	for n, s := range l {
		if n == 4 {
			q = append(q, "…")
			break
		}
		q = append(q, quote(s))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// checkFirstExchange refuses what only a delegation may carry from a first exchange (a
// subject token not issued by tokengate): an actor_token, or a client that only delegates.
func (i *Issuer) checkFirstExchange(ctx context.Context, c Client, r ExchangeRequest) error {
	switch {
	case r.ActorToken != "" || r.ActorTokenType != "":
		i.log.InfoContext(ctx, "exchange refused", "event", "exchange_refused", "client_id", c.ID, "reason", "actor_token",
			"subject_token", TokenHash(r.SubjectToken))
		return invalidRequest("actor_token is accepted only in a delegation, whose subject_token tokengate issued; "+
			"in a first exchange the authenticated client is the actor", nil)
	case len(c.Audiences) == 0:
		i.log.InfoContext(ctx, "exchange refused", "event", "exchange_refused", "client_id", c.ID, "reason", "not_internal",
			"subject_token", TokenHash(r.SubjectToken))
		return invalidRequest("subject_token was not issued by tokengate (iss is not "+quote(i.cfg.Issuer)+
			"): this client only delegates, so it exchanges the internal tokens it receives, not the upstream provider's", nil)
	}
	return nil
}
