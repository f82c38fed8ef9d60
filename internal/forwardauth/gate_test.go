package forwardauth

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/testwait"
	"github.com/tokengate/tokengate/verifier"
	"github.com/tokengate/tokengate/verifier/verifiertest"
)

// clock is time.Now moved forward by the test.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// static is a Source with a fixed verifier (nil: not connected).
type static struct{ v Verifier }

func (s static) Current() Verifier { return s.v }

type fixture struct {
	tg    *verifiertest.Server
	clock *clock
	v     *verifier.Verifier
	reg   *prometheus.Registry
	gate  *Gate
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{tg: verifiertest.New(t, verifiertest.Options{}), clock: &clock{}, reg: prometheus.NewRegistry()}
	cfg := f.tg.Config()
	cfg.FailClosedAfter, cfg.Now, cfg.Logger = 3*time.Second, f.clock.Now, slog.New(slog.DiscardHandler)
	v, err := verifier.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	f.v = v
	src := static{v}
	f.gate = NewGate(src, NewMetrics(f.reg, src), slog.New(slog.DiscardHandler))
	return f
}

// ask sends an auth subrequest as nginx does (GET, no body) with the given Authorization.
func ask(h http.Handler, authorization string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/orders/42?x=1", nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestAuth_AnswersEverySubrequest(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	good := f.tg.AccessToken("alice", "sid-1", now)
	tampered := good[:len(good)-4] + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, good[len(good)-4:])
	cases := []struct {
		name, auth string
		status     int
		challenge  string // WWW-Authenticate
	}{
		{"valid token", "Bearer " + good, 200, ""},
		{"scheme is case-insensitive", "bearer " + good, 200, ""},
		{"no Authorization", "", 401, `Bearer realm="tokengate"`},
		{"not a bearer token", "Basic YWxpY2U6c2VjcmV0", 401, `Bearer realm="tokengate"`},
		{"tampered signature", "Bearer " + tampered, 401, `error="invalid_token"`},
		{"not a JWT", "Bearer not-a-token", 401, `error="invalid_token"`},
		{"expired", "Bearer " + f.tg.AccessToken("alice", "sid-2", now.Add(-10*time.Minute)), 401, `error="invalid_token"`},
		{"another audience", "Bearer " + f.tg.AccessToken("alice", "sid-3", now, func(c map[string]any) { c["aud"] = []string{"billing"} }), 401, `error="invalid_token"`},
		{"another issuer", "Bearer " + f.tg.AccessToken("alice", "sid-4", now, func(c map[string]any) { c["iss"] = "https://evil.example" }), 401, `error="invalid_token"`},
		{"an ID token, not at+jwt", "Bearer " + f.tg.Sign("JWT", map[string]any{"iss": f.tg.URL(), "sub": "alice", "aud": verifiertest.DefaultAudience,
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}), 401, `error="invalid_token"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := ask(f.gate.AuthHandler(), c.auth)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d (%s)", w.Code, c.status, w.Body)
			}
			if got := w.Header().Get("WWW-Authenticate"); !strings.Contains(got, c.challenge) || (c.challenge == "") != (got == "") {
				t.Errorf("WWW-Authenticate %q, want it to contain %q", got, c.challenge)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", w.Header().Get("Cache-Control"))
			}
			if c.status != 200 {
				if w.Header().Get(HeaderSubject) != "" {
					t.Errorf("a refusal carries identity header %s", HeaderSubject)
				}
				return
			}
			want := map[string]string{HeaderSubject: "alice", HeaderSession: "sid-1", HeaderClient: "bff",
				HeaderScope: "openid orders:read", HeaderRoles: "reader,writer", HeaderUsername: "alice"}
			for k, v := range want {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
	assertMetric(t, f.reg, `tokengate_auth_decisions_total{result="allowed"} 2`)
	assertMetric(t, f.reg, `tokengate_auth_decisions_total{result="missing"} 2`)
	assertMetric(t, f.reg, `tokengate_auth_decisions_total{result="invalid"} 6`)
}

func TestAuth_SendsEveryIdentityHeaderEvenEmpty(t *testing.T) {
	f := newFixture(t)
	tok := f.tg.AccessToken("alice", "sid-1", time.Now(), func(c map[string]any) { delete(c, "roles"); delete(c, "preferred_username") })
	w := ask(f.gate.AuthHandler(), "Bearer "+tok)
	if w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	for _, k := range IdentityHeaders {
		if _, ok := w.Header()[k]; !ok {
			t.Errorf("%s missing: a proxy would keep the client's value", k)
		}
	}
	if w.Header().Get(HeaderRoles) != "" || w.Header().Get(HeaderSubject) != "alice" {
		t.Errorf("roles %q subject %q", w.Header().Get(HeaderRoles), w.Header().Get(HeaderSubject))
	}
}

func TestAuth_RefusesASessionRevokedOnTheStream(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	loggedOut := "Bearer " + f.tg.AccessToken("alice", "sid-out", now)
	other := "Bearer " + f.tg.AccessToken("alice", "sid-other", now)
	if w := ask(f.gate.AuthHandler(), loggedOut); w.Code != 200 {
		t.Fatalf("before the logout: %d", w.Code)
	}
	f.tg.RevokeSession("set-1", "alice", "sid-out", now)
	deadline := time.Now().Add(3 * time.Second)
	for {
		w := ask(f.gate.AuthHandler(), loggedOut)
		if w.Code == 401 {
			if !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate %q", w.Header().Get("WWW-Authenticate"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d 3s after the session-revoked event", w.Code)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if w := ask(f.gate.AuthHandler(), other); w.Code != 200 {
		t.Errorf("another session of the user: %d, want 200", w.Code)
	}
	assertMetric(t, f.reg, `tokengate_auth_decisions_total{result="revoked"} 1`)
	assertMetric(t, f.reg, `tokengate_auth_revocations_applied_total 1`)
}

func TestAuth_FailsClosedWhileTheStreamIsQuiet(t *testing.T) {
	f := newFixture(t)
	tok := "Bearer " + f.tg.AccessToken("alice", "sid-1", time.Now())
	admin := AdminHandler(static{f.v}, f.reg)
	f.tg.SetDown(true)
	f.clock.advance(4 * time.Second) // past fail_closed_after (3s) without an answer
	w := ask(f.gate.AuthHandler(), tok)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" ||
		!strings.Contains(w.Body.String(), "temporarily_unavailable") {
		t.Fatalf("while failing closed: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if got := get(admin, "/readyz"); got.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while failing closed: %d", got.Code)
	}
	assertMetric(t, f.reg, `tokengate_auth_failing_closed 1`)
	f.tg.SetDown(false)
	testwait.Eventually(t, 5*time.Second, "accepting again once the stream answers", func() bool { return ask(f.gate.AuthHandler(), tok).Code == 200 })
	if got := get(admin, "/readyz"); got.Code != http.StatusOK {
		t.Errorf("/readyz after recovery: %d %s", got.Code, got.Body)
	}
}

func TestAuth_RefusesWith503UntilConnected(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := static{nil}
	g := NewGate(src, NewMetrics(reg, src), slog.New(slog.DiscardHandler))
	if w := ask(g.AuthHandler(), "Bearer x.y.z"); w.Code != http.StatusServiceUnavailable {
		t.Errorf("not connected: %d, want 503", w.Code)
	}
	admin := AdminHandler(src, reg)
	if w := get(admin, "/readyz"); w.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz: %d", w.Code)
	}
	if w := get(admin, "/healthz"); w.Code != http.StatusOK {
		t.Errorf("/healthz: %d", w.Code)
	}
	assertMetric(t, reg, `tokengate_auth_failing_closed 1`)
}

func TestConnector_RefusesUntilTokengateAnswers(t *testing.T) {
	tg := verifiertest.New(t, verifiertest.Options{})
	tg.SetAway(true)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := tg.Config()
	cfg.Logger = slog.New(slog.DiscardHandler)
	c := Connect(ctx, cfg, slog.New(slog.DiscardHandler))
	defer func() {
		cancel()
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}()
	g := NewGate(c, nil, slog.New(slog.DiscardHandler))
	tok := "Bearer " + tg.AccessToken("alice", "sid-1", time.Now())
	time.Sleep(300 * time.Millisecond) // a failed attempt or two
	if w := ask(g.AuthHandler(), tok); w.Code != http.StatusServiceUnavailable || c.Current() != nil {
		t.Fatalf("before tokengate answers: %d, connected %v", w.Code, c.Current() != nil)
	}
	tg.SetAway(false)
	testwait.Eventually(t, 5*time.Second, "accepting once tokengate answers", func() bool { return ask(g.AuthHandler(), tok).Code == http.StatusOK })
}

func TestProxy_ForwardsWithVerifiedIdentityOnly(t *testing.T) {
	f := newFixture(t)
	var seen atomic.Pointer[http.Header]
	var calls atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		h := r.Header.Clone()
		seen.Store(&h)
		_, _ = io.WriteString(w, "upstream "+r.URL.RequestURI())
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	h := f.gate.ProxyHandler(u)

	forged := func(r *http.Request) {
		r.Header.Set("X-Tokengate-Subject", "admin")
		r.Header["x-tokengate-roles"] = []string{"admin"} // not canonical: still stripped
		r.Header.Set("X-TOKENGATE-Impersonate", "root")
		r.Header.Set("X-Tokengate-Session", "sid-of-someone-else")
	}
	// Without a token nothing reaches the upstream, forged headers or not.
	r := httptest.NewRequest(http.MethodPost, "/orders?id=1", strings.NewReader("{}"))
	forged(r)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 401 || calls.Load() != 0 {
		t.Fatalf("no token: %d, upstream called %d times", w.Code, calls.Load())
	}

	// A token with no roles and no username: the forged values must not survive either.
	tok := f.tg.AccessToken("alice", "sid-1", time.Now(), func(c map[string]any) { delete(c, "roles"); delete(c, "preferred_username") })
	r = httptest.NewRequest(http.MethodPost, "/orders?id=1", strings.NewReader("{}"))
	forged(r)
	r.Header.Set("Authorization", "Bearer "+tok)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 || w.Body.String() != "upstream /orders?id=1" {
		t.Fatalf("valid token: %d %q", w.Code, w.Body)
	}
	got := *seen.Load()
	if got.Get(HeaderSubject) != "alice" || got.Get(HeaderSession) != "sid-1" || got.Get(HeaderClient) != "bff" {
		t.Errorf("upstream saw identity %v", got)
	}
	for k := range got {
		if strings.HasPrefix(strings.ToLower(k), "x-tokengate-") &&
			!map[string]bool{HeaderSubject: true, HeaderSession: true, HeaderClient: true, HeaderScope: true}[k] {
			t.Errorf("client-supplied header %s = %v reached the upstream", k, got[k])
		}
	}
	if got.Get("Authorization") != "Bearer "+tok {
		t.Errorf("the upstream did not get the token itself")
	}
}

func TestProxy_UpstreamDownIs502(t *testing.T) {
	f := newFixture(t)
	up := httptest.NewServer(http.NotFoundHandler())
	u, _ := url.Parse(up.URL)
	up.Close()
	w := ask(f.gate.ProxyHandler(u), "Bearer "+f.tg.AccessToken("alice", "sid-1", time.Now()))
	if w.Code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", w.Code)
	}
	assertMetric(t, f.reg, `tokengate_auth_upstream_errors_total 1`)
}

func get(h http.Handler, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w
}

// assertMetric requires a line of the registry's text exposition.
func assertMetric(t *testing.T, reg *prometheus.Registry, line string) {
	t.Helper()
	w := get(AdminHandler(static{}, reg), "/metrics")
	if !strings.Contains(w.Body.String(), line+"\n") {
		t.Errorf("metrics lack %q:\n%s", line, grepMetrics(w.Body.String()))
	}
}

func grepMetrics(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "tokengate_auth_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
