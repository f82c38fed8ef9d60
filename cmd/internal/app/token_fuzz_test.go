package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
)

// Shared by the fuzz targets of this package: each fuzz worker process builds one stack (fake
// realm, bbolt store, keys, issuer, handler) and sends every input to its handler in process.

// fingerprint summarises the durable state: record counts and the key document.
func (s *stack) fingerprint(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	st, err := s.store.Stats(ctx)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	kd, err := s.store.Keys(ctx)
	if err != nil {
		t.Fatalf("keys: %v", err)
	}
	return fmt.Sprintf("%+v keys=%x", st, sha256.Sum256(kd))
}

// serve sends one request to the stack's handler and returns the recorded answer.
func (s *stack) serve(method, path, contentType, authorization string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://tokengate.test"+path, strings.NewReader(string(body)))
	req.RemoteAddr = "192.0.2.7:4711"
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	(*s.handler.Load()).ServeHTTP(rec, req)
	return rec
}

// headerValueOK reports whether v could arrive as an HTTP header value: net/http refuses
// control characters before a handler ever runs, so inputs with them are not tested here.
func headerValueOK(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// checkOAuthError asserts the shape every refusal of the OAuth endpoints has: a 4xx status, a
// JSON body with an error code, and no caching.
func checkOAuthError(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("server error %d for outside input: %s", rec.Code, rec.Body.String())
	}
	if rec.Code < 400 {
		return
	}
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == "" {
		t.Fatalf("%d without an OAuth error body: %q", rec.Code, rec.Body.String())
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("%d error with Cache-Control %q", rec.Code, cc)
	}
}

// seedToken mints an upstream access token that stays valid for the whole fuzz run.
func (s *stack) seedToken(sub, sid string) string {
	return s.realm.AccessToken(kctest.Token{Subject: sub, SID: sid, IssuedAt: s.clock.Now(), Lifetime: 45 * time.Minute})
}

// seedRefresh exchanges a fresh upstream token and returns the refresh token.
func (s *stack) seedRefresh(t testing.TB, sub, sid string) string {
	t.Helper()
	r := s.exchange(s.seedToken(sub, sid))
	if r.Status != http.StatusOK || r.str("refresh_token") == "" {
		t.Fatalf("seed exchange: %d %s", r.Status, r.Raw)
	}
	return r.str("refresh_token")
}

// FuzzTokenEndpoint sends arbitrary form bodies, content types and Authorization headers to
// POST /token and POST /revoke (readForm, clientCredentials, grant dispatch, exchange, renewal,
// revocation). Invariants: never a panic or a 5xx; every refusal is an OAuth error that changes
// no durable state.
func FuzzTokenEndpoint(f *testing.F) {
	s := newStack(f)
	basic := func(id, secret string) string {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		return r.Header.Get("Authorization")
	}
	form := "application/x-www-form-urlencoded"
	bff := basic("bff", bffSecret)
	at := s.seedToken("fuzz-alice", "fuzz-sid-1")
	rt := s.seedRefresh(f, "fuzz-bob", "fuzz-sid-2")
	ex := exchangeForm(at)
	f.Add(false, form, bff, ex.Encode())
	ex.Set("audience", "orders")
	ex.Set("scope", "openid profile")
	f.Add(false, form+"; charset=utf-8", bff, ex.Encode())
	ex.Del("audience")
	ex.Set("client_id", "bff")
	ex.Set("client_secret", bffSecret)
	f.Add(false, form, "", ex.Encode())
	f.Add(false, form, bff, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode())
	f.Add(false, form, bff, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"openid"}}.Encode())
	f.Add(true, form, bff, url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}}.Encode())
	f.Add(true, form, basic("other", otherSecret), url.Values{"token": {rt}}.Encode())
	f.Add(false, "application/json", bff, `{"grant_type":"refresh_token"}`)
	f.Add(false, form, "Bearer x", "grant_type=refresh_token&refresh_token=a.b.c.d.e")

	f.Fuzz(func(t *testing.T, revoke bool, contentType, authorization, body string) {
		if !headerValueOK(contentType) || !headerValueOK(authorization) {
			t.Skip("not deliverable over HTTP")
		}
		path := "/token"
		if revoke {
			path = "/revoke"
		}
		before := s.fingerprint(t)
		rec := s.serve(http.MethodPost, path, contentType, authorization, []byte(body))
		checkOAuthError(t, rec)
		switch {
		case rec.Code == http.StatusOK && !revoke:
			var resp struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.AccessToken == "" || resp.TokenType != "Bearer" {
				t.Fatalf("200 without a token: %s", rec.Body.String())
			}
			checkIssued(t, claimsOf(t, resp.AccessToken))
			if after := s.fingerprint(t); after != before {
				t.Fatalf("a token request changed durable state: %s → %s", before, after)
			}
		case rec.Code == http.StatusOK:
			// A successful revocation may record a logout; nothing else may change.
		default:
			if after := s.fingerprint(t); after != before {
				t.Fatalf("refused request (%d %s) changed durable state: %s → %s", rec.Code, rec.Body.String(), before, after)
			}
		}
	})
}

// FuzzRefreshToken sends arbitrary refresh_token values from an authenticated client: sealed-token
// parsing (compact JWE, dir/A256GCM), grant decoding and the renewal policy. Invariants: 200 only
// for the one grant issued at set-up (no forged or mutated token opens another grant), refusals are
// invalid_grant/invalid_request 400s, and renewal never changes durable state.
func FuzzRefreshToken(f *testing.F) {
	s := newStack(f)
	rt := s.seedRefresh(f, "fuzz-carol", "fuzz-sid-3")
	f.Add(rt)
	parts := strings.Split(rt, ".")
	f.Add(strings.Join(parts[:4], "."))
	f.Add(parts[0] + "..." + parts[3] + "." + parts[4])
	f.Add(rt + "A")
	f.Add("eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIiwia2lkIjoibm9wZSJ9..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("not-a-token")

	f.Fuzz(func(t *testing.T, refresh string) {
		before := s.fingerprint(t)
		body := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}.Encode()
		rec := s.serve(http.MethodPost, "/token", "application/x-www-form-urlencoded", bffBasic, []byte(body))
		checkOAuthError(t, rec)
		switch rec.Code {
		case http.StatusOK:
			var resp struct {
				AccessToken string `json:"access_token"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &resp)
			c := claimsOf(t, resp.AccessToken)
			if sub, _ := c["sub"].(string); sub != "fuzz-carol" {
				t.Fatalf("renewal issued a token for %q from %q", sub, refresh)
			}
			checkIssued(t, c)
		case http.StatusBadRequest:
			var e struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &e)
			if e.Error != "invalid_grant" && e.Error != "invalid_request" {
				t.Fatalf("refusal with %q: %s", e.Error, rec.Body.String())
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
		if after := s.fingerprint(t); after != before {
			t.Fatalf("renewal changed durable state: %s → %s", before, after)
		}
	})
}

// checkIssued asserts what any internal token the fuzzed stack issues must say: a known client,
// only audiences that client may have, a subject the realm really authenticated, no scope
// beyond the upstream token's, and a lifetime within the TTL.
func checkIssued(t *testing.T, c map[string]any) {
	t.Helper()
	allowed := map[string][]string{"bff": {"demo-service", "orders"}, "other": {"demo-service"}}
	client, _ := c["client_id"].(string)
	auds, _ := c["aud"].([]any)
	if allowed[client] == nil || len(auds) == 0 {
		t.Fatalf("issued to client %q for audiences %v", client, c["aud"])
	}
	for _, a := range auds {
		if s, _ := a.(string); !slices.Contains(allowed[client], s) {
			t.Fatalf("client %s got audience %v", client, a)
		}
	}
	if sub, _ := c["sub"].(string); !strings.HasPrefix(sub, "fuzz-") {
		t.Fatalf("issued for subject %q", sub)
	}
	scope, _ := c["scope"].(string)
	for _, s := range strings.Fields(scope) {
		if !slices.Contains([]string{"openid", "profile", "email"}, s) {
			t.Fatalf("scope %q beyond the upstream token's", scope)
		}
	}
	iat, _ := c["iat"].(float64)
	exp, _ := c["exp"].(float64)
	if exp <= iat || exp-iat > 30 {
		t.Fatalf("lifetime %v s", exp-iat)
	}
}

// bffBasic is the Authorization header of the bff client.
var bffBasic = func() string {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.SetBasicAuth("bff", bffSecret)
	return r.Header.Get("Authorization")
}()
