package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/verifier"
)

func callOnce(t *testing.T, url, auth string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("WWW-Authenticate")
}

// issuer is a minimal OIDC issuer (discovery + JWKS) signing ES256 tokens like tokengate.
type issuer struct {
	srv *httptest.Server
	key *ecdsa.PrivateKey
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: k}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/jwks.json",
			"id_token_signing_alg_values_supported": []string{"ES256"},
			"authorization_endpoint":                is.srv.URL + "/auth", "token_endpoint": is.srv.URL + "/token",
		})
	})
	mux.HandleFunc("/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) sign(t *testing.T, typ string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", "k1")
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: is.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWhoami(t *testing.T) {
	is := newIssuer(t)
	s := &service{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	svc := httptest.NewServer(s.protect(http.HandlerFunc(whoami)))
	defer svc.Close()
	if code, _, wa := callOnce(t, svc.URL, ""); code != http.StatusServiceUnavailable || wa != "" {
		t.Fatalf("before tokengate is reached: HTTP %d, want 503", code)
	}
	s.connect(t.Context(), verifier.Config{Issuer: is.srv.URL, Audience: "demo-service", DisableFeed: true})
	now := time.Now()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": is.srv.URL, "sub": "u1", "aud": "demo-service", "exp": now.Add(time.Minute).Unix(),
			"iat": now.Unix(), "preferred_username": "alice", "roles": []string{"user"}, "sid": "s1", "client_id": "bff"}
		if mod != nil {
			mod(c)
		}
		return c
	}
	call := func(auth string) (int, string, string) { return callOnce(t, svc.URL, auth) }

	code, body, _ := call("Bearer " + is.sign(t, "at+jwt", claims(nil)))
	if code != http.StatusOK || !strings.Contains(body, `"username":"alice"`) || !strings.Contains(body, `"roles":["user"]`) || !strings.Contains(body, `"act":[]`) {
		t.Fatalf("valid token: HTTP %d %s", code, body)
	}
	for name, auth := range map[string]string{
		"no token":     "",
		"JWT typ":      "Bearer " + is.sign(t, "JWT", claims(nil)),
		"no typ":       "Bearer " + is.sign(t, "", claims(nil)),
		"other aud":    "Bearer " + is.sign(t, "at+jwt", claims(func(c map[string]any) { c["aud"] = "orders" })),
		"expired":      "Bearer " + is.sign(t, "at+jwt", claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })),
		"other issuer": "Bearer " + is.sign(t, "at+jwt", claims(func(c map[string]any) { c["iss"] = "https://evil.test" })),
		"garbage":      "Bearer not.a.jwt",
	} {
		code, body, wa := call(auth)
		if code != http.StatusUnauthorized || !strings.HasPrefix(wa, "Bearer ") {
			t.Errorf("%s: HTTP %d %q WWW-Authenticate %q, want 401 with a Bearer challenge", name, code, body, wa)
		}
		if auth != "" && !strings.Contains(wa, `error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate %q lacks error=\"invalid_token\"", name, wa)
		}
	}
}
