package app_test

// HTTP mapping of the token, revoke and back-channel logout endpoints: statuses, OAuth error
// bodies, headers. The rules behind them (renewal, recheck, revocation, expiry, introspection
// sharing) are tested in package issuer.

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/store"
)

func TestExchange_InternalTokenVerifiesWithGoOIDC(t *testing.T) {
	s := newStack(t)
	r := s.mustExchange("alice-id", "sid-1")
	for _, k := range []string{"access_token", "refresh_token", "issued_token_type", "token_type", "scope"} {
		if r.str(k) == "" {
			t.Errorf("answer lacks %s: %s", k, r.Raw)
		}
	}
	if r.str("token_type") != "Bearer" || r.str("issued_token_type") != "urn:ietf:params:oauth:token-type:access_token" {
		t.Errorf("token types: %s", r.Raw)
	}
	if r.Body["expires_in"].(float64) != 30 {
		t.Errorf("expires_in = %v, want 30", r.Body["expires_in"])
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", r.Header.Get("Cache-Control"))
	}

	ctx := oidc.ClientContext(context.Background(), s.srv.Client())
	p, err := oidc.NewProvider(ctx, s.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	v := p.Verifier(&oidc.Config{ClientID: "demo-service", Now: s.clock.Now})
	tok, err := v.Verify(ctx, r.str("access_token"))
	if err != nil {
		t.Fatalf("go-oidc rejects the internal token: %v", err)
	}
	var c struct {
		ClientID string   `json:"client_id"`
		SID      string   `json:"sid"`
		JTI      string   `json:"jti"`
		Scope    string   `json:"scope"`
		Roles    []string `json:"roles"`
		Username string   `json:"preferred_username"`
		ACR      string   `json:"acr"`
		AuthTime int64    `json:"auth_time"`
	}
	if err := tok.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if tok.Subject != "alice-id" || c.SID != "sid-1" || c.ClientID != "bff" || c.JTI == "" ||
		c.Username != "alice" || len(c.Roles) != 1 || c.ACR != "1" || c.AuthTime == 0 || c.Scope != "openid profile email" {
		t.Errorf("claims: sub=%s %+v", tok.Subject, c)
	}
	if got := tok.Audience; len(got) != 1 || got[0] != "demo-service" { // the one asked for
		t.Errorf("aud = %v", got)
	}
	jws, err := jose.ParseSignedCompact(r.str("access_token"), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Protected
	if h.ExtraHeaders["typ"] != "at+jwt" || h.KeyID != s.keys.ActiveKeyID() {
		t.Errorf("header typ=%v kid=%s", h.ExtraHeaders["typ"], h.KeyID)
	}
}

func TestExchange_AudienceAndScopeNarrowing(t *testing.T) {
	s := newStack(t)
	f := exchangeForm(s.realm.AccessToken(kctest.Token{}))
	f.Set("audience", "orders")
	f.Set("scope", "openid email")
	r := s.post("/token", "bff", bffSecret, f)
	if r.Status != http.StatusOK || r.str("scope") != "openid email" {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
	jws, _ := jose.ParseSignedCompact(r.str("access_token"), []jose.SignatureAlgorithm{jose.ES256})
	if !strings.Contains(string(jws.UnsafePayloadWithoutVerification()), `"aud":["orders"]`) {
		t.Errorf("payload %s", jws.UnsafePayloadWithoutVerification())
	}
	// Renewal may narrow further but never widen.
	rn := s.post("/token", "bff", bffSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}, "scope": {"email"}})
	if rn.Status != http.StatusOK || rn.str("scope") != "email" {
		t.Errorf("narrowing renewal: %d %s", rn.Status, rn.Raw)
	}
	rw := s.post("/token", "bff", bffSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}, "scope": {"profile"}})
	if rw.Status != http.StatusBadRequest || rw.str("error") != "invalid_scope" {
		t.Errorf("widening renewal: %d %s", rw.Status, rw.Raw)
	}
}

func TestRenew_NewTokenEachTimeSameClaims(t *testing.T) {
	s := newStack(t)
	r := s.mustExchange("bob-id", "sid-b")
	rn := s.renew(r.str("refresh_token"))
	if rn.Status != http.StatusOK {
		t.Fatal(rn.Raw)
	}
	if rn.str("access_token") == r.str("access_token") {
		t.Error("renewal must mint a new access token")
	}
	if _, ok := rn.Body["refresh_token"]; ok {
		t.Error("renewal answered a refresh_token; the client keeps the one it has (RFC 6749 §6)")
	}
}

func TestRenew_RefusedAfterBackchannelLogout(t *testing.T) {
	s := newStack(t)
	up := s.realm.AccessToken(kctest.Token{Subject: "alice-id", SID: "sid-out", IssuedAt: s.clock.Now()})
	r := s.exchange(up)
	other := s.mustExchange("alice-id", "sid-other-device")
	if rn := s.renew(r.str("refresh_token")); rn.Status != http.StatusOK {
		t.Fatal(rn.Raw)
	}
	lo := s.logout(s.realm.LogoutToken("alice-id", "sid-out"))
	if lo.Status != http.StatusOK || lo.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("logout: %d %s cache=%q", lo.Status, lo.Raw, lo.Header.Get("Cache-Control"))
	}
	rn := s.renew(r.str("refresh_token"))
	if rn.Status != http.StatusBadRequest || rn.str("error") != "invalid_grant" {
		t.Errorf("renewal after logout: %d %s", rn.Status, rn.Raw)
	}
	rx := s.exchange(up)
	if rx.Status != http.StatusBadRequest || rx.str("error") != "invalid_request" {
		t.Errorf("re-exchange after logout: %d %s", rx.Status, rx.Raw)
	}
	if ro := s.renew(other.str("refresh_token")); ro.Status != http.StatusOK {
		t.Errorf("another session of the same user must keep working: %d %s", ro.Status, ro.Raw)
	}
}

func TestRenew_UpstreamDownKeepsRenewingExchangeUnavailable(t *testing.T) {
	s := newStack(t)
	r := s.mustExchange("erin", "sid-down")
	s.realm.SetDown(true)
	s.clock.Advance(2 * time.Minute) // a recheck is due and fails: renewal still allowed
	for range 3 {
		if rn := s.renew(r.str("refresh_token")); rn.Status != http.StatusOK {
			t.Fatalf("renew while upstream is down: %d %s", rn.Status, rn.Raw)
		}
	}
	rx := s.exchange(s.realm.AccessToken(kctest.Token{}))
	if rx.Status != http.StatusServiceUnavailable || rx.str("error") != "temporarily_unavailable" || rx.Header.Get("Retry-After") == "" {
		t.Errorf("exchange while upstream is down: %d %s", rx.Status, rx.Raw)
	}
	s.realm.SetDown(false)
	if rx := s.exchange(s.realm.AccessToken(kctest.Token{})); rx.Status != http.StatusOK {
		t.Errorf("exchange after upstream is back: %d %s", rx.Status, rx.Raw)
	}
}

func TestRevoke_EndsTheSession(t *testing.T) {
	s := newStack(t)
	r := s.mustExchange("frank", "sid-rev")
	rt := r.str("refresh_token")
	cases := []struct {
		name, id, secret, token string
		status                  int
		code                    string
	}{
		{"another client's token is refused", "other", otherSecret, rt, 400, "unauthorized_client"},
		{"an access token is not revocable", "bff", bffSecret, r.str("access_token"), 400, "unsupported_token_type"},
		{"an unknown token is fine", "bff", bffSecret, "not-a-token", 200, ""},
		{"no token", "bff", bffSecret, "", 400, "invalid_request"},
		{"no client auth", "", "", rt, 401, "invalid_client"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := s.post("/revoke", c.id, c.secret, url.Values{"token": {c.token}})
			if got.Status != c.status || got.str("error") != c.code {
				t.Errorf("%d %s", got.Status, got.Raw)
			}
			if _, err := s.store.SessionRevocation(context.Background(), "sid-rev"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("state changed: %v", err)
			}
		})
	}
	if got := s.post("/revoke", "bff", bffSecret, url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}}); got.Status != 200 {
		t.Fatalf("revoke: %d %s", got.Status, got.Raw)
	}
	if rn := s.renew(rt); rn.str("error") != "invalid_grant" {
		t.Errorf("renewal after revoke: %d %s", rn.Status, rn.Raw)
	}
}

func TestDiscoveryAndJWKS(t *testing.T) {
	s := newStack(t)
	for _, p := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		req, _ := http.NewRequest(http.MethodGet, s.srv.URL+p, nil)
		d := s.do(req)
		if d.Status != 200 || d.str("issuer") != s.srv.URL || d.str("jwks_uri") != s.srv.URL+"/jwks.json" ||
			d.str("token_endpoint") != s.srv.URL+"/token" || d.Body["backchannel_logout_supported"] != true {
			t.Errorf("%s: %s", p, d.Raw)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/jwks.json", nil)
	j := s.do(req)
	if j.Status != 200 || j.Header.Get("Cache-Control") != "public, max-age=300" || !strings.Contains(j.Raw, s.keys.ActiveKeyID()) {
		t.Errorf("jwks: %d %q %s", j.Status, j.Header.Get("Cache-Control"), j.Raw)
	}
	if strings.Contains(j.Raw, `"d"`) {
		t.Fatal("JWKS leaks private key material")
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		req, _ := http.NewRequest(http.MethodGet, s.srv.URL+p, nil)
		if h := s.do(req); h.Status != 200 {
			t.Errorf("%s: %d", p, h.Status)
		}
	}
}

// TestExchange_SubjectTokenRefusalsAre400InvalidRequest: the issuer's refusals of a subject
// token not meant for tokengate, not issued to the caller's Keycloak client, or not an access
// token of the provider at all (each with its own reason) reach the BFF as 400 invalid_request
// with the issuer's description, not cacheable, with nothing stored, Keycloak not asked and one
// exchange_refused line naming the reason.
func TestExchange_SubjectTokenRefusalsAre400InvalidRequest(t *testing.T) {
	s := newStack(t)
	before, err := s.store.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	master := strings.TrimSuffix(s.realm.Issuer(), "/demo") + "/master"
	for _, c := range []struct {
		name, client, secret string
		token                kctest.Token
		raw                  string // sent instead of token when set
		desc                 string // the whole description, or (with prefix) its start
		prefix               bool
		reason               string
	}{
		{"aud lacks tokengate", "bff", bffSecret, kctest.Token{Audience: []string{"account"}}, "",
			`subject_token is not meant for tokengate: its aud does not contain "tokengate" (the upstream client "bff" needs an audience mapper adding "tokengate")`, false, "audience"},
		{"token of another Keycloak client", "other", otherSecret, kctest.Token{}, "",
			`subject_token was issued to upstream client "bff", whose tokens this client may not exchange`, false, "upstream_client"},
		{"ID token", "bff", bffSecret, kctest.Token{Typ: "ID"}, "",
			`subject_token is an ID token (typ "ID"), not an access token (typ "Bearer"): send the access token`, false, "typ"},
		{"logout token", "bff", bffSecret, kctest.Token{}, s.realm.LogoutToken("alice", "sid-1"),
			`subject_token is a logout token (JOSE typ "logout+jwt"), not an access token: send the access token`, false, "typ"},
		{"master realm", "bff", bffSecret, kctest.Token{Issuer: master}, "",
			`subject_token was issued by "` + master + `", not by the upstream provider "` + s.realm.Issuer() + `" (a token of another realm or server)`, false, "issuer"},
		{"expired", "bff", bffSecret, kctest.Token{IssuedAt: time.Now().Add(-time.Hour), Lifetime: time.Minute}, "",
			"subject_token expired at ", true, "expired"},
		{"not a JWT", "bff", bffSecret, kctest.Token{}, "garbage",
			"subject_token is not a JWT (the upstream provider's access tokens are signed JWTs)", false, "not_jwt"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok := c.raw
			if tok == "" {
				tok = s.realm.AccessToken(c.token)
			}
			r := s.post("/token", c.client, c.secret, exchangeForm(tok))
			d := r.str("error_description")
			if r.Status != http.StatusBadRequest || r.str("error") != "invalid_request" || (d != c.desc && !(c.prefix && strings.HasPrefix(d, c.desc))) {
				t.Errorf("got %d %s, want 400 invalid_request %q", r.Status, r.Raw, c.desc)
			}
			if r.Header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
				t.Errorf("headers %v", r.Header)
			}
			if want := `"reason":"` + c.reason + `"`; !strings.Contains(s.logs.String(), want) {
				t.Errorf("no exchange_refused line with %s", want)
			}
		})
	}
	if n := s.realm.Introspections.Load(); n != 0 {
		t.Errorf("%d introspections for tokens refused locally", n)
	}
	if after, err := s.store.Stats(context.Background()); err != nil || after != before {
		t.Errorf("state changed: %+v → %+v (%v)", before, after, err)
	}
}
