package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/verifier"
)

// fakeTokengate is tokengate's /token for the delegator: it records what it was sent and
// answers with answer (status, body).
type fakeTokengate struct {
	mu     sync.Mutex
	calls  []http.Request
	forms  []url.Values
	status int
	body   string
}

func (f *fakeTokengate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	f.calls = append(f.calls, *r)
	f.forms = append(f.forms, r.PostForm)
	status, body := f.status, f.body
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (f *fakeTokengate) n() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.calls) }

// downstream records the headers of the requests the delegator sends it.
type downstream struct {
	mu      sync.Mutex
	headers []http.Header
}

func (d *downstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	d.headers = append(d.headers, r.Header.Clone())
	d.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"username": "alice"})
}

func (d *downstream) n() int { d.mu.Lock(); defer d.mu.Unlock(); return len(d.headers) }

func callWith(t *testing.T, url string, header http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDownstream_DelegatesAndCallsTheFixedService: /api/downstream sends tokengate exactly the
// caller's verified token as subject_token, as its own client, for its one audience, and calls
// the one downstream URL with the delegated token; the delegated token is not in its answer.
// Hostile callers: without a token, with a token for another audience (payments' own token
// replayed at demo-service), or with a forged X-Tokengate-Actor — nothing reaches tokengate
// or the downstream service except the verified token; a refusal by tokengate reaches no one.
func TestDownstream_DelegatesAndCallsTheFixedService(t *testing.T) {
	is := newIssuer(t)
	tg := &fakeTokengate{status: http.StatusOK, body: `{"access_token":"delegated-token-xyz","token_type":"Bearer"}`}
	tgSrv := httptest.NewServer(tg)
	defer tgSrv.Close()
	down := &downstream{}
	downSrv := httptest.NewServer(down)
	defer downSrv.Close()
	d, err := newDelegator(tgSrv.URL+"/token", "demo-service", "svc-secret", "payments", downSrv.URL+"/api/whoami")
	if err != nil {
		t.Fatal(err)
	}
	s := &service{log: slog.New(slog.DiscardHandler)}
	s.connect(t.Context(), verifier.Config{Issuer: is.srv.URL, Audience: "demo-service", DisableFeed: true})
	svc := httptest.NewServer(s.protect(d))
	defer svc.Close()
	now := time.Now()
	token := func(aud string) string {
		return is.sign(t, "at+jwt", map[string]any{"iss": is.srv.URL, "sub": "u1", "aud": aud, "exp": now.Add(time.Minute).Unix(),
			"iat": now.Unix(), "sid": "s1", "client_id": "bff"})
	}
	first := token("demo-service")

	code, body := callWith(t, svc.URL+"/api/downstream?target=http://evil.test", http.Header{
		"Authorization": {"Bearer " + first}, "X-Tokengate-Actor": {"admin"}, "Cookie": {"session=abc"}})
	if code != http.StatusOK || !strings.Contains(body, `"username":"alice"`) || !strings.Contains(body, `"audience":"payments"`) {
		t.Fatalf("delegation: HTTP %d %s", code, body)
	}
	if strings.Contains(body, "delegated-token-xyz") {
		t.Error("the answer carries the delegated token")
	}
	if tg.n() != 1 || down.n() != 1 {
		t.Fatalf("tokengate called %d times, downstream %d times, want 1 and 1", tg.n(), down.n())
	}
	form, call := tg.forms[0], tg.calls[0]
	user, pass, _ := call.BasicAuth()
	if user != "demo-service" || pass != "svc-secret" || form.Get("subject_token") != first || form.Get("audience") != "payments" ||
		form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" || form.Get("actor_token") != "" ||
		call.Header.Get("X-Tokengate-Actor") != "" || call.Header.Get("Cookie") != "" {
		t.Errorf("tokengate was sent %s:%s %v headers %v", user, pass, form, call.Header)
	}
	h := down.headers[0]
	if h.Get("Authorization") != "Bearer delegated-token-xyz" || h.Get("X-Tokengate-Actor") != "" || h.Get("Cookie") != "" {
		t.Errorf("downstream got headers %v, want only the delegated token", h)
	}

	for name, hdr := range map[string]http.Header{
		"no token":                  {"X-Tokengate-Actor": {"demo-service"}},
		"payments' token replayed":  {"Authorization": {"Bearer " + token("payments")}},
		"garbage":                   {"Authorization": {"Bearer x.y.z"}},
		"basic credentials instead": {"Authorization": {"Basic ZGVtby1zZXJ2aWNlOnN2Yy1zZWNyZXQ="}},
	} {
		if code, body := callWith(t, svc.URL+"/api/downstream", hdr); code != http.StatusUnauthorized {
			t.Errorf("%s: HTTP %d %s, want 401", name, code, body)
		}
	}
	if tg.n() != 1 || down.n() != 1 {
		t.Errorf("refused callers reached tokengate (%d calls) or downstream (%d)", tg.n()-1, down.n()-1)
	}

	// tokengate refuses (the session was logged out): 403, the downstream is not called.
	tg.mu.Lock()
	tg.status, tg.body = http.StatusBadRequest, `{"error":"invalid_request","error_description":"the session was logged out"}`
	tg.mu.Unlock()
	code, body = callWith(t, svc.URL+"/api/downstream", http.Header{"Authorization": {"Bearer " + first}})
	var refusal map[string]string
	_ = json.Unmarshal([]byte(body), &refusal)
	if code != http.StatusForbidden || refusal["error"] != "delegation_refused" || !strings.Contains(refusal["error_description"], "logged out") {
		t.Errorf("tokengate's refusal: HTTP %d %s, want 403 delegation_refused naming the reason", code, body)
	}
	// tokengate fails: 503, never a pass.
	tg.mu.Lock()
	tg.status, tg.body = http.StatusServiceUnavailable, `{"error":"temporarily_unavailable"}`
	tg.mu.Unlock()
	if code, body := callWith(t, svc.URL+"/api/downstream", http.Header{"Authorization": {"Bearer " + first}}); code != http.StatusServiceUnavailable {
		t.Errorf("tokengate unavailable: HTTP %d %s, want 503", code, body)
	}
	if down.n() != 1 {
		t.Errorf("the downstream service was called %d more times after tokengate refused", down.n()-1)
	}
}

// TestNewDelegator_Flags: -call needs an absolute URL, the client id and its secret.
func TestNewDelegator_Flags(t *testing.T) {
	for name, args := range map[string][5]string{
		"relative URL": {"http://tg/token", "svc", "s", "payments", "/api/whoami"},
		"file URL":     {"http://tg/token", "svc", "s", "payments", "file:///etc/passwd"},
		"no client":    {"http://tg/token", "", "s", "payments", "http://payments/api/whoami"},
		"no secret":    {"http://tg/token", "svc", "", "payments", "http://payments/api/whoami"},
		"no audience":  {"http://tg/token", "svc", "s", " ", "http://payments/api/whoami"},
	} {
		if _, err := newDelegator(args[0], args[1], args[2], args[3], args[4]); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRequireActor_RefusesFirstHopTokensAndForgedHeaders: with -require-actor demo-service,
// payments accepts only tokens demo-service obtained by delegation; a BFF's token is refused
// (403) even with a forged X-Tokengate-Actor, and whoami shows the chain from the token.
func TestRequireActor_RefusesFirstHopTokensAndForgedHeaders(t *testing.T) {
	is := newIssuer(t)
	s := &service{log: slog.New(slog.DiscardHandler)}
	s.connect(t.Context(), verifier.Config{Issuer: is.srv.URL, Audience: "payments", DisableFeed: true,
		ActorPolicy: verifier.RequireActor("demo-service")})
	svc := httptest.NewServer(s.protect(http.HandlerFunc(whoami)))
	defer svc.Close()
	now := time.Now()
	token := func(act any) string {
		c := map[string]any{"iss": is.srv.URL, "sub": "u1", "aud": "payments", "exp": now.Add(time.Minute).Unix(),
			"iat": now.Unix(), "sid": "s1", "client_id": "demo-service"}
		if act != nil {
			c["act"] = act
		}
		return "Bearer " + is.sign(t, "at+jwt", c)
	}
	code, body := callWith(t, svc.URL, http.Header{"Authorization": {token(map[string]any{"sub": "demo-service"})}})
	if code != http.StatusOK || !strings.Contains(body, `"act":["demo-service"]`) {
		t.Fatalf("delegated token: HTTP %d %s", code, body)
	}
	for name, hdr := range map[string]http.Header{
		"first-hop token":                {"Authorization": {token(nil)}},
		"first-hop token, forged header": {"Authorization": {token(nil)}, "X-Tokengate-Actor": {"demo-service"}},
		"another actor":                  {"Authorization": {token(map[string]any{"sub": "bff"})}, "X-Tokengate-Actor": {"demo-service"}},
		"demo-service only deeper":       {"Authorization": {token(map[string]any{"sub": "ledger", "act": map[string]any{"sub": "demo-service"}})}},
	} {
		if code, body := callWith(t, svc.URL, hdr); code != http.StatusForbidden {
			t.Errorf("%s: HTTP %d %s, want 403", name, code, body)
		}
	}
}
