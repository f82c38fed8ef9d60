package forwardauth

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// cgiKey is a header name as a CGI-style server (Python's WSGI environ, PHP's $_SERVER,
// Rack) files it: without case, '_' and '-' alike. Written here again, not taken from the
// code under test.
func cgiKey(name string) string { return strings.ToLower(strings.ReplaceAll(name, "_", "-")) }

// echoUpstream answers every request with the headers it received, as JSON.
func echoUpstream(t testing.TB) *url.URL {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	return u
}

// send sends a GET with the header fields exactly as named (no canonicalisation), one field
// per value, over a real connection.
func send(t *testing.T, base string, fields [][2]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/orders/1", nil)
	for _, f := range fields {
		req.Header[f[0]] = append(req.Header[f[0]], f[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// forgeries are client headers an upstream reading names the CGI way takes for one that
// tokengate-auth sets: case and '_'/'-' variants, repeats, and names under X-Tokengate-.
var forgeries = [][2]string{
	{"X_Tokengate_Roles", "admin"},
	{"X_Tokengate_Roles", "root-group"}, // a repeat: CGI servers comma-join them
	{"x_tokengate_username", "root"},
	{"X-Tokengate_Subject", "admin"},
	{"X_TOKENGATE-SESSION", "sid-of-someone-else"},
	{"X_Tokengate_Client", "admin-cli"},
	{"x_Tokengate_scope", "admin"},
	{"X-TOKENGATE-ROLES", "admin"},
	{"x-tokengate-roles", "admin"},
	{"X_Tokengate_Impersonate", "root"}, // not set by tokengate-auth, but in its namespace
	{"X_Forwarded_For", "6.6.6.6"},      // set by the proxy (SetXForwarded)
	{"x_forwarded_host", "evil.example"},
	{"X_Forwarded-Proto", "https"},
	{"FORWARDED", "for=6.6.6.6"},
}

func TestProxy_RemovesEveryVariantOfTheHeadersItSets(t *testing.T) {
	f := newFixture(t)
	front := httptest.NewServer(f.gate.ProxyHandler(echoUpstream(t)))
	defer front.Close()
	for _, withRoles := range []bool{true, false} {
		edit := func(c map[string]any) {}
		wantRoles, wantUser := "reader,writer", "alice"
		if !withRoles { // the forged values must not survive where the token has no claim either
			edit = func(c map[string]any) { delete(c, "roles"); delete(c, "preferred_username") }
			wantRoles, wantUser = "", ""
		}
		tok := f.tg.AccessToken("alice", "sid-1", time.Now(), edit)
		fields := append([][2]string{{"Authorization", "Bearer " + tok}, {"X-Request-Id", "r-1"}, {"X_Request_Id", "r-2"}}, forgeries...)
		resp, body := send(t, front.URL, fields)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		var got http.Header
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			cgiKey(HeaderSubject): "alice", cgiKey(HeaderSession): "sid-1", cgiKey(HeaderClient): "bff",
			cgiKey(HeaderScope): "openid orders:read", cgiKey(HeaderRoles): wantRoles, cgiKey(HeaderUsername): wantUser,
			"x-forwarded-for": "127.0.0.1", "x-forwarded-host": strings.TrimPrefix(front.URL, "http://"), "x-forwarded-proto": "http",
			"forwarded": "",
		}
		// What a CGI-style upstream would see under each name: every field of every spelling.
		seen := map[string][]string{}
		for k, vs := range got {
			seen[cgiKey(k)] = append(seen[cgiKey(k)], vs...)
		}
		for k, v := range want {
			if w := []string{v}; v == "" && len(seen[k]) != 0 || v != "" && !slices.Equal(seen[k], w) {
				t.Errorf("roles in token %v: upstream reads %s as %q, want %q", withRoles, k, seen[k], v)
			}
		}
		for k, vs := range seen {
			if strings.HasPrefix(k, "x-tokengate-") && want[k] == "" && len(vs) > 0 {
				t.Errorf("client-supplied %s = %q reached the upstream", k, vs)
			}
		}
		if r := seen["x-request-id"]; len(r) != 2 {
			t.Errorf("headers tokengate-auth does not set must pass untouched: X-Request-Id %q", r)
		}
	}
	assertMetric(t, f.reg, `tokengate_auth_forged_headers_removed_total 2`)
}

// TestProxy_OwnsEveryHeaderItSets keeps the list of headers proxy mode strips complete: every
// header the upstream gets that the client did not send, or with another value, is one of
// proxyHeaders (or one Go's transport adds to every request).
func TestProxy_OwnsEveryHeaderItSets(t *testing.T) {
	f := newFixture(t)
	front := httptest.NewServer(f.gate.ProxyHandler(echoUpstream(t)))
	defer front.Close()
	sent := [][2]string{{"Authorization", "Bearer " + f.tg.AccessToken("alice", "sid-1", time.Now())}, {"User-Agent", "t"}}
	resp, body := send(t, front.URL, sent)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var got http.Header
	_ = json.Unmarshal(body, &got)
	owned := map[string]bool{}
	for _, k := range proxyHeaders {
		owned[cgiKey(k)] = true
	}
	transport := map[string]bool{"accept-encoding": true}
	for k, vs := range got {
		if i := slices.IndexFunc(sent, func(f [2]string) bool { return strings.EqualFold(f[0], k) }); i >= 0 && slices.Equal(vs, []string{sent[i][1]}) {
			continue
		}
		if !owned[cgiKey(k)] && !transport[cgiKey(k)] {
			t.Errorf("proxy mode sets %s = %q but does not strip the client's: add it to proxyHeaders", k, vs)
		}
	}
}

func TestProxy_RefusesTwoAuthorizationFields(t *testing.T) {
	f := newFixture(t)
	front := httptest.NewServer(f.gate.ProxyHandler(echoUpstream(t)))
	defer front.Close()
	now := time.Now()
	good, other := f.tg.AccessToken("alice", "sid-1", now), f.tg.AccessToken("mallory", "sid-2", now)
	for _, fields := range [][][2]string{
		{{"Authorization", "Bearer " + good}, {"Authorization", "Bearer " + other}},
		{{"Authorization", "Bearer " + good}, {"authorization", "Bearer not-verified"}},
	} {
		resp, body := send(t, front.URL, fields)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"invalid_request"`) {
			t.Errorf("%d %s, want 400 invalid_request: the upstream could read the other token", resp.StatusCode, body)
		}
	}
	assertMetric(t, f.reg, `tokengate_auth_decisions_total{result="ambiguous"} 2`)
}

func TestAuth_RefusesUnderscoreVariantsOfIdentityHeaders(t *testing.T) {
	f := newFixture(t)
	front := httptest.NewServer(f.gate.AuthHandler())
	defer front.Close()
	tok := "Bearer " + f.tg.AccessToken("alice", "sid-1", time.Now())
	for _, c := range []struct {
		fields [][2]string
		status int
	}{
		// A proxy forwards these beside the identity headers it sets; a CGI upstream reads both.
		{[][2]string{{"X_Tokengate_Roles", "admin"}}, 403},
		{[][2]string{{"x_tokengate_roles", "admin"}, {"X_TOKENGATE_ROLES", "admin"}}, 403},
		{[][2]string{{"X-Tokengate_Username", "root"}}, 403},
		{[][2]string{{"X_Tokengate-Subject", "admin"}}, 403},
		{[][2]string{{"x_tokengate_session", "sid-x"}}, 403},
		{[][2]string{{"X_Tokengate_Client", "admin-cli"}}, 403},
		{[][2]string{{"X_Tokengate_Scope", "admin"}}, 403},
		{[][2]string{{"X_Tokengate_Tenant", "other"}}, 403}, // a name tokengate-auth may set one day
		// The proxy replaces these itself (case does not matter to it): nothing to refuse.
		{[][2]string{{"X-Tokengate-Roles", "admin"}, {"x-tokengate-roles", "admin"}, {"X-TOKENGATE-SUBJECT", "admin"}}, 200},
		{[][2]string{{"X_Request_Id", "r-1"}, {"Accept_Language", "en"}}, 200},
	} {
		resp, body := send(t, front.URL, append([][2]string{{"Authorization", tok}}, c.fields...))
		if resp.StatusCode != c.status {
			t.Errorf("%q: %d %s, want %d", c.fields, resp.StatusCode, body, c.status)
			continue
		}
		if c.status != 403 {
			if resp.Header.Get(HeaderSubject) != "alice" || resp.Header.Get(HeaderRoles) != "reader,writer" {
				t.Errorf("%q: identity %v", c.fields, resp.Header)
			}
			continue
		}
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &e) != nil || e.Error != "invalid_request" || !strings.Contains(strings.ToLower(e.Description), strings.ToLower(c.fields[0][0])) {
			t.Errorf("%q: body %s, want invalid_request naming the header (in any case: Go canonicalises it)", c.fields, body)
		}
		for _, k := range IdentityHeaders {
			if _, ok := resp.Header[k]; ok {
				t.Errorf("%q: a refusal carries %s", c.fields, k)
			}
		}
	}
	// Two Authorization fields: the proxy forwards both, the service may read the other one.
	resp, body := send(t, front.URL, [][2]string{{"Authorization", tok}, {"Authorization", "Bearer x.y.z"}})
	if resp.StatusCode != 403 || !strings.Contains(string(body), "invalid_request") {
		t.Errorf("two Authorization fields: %d %s, want 403 invalid_request", resp.StatusCode, body)
	}
	assertMetric(t, f.reg, `tokengate_auth_decisions_total{result="forged"} 8`)
	assertMetric(t, f.reg, `tokengate_auth_decisions_total{result="ambiguous"} 1`)
}

func TestAuth_HostileRefusalsWarnAtMostOnceAMinute(t *testing.T) {
	var logs bytes.Buffer
	f := newFixture(t)
	g := NewGate(f.gate.src, nil, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	front := httptest.NewServer(g.AuthHandler())
	defer front.Close()
	tok := "Bearer " + f.tg.AccessToken("alice", "sid-1", time.Now())
	for range 50 {
		if resp, body := send(t, front.URL, [][2]string{{"Authorization", tok}, {"X_Tokengate_Roles", "admin"}}); resp.StatusCode != 403 {
			t.Fatalf("%d %s, want 403", resp.StatusCode, body)
		}
		if resp, body := send(t, front.URL, [][2]string{{"Authorization", tok}, {"Authorization", tok}}); resp.StatusCode != 403 {
			t.Fatalf("%d %s, want 403", resp.StatusCode, body)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Fatalf("100 hostile requests logged %d WARN lines, want 1:\n%s", n, logs.String())
	}
}
