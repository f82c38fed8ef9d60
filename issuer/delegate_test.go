package issuer_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/issuer"
)

const (
	ordersSecret   = "orders-secret-0123456789-abcdefghijklm"
	paymentsSecret = "payments-secret-0123456789-abcdefghijk"
	ledgerSecret   = "ledger-secret-0123456789-abcdefghijklm"
)

// delegation is the issuer fixture with three services: orders may call payments, payments
// may call ledger (and orders back), ledger may call audit with chains of at most 2 actors.
// bff gets tokens for orders.
type delegation struct {
	*fixture
	orders, payments, ledger issuer.Client
}

func newDelegation(t *testing.T) *delegation {
	f := newFixture(t, func(c *setup) {
		c.Clients = append(c.Clients,
			issuer.Client{ID: "orders", SecretSHA256: sha256.Sum256([]byte(ordersSecret)),
				Delegation: issuer.Delegation{To: []string{"payments"}}},
			issuer.Client{ID: "payments", SecretSHA256: sha256.Sum256([]byte(paymentsSecret)),
				Delegation: issuer.Delegation{To: []string{"ledger", "orders"}, Audience: "payments"}},
			issuer.Client{ID: "ledger", SecretSHA256: sha256.Sum256([]byte(ledgerSecret)),
				Delegation: issuer.Delegation{To: []string{"audit"}, MaxDepth: 2}},
		)
	})
	d := &delegation{fixture: f}
	for _, c := range []struct {
		to         *issuer.Client
		id, secret string
	}{{&d.orders, "orders", ordersSecret}, {&d.payments, "payments", paymentsSecret}, {&d.ledger, "ledger", ledgerSecret}} {
		var err error
		if *c.to, err = f.is.Authenticate(c.id, c.secret); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// login exchanges a fresh upstream token of sub's session sid as bff for orders.
func (d *delegation) login(sub, sid, scope string) issuer.TokenResponse {
	d.t.Helper()
	up := d.realm.AccessToken(kctest.Token{Subject: sub, SID: sid, Scope: scope, IssuedAt: d.clock.Now()})
	r, err := d.is.Exchange(context.Background(), d.bff, issuer.ExchangeRequest{SubjectToken: up,
		SubjectTokenType: issuer.TokenTypeAccessToken, Audience: []string{"orders"}})
	if err != nil {
		d.t.Fatalf("exchange: %v", err)
	}
	return r
}

// delegate asks, as c, a token for audience (none: the default) from subject.
func (d *delegation) delegate(c issuer.Client, subject, audience, scope string) (issuer.TokenResponse, error) {
	r := issuer.ExchangeRequest{SubjectToken: subject, SubjectTokenType: issuer.TokenTypeAccessToken, Scope: scope}
	if audience != "" {
		r.Audience = []string{audience}
	}
	return d.is.Exchange(context.Background(), c, r)
}

// claims decodes a token's payload (unverified: the test reads what it was issued).
func claims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestDelegate_ChainOfThreeServices: bff → orders → payments → ledger, each hop a token for
// the next service only, with the same sub and sid, the actor chain in act (RFC 8693 §4.1),
// an exp no later than the subject token's, no refresh token, and no call to the provider.
func TestDelegate_ChainOfThreeServices(t *testing.T) {
	d := newDelegation(t)
	first := d.login("alice", "sid-a", "openid orders:read payments:write")
	calls := d.up.calls.Load()
	d.clock.Advance(10 * time.Second)
	toPayments, err := d.delegate(d.orders, first.AccessToken, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := claims(t, first.AccessToken), claims(t, toPayments.AccessToken)
	if jsonOf(c2["aud"]) != `["payments"]` || c2["sub"] != "alice" || c2["sid"] != "sid-a" || c2["client_id"] != "orders" ||
		jsonOf(c2["act"]) != `{"sub":"orders"}` || c2["scope"] != c1["scope"] || c2["iss"] != "https://tg.test" {
		t.Errorf("delegated claims %s (subject %s)", jsonOf(c2), jsonOf(c1))
	}
	if c2["exp"].(float64) > c1["exp"].(float64) {
		t.Errorf("delegated exp %v outlives the subject token's %v", c2["exp"], c1["exp"])
	}
	if toPayments.RefreshToken != "" || toPayments.IssuedTokenType != issuer.TokenTypeAccessToken || toPayments.TokenType != "Bearer" ||
		toPayments.ExpiresIn != 20 {
		t.Errorf("delegation answer %+v, want an access token living 20s (the subject's rest), no refresh token", toPayments)
	}
	toLedger, err := d.delegate(d.payments, toPayments.AccessToken, "ledger", "payments:write")
	if err != nil {
		t.Fatal(err)
	}
	c3 := claims(t, toLedger.AccessToken)
	if jsonOf(c3["act"]) != `{"act":{"sub":"orders"},"sub":"payments"}` || c3["scope"] != "payments:write" || jsonOf(c3["aud"]) != `["ledger"]` {
		t.Errorf("second hop claims %s", jsonOf(c3))
	}
	if n := d.up.calls.Load(); n != calls {
		t.Errorf("delegation called the provider %d times", n-calls)
	}
	if _, err := d.keys.VerifyAccessToken(toLedger.AccessToken); err != nil {
		t.Errorf("the delegated token does not verify with tokengate's keys: %v", err)
	}
}

// TestDelegate_Refusals: each refusal has its OAuth code and description, and changes nothing.
func TestDelegate_Refusals(t *testing.T) {
	d := newDelegation(t)
	first := d.login("bob", "sid-b", "openid orders:read")
	toPayments, err := d.delegate(d.orders, first.AccessToken, "payments", "")
	if err != nil {
		t.Fatal(err)
	}
	toLedger, err := d.delegate(d.payments, toPayments.AccessToken, "ledger", "")
	if err != nil {
		t.Fatal(err)
	}
	upstream := d.token("bob", "sid-b")
	parts := strings.Split(first.AccessToken, ".")
	forgedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://tg.test","sub":"mallory","aud":["orders"],"sid":"sid-b","exp":9999999999}`))
	calls := d.up.calls.Load()
	for _, tc := range []struct {
		name       string
		c          issuer.Client
		r          issuer.ExchangeRequest
		code, desc string
	}{
		{"audience outside delegate_to", d.orders, req(first.AccessToken, "ledger"), issuer.CodeInvalidTarget, `"ledger" is not in this client's delegate_to`},
		{"resource outside delegate_to", d.orders, issuer.ExchangeRequest{SubjectToken: first.AccessToken,
			SubjectTokenType: issuer.TokenTypeAccessToken, Resource: []string{"https://ledger.internal"}}, issuer.CodeInvalidTarget, "not in this client's delegate_to"},
		{"another service's token replayed as subject", d.payments, req(first.AccessToken, "ledger"), issuer.CodeInvalidRequest,
			`subject_token is for ["orders"], not for this client's service audience "payments"`},
		{"a client without delegate_to", d.bff, req(first.AccessToken, "orders"), issuer.CodeUnauthorizedClient, "this client has no delegate_to"},
		{"an upstream token where an internal one is expected", d.orders, req(upstream, "payments"), issuer.CodeInvalidRequest,
			"this client only delegates, so it exchanges the internal tokens it receives"},
		{"chain too deep", d.ledger, req(toLedger.AccessToken, "audit"), issuer.CodeInvalidRequest,
			"the actor chain would hold 3 actors (ledger ← payments ← orders), over this client's max_delegation_depth of 2"},
		{"wider scope", d.orders, issuer.ExchangeRequest{SubjectToken: first.AccessToken, SubjectTokenType: issuer.TokenTypeAccessToken,
			Scope: "openid payments:write"}, issuer.CodeInvalidScope, `scope "payments:write" was not granted to the subject_token`},
		{"forged payload", d.orders, req(parts[0]+"."+forgedPayload+"."+parts[2], "payments"), issuer.CodeInvalidRequest,
			"subject_token is not a valid tokengate access token"},
		{"wrong subject_token_type", d.orders, issuer.ExchangeRequest{SubjectToken: first.AccessToken,
			SubjectTokenType: "urn:ietf:params:oauth:token-type:id_token"}, issuer.CodeInvalidRequest, "subject_token_type must be"},
		{"actor_token of another client", d.orders, withActor(req(first.AccessToken, "payments"), first.AccessToken),
			issuer.CodeInvalidRequest, "actor_token was issued to another client"},
		{"actor_token without its type", d.orders, issuer.ExchangeRequest{SubjectToken: first.AccessToken,
			SubjectTokenType: issuer.TokenTypeAccessToken, ActorToken: toPayments.AccessToken}, issuer.CodeInvalidRequest, "go together"},
		{"an upstream token as actor_token", d.orders, withActor(req(first.AccessToken, "payments"), upstream),
			issuer.CodeInvalidRequest, "actor_token was not issued by tokengate"},
		{"actor_token in a first exchange", d.bff, withActor(req(upstream, "orders"), first.AccessToken),
			issuer.CodeInvalidRequest, "actor_token is accepted only in a delegation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.is.Exchange(context.Background(), tc.c, tc.r)
			wantCode(t, tc.name, err, tc.code)
			if err == nil || !strings.Contains(err.Error(), tc.desc) {
				t.Errorf("error %v\nwant it to say %q", err, tc.desc)
			}
		})
	}
	if evs, _ := d.pub.snapshot(); len(evs) != 0 {
		t.Errorf("refusals published %d events", len(evs))
	}
	if n := d.up.calls.Load(); n != calls {
		t.Errorf("refusals called the provider %d times", n-calls)
	}
	if lines := d.auditLines("delegation refused"); len(lines) == 0 || lines[0]["event"] != "delegation_refused" {
		t.Errorf("refusals left no delegation_refused audit line: %v", lines)
	}
	if strings.Contains(d.logs.String(), first.AccessToken) || strings.Contains(d.logs.String(), upstream) {
		t.Error("the log holds a token")
	}
	// An actor_token issued to the caller itself names the same actor: accepted, act unchanged.
	own, err := d.delegate(d.orders, first.AccessToken, "payments", "")
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.is.Exchange(context.Background(), d.payments, withActor(req(toPayments.AccessToken, "ledger"), own.AccessToken))
	if err == nil {
		t.Errorf("payments presented orders' token as its actor_token: accepted %s", jsonOf(claims(t, r.AccessToken)["act"]))
	}
	r, err = d.is.Exchange(context.Background(), d.orders, withActor(req(first.AccessToken, "payments"), own.AccessToken))
	if err != nil || jsonOf(claims(t, r.AccessToken)["act"]) != `{"sub":"orders"}` {
		t.Errorf("actor_token issued to the caller: %v", err)
	}
}

func req(subject, audience string) issuer.ExchangeRequest {
	return issuer.ExchangeRequest{SubjectToken: subject, SubjectTokenType: issuer.TokenTypeAccessToken, Audience: []string{audience}}
}

func withActor(r issuer.ExchangeRequest, actor string) issuer.ExchangeRequest {
	r.ActorToken, r.ActorTokenType = actor, issuer.TokenTypeAccessToken
	return r
}

// TestDelegate_SessionRulesAtEveryHop: once the session is logged out (back-channel) or its
// user revoked, no hop delegates again; another session of the same user still does.
func TestDelegate_SessionRulesAtEveryHop(t *testing.T) {
	d := newDelegation(t)
	first := d.login("carol", "sid-c", "")
	other := d.login("carol", "sid-c2", "")
	toPayments, err := d.delegate(d.orders, first.AccessToken, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.is.RecordLogout(context.Background(), d.realm.LogoutToken("carol", "sid-c")); err != nil {
		t.Fatal(err)
	}
	_, err = d.delegate(d.orders, first.AccessToken, "", "")
	wantCode(t, "first hop after logout", err, issuer.CodeInvalidRequest)
	_, err = d.delegate(d.payments, toPayments.AccessToken, "ledger", "")
	wantCode(t, "second hop after logout", err, issuer.CodeInvalidRequest)
	if err == nil || !strings.Contains(err.Error(), "logged out") {
		t.Errorf("second hop: %v, want it to say logged out", err)
	}
	if _, err := d.delegate(d.orders, other.AccessToken, "", ""); err != nil {
		t.Errorf("another session of the same user: %v", err)
	}
	d.clock.Advance(time.Second)
	if _, err := d.is.RevokeSubject(context.Background(), "carol", "admin"); err != nil {
		t.Fatal(err)
	}
	_, err = d.delegate(d.orders, other.AccessToken, "", "")
	wantCode(t, "after a subject-wide revocation", err, issuer.CodeInvalidRequest)
}

func TestDelegate_ExpiredRevokedKeyAndUnknownStoreState(t *testing.T) {
	d := newDelegation(t)
	first := d.login("dan", "sid-d", "")
	d.clock.Advance(31 * time.Second)
	_, err := d.delegate(d.orders, first.AccessToken, "", "")
	if wantCode(t, "expired subject token", err, issuer.CodeInvalidRequest); err == nil || !strings.Contains(err.Error(), "subject_token expired at") {
		t.Errorf("expired: %v", err)
	}
	fresh := d.login("dan", "sid-d", "")
	if _, err := d.keys.RevokeKey(context.Background(), d.keys.ActiveKeyID()); err != nil {
		t.Fatal(err)
	}
	_, err = d.delegate(d.orders, fresh.AccessToken, "", "")
	if wantCode(t, "revoked key", err, issuer.CodeInvalidRequest); err == nil || !strings.Contains(err.Error(), "signed by a key tokengate has revoked") {
		t.Errorf("revoked key: %v", err)
	}
	fresh = d.login("dan", "sid-d", "")
	if err := d.store.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = d.delegate(d.orders, fresh.AccessToken, "", "")
	wantCode(t, "store closed: revocation state unknown", err, issuer.CodeTemporarilyUnavailable)
}

// TestDelegate_HugeActNesting: a token with a deeply nested act is refused, forged (at the
// signature, before any claim is read) or signed (at MaxActorChain links), without walking it.
func TestDelegate_HugeActNesting(t *testing.T) {
	d := newDelegation(t)
	first := d.login("erin", "sid-e", "")
	c := claims(t, first.AccessToken)
	// 20,000 levels, deeper than encoding/json decodes, within the 64 KiB a request body may hold.
	deep := strings.Repeat(`[`, 20_000) + strings.Repeat("]", 20_000)
	base, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	payload := append(base[:len(base)-1], `,"act":`+deep+`}`...) // deeper than encoding/json writes
	parts := strings.Split(first.AccessToken, ".")
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	_, err = d.delegate(d.orders, forged, "", "")
	if wantCode(t, "forged deep act", err, issuer.CodeInvalidRequest); err == nil || !strings.Contains(err.Error(), "its signature") {
		t.Errorf("forged deep act: %v, want a signature refusal", err)
	}
	shallow := strings.Repeat(`{"sub":"x","act":`, issuer.MaxActorChain) + `{"sub":"y"}` + strings.Repeat("}", issuer.MaxActorChain)
	c["act"] = json.RawMessage(shallow)
	payload, _ = json.Marshal(c)
	signed, _, err := d.keys.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.delegate(d.orders, signed, "", "")
	if wantCode(t, "signed act over the limit", err, issuer.CodeInvalidRequest); err == nil ||
		!strings.Contains(err.Error(), "actor chain longer than 10") {
		t.Errorf("signed deep act: %v", err)
	}
}

// TestDelegate_ReadOnce is an attacker against reading a subject token once (its iss and its
// claims decoded together, before the signature is checked, and used after): the route is
// still the decoded top-level iss, however it is written or wherever else tokengate's iss
// appears, and claims are trusted only once the signature over them verifies.
func TestDelegate_ReadOnce(t *testing.T) {
	d := newDelegation(t)
	first := d.login("frank", "sid-f", "")
	base, err := json.Marshal(claims(t, first.AccessToken))
	if err != nil {
		t.Fatal(err)
	}
	own := `"iss":"https://tg.test"`
	if !strings.Contains(string(base), own) {
		t.Fatalf("claims %s do not hold %s", base, own)
	}
	sign := func(payload string) string {
		tok, _, err := d.keys.Sign([]byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	forge := func(payload string) string { // tokengate's header and signature, another payload
		parts := strings.Split(first.AccessToken, ".")
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + parts[2]
	}
	realm := d.realm.Issuer()
	escaped := strings.Replace(string(base), own, `"iss":"https:\/\/tg.test"`, 1)
	nested := `{"iss":"` + realm + `","sub":"frank","aud":["orders"],"sid":"sid-f","exp":9999999999,"x":{` + own + `}}`
	lastWins := strings.Replace(string(base), own, `"iss":"`+realm+`"`, 1)
	lastWins = lastWins[:len(lastWins)-1] + `,` + own + `}`
	stringAud := strings.Replace(string(base), `"aud":["orders"]`, `"aud":"orders"`, 1)
	if stringAud == string(base) {
		t.Fatalf("claims %s have no aud [orders]", base)
	}

	// Signed by tokengate with iss written with escapes, or given twice (the last one counts,
	// as encoding/json reads it): still tokengate's token, delegated.
	for name, payload := range map[string]string{"escaped iss": escaped, "iss given twice, ours last": lastWins} {
		if r, err := d.delegate(d.orders, sign(payload), "payments", ""); err != nil ||
			jsonOf(claims(t, r.AccessToken)["act"]) != `{"sub":"orders"}` {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, tc := range []struct {
		name, token, desc string
	}{
		// Another issuer's claims that hold tokengate's iss member deeper down: not a
		// delegation, refused as any upstream token is for a client that only delegates.
		{"tokengate's iss nested in another issuer's token", sign(nested),
			"this client only delegates, so it exchanges the internal tokens it receives"},
		{"tokengate's iss first, another last", sign(strings.Replace(lastWins, `,`+own+`}`, `,"iss":"`+realm+`"}`, 1)),
			"this client only delegates, so it exchanges the internal tokens it receives"},
		// tokengate's iss, claims that do not decode: refused for its claims once signed,
		// for its signature when forged.
		{"signed claims that do not decode", sign(stringAud), "subject_token is not a valid tokengate access token (its claims)"},
		{"forged claims that do not decode", forge(stringAud), "subject_token is not a valid tokengate access token (its signature"},
		{"forged escaped iss", forge(strings.Replace(escaped, `"sub":"frank"`, `"sub":"mallory"`, 1)),
			"subject_token is not a valid tokengate access token (its signature"},
	} {
		_, err := d.delegate(d.orders, tc.token, "payments", "")
		if wantCode(t, tc.name, err, issuer.CodeInvalidRequest); err == nil || !strings.Contains(err.Error(), tc.desc) {
			t.Errorf("%s: %v\nwant it to say %q", tc.name, err, tc.desc)
		}
	}
	// The same forged claims as actor_token: refused for its signature.
	_, err = d.is.Exchange(context.Background(), d.orders, withActor(req(first.AccessToken, "payments"),
		forge(strings.Replace(escaped, `"client_id":"bff"`, `"client_id":"orders"`, 1))))
	if wantCode(t, "forged actor_token", err, issuer.CodeInvalidRequest); err == nil || !strings.Contains(err.Error(), "actor_token is not a valid") {
		t.Errorf("forged actor_token: %v", err)
	}
}
