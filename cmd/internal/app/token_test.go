package app_test

// The token endpoint end to end through the assembly: an internal token a standard OIDC library
// verifies with the gateway's discovery and JWKS. The HTTP mapping of the token, revoke and
// back-channel logout endpoints is server's TestHTTPMapping; the rules behind them (renewal,
// recheck, revocation, expiry, refusals of subject tokens) are tested in package issuer.

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
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

// TestDiscoveryAndJWKS: the assembled gateway publishes discovery at its issuer URL, its key
// manager's active key (never private material) with the configured max-age, and is ready on
// its store. What each endpoint answers is server's TestHTTPMapping.
func TestDiscoveryAndJWKS(t *testing.T) {
	s := newStack(t)
	for _, p := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		req, _ := http.NewRequest(http.MethodGet, s.srv.URL+p, nil)
		d := s.do(req)
		if d.Status != 200 || d.str("issuer") != s.srv.URL || d.str("jwks_uri") != s.srv.URL+"/jwks.json" ||
			d.str("token_endpoint") != s.srv.URL+"/token" {
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
