package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/keys"
	"github.com/tokengate/tokengate/metrics"
	"github.com/tokengate/tokengate/server"
	"github.com/tokengate/tokengate/store/bolt"
	"github.com/tokengate/tokengate/upstream"
)

const (
	bffSecret   = "bff-secret-0123456789-abcdefghijklmnop"
	otherSecret = "other-secret-0123456789-abcdefghijklmn"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// stack is a whole tokengate on httptest with a fake Keycloak realm. restart replaces the
// process state (store handle, keys, issuer, handler) while keeping the data file and address.
type stack struct {
	t       testing.TB
	realm   *kctest.Realm
	store   *bolt.Store
	keys    *keys.Manager
	issuer  *issuer.Issuer
	srv     *httptest.Server
	clock   *clock
	path    string
	keysCfg keys.Config
	opts    stackOptions
	handler atomic.Pointer[http.Handler]
}

// stackOptions tune a stack.
type stackOptions struct {
	keys    keys.Config
	limits  server.Limits
	metrics *metrics.Metrics
}

func newStack(t testing.TB) *stack { return newStackOpts(t, stackOptions{}) }

// newStackWith starts a stack whose keys use kc (its clock is the stack's).
func newStackWith(t testing.TB, kc keys.Config) *stack {
	return newStackOpts(t, stackOptions{keys: kc})
}

func newStackOpts(t testing.TB, o stackOptions) *stack {
	t.Helper()
	s := &stack{t: t, realm: kctest.New(t), clock: &clock{t: time.Now()},
		path: filepath.Join(t.TempDir(), "tokengate.db"), keysCfg: o.keys, opts: o}
	s.keysCfg.Now = s.clock.Now
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*s.handler.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	s.boot()
	t.Cleanup(func() { _ = s.store.Close() })
	return s
}

// restart closes the store and boots again from the same file.
func (s *stack) restart() {
	s.t.Helper()
	if err := s.store.Close(); err != nil {
		s.t.Fatal(err)
	}
	s.boot()
}

func (s *stack) boot() {
	t := s.t
	t.Helper()
	st, err := bolt.Open(s.path, bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	km, err := keys.Open(context.Background(), st, s.keysCfg)
	if err != nil {
		t.Fatal(err)
	}
	realm, ck, srv := s.realm, s.clock, s.srv
	up := upstream.New(upstream.Config{Issuer: realm.Issuer(), ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	is, err := issuer.New(issuer.Config{
		Issuer: srv.URL, TTL: 30 * time.Second, RecheckAfter: time.Minute, MaxUpstreamLifetime: time.Hour,
		LogoutAudiences: []string{kctest.LogoutAudience}, UpstreamClientID: kctest.ClientID, Now: ck.Now, Logger: log, Metrics: s.opts.metrics,
		Clients: []issuer.Client{
			{ID: "bff", SecretSHA256: sha256.Sum256([]byte(bffSecret)), Audiences: []string{"demo-service", "orders"}},
			{ID: "other", SecretSHA256: sha256.Sum256([]byte(otherSecret)), Audiences: []string{"demo-service"}},
		},
	}, st, km, up)
	if err != nil {
		t.Fatal(err)
	}
	maxAge := 5 * time.Minute
	if s.keysCfg.PublishLead != 0 {
		maxAge = s.keysCfg.PublishLead
	}
	pub, err := server.New(server.Config{Issuer: srv.URL, JWKSMaxAge: maxAge, Logger: log,
		Limits: s.opts.limits, Metrics: s.opts.metrics}, is, km)
	if err != nil {
		t.Fatal(err)
	}
	h := pub.Handler()
	s.store, s.keys, s.issuer = st, km, is
	s.handler.Store(&h)
}

// response is a decoded answer.
type response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

func (r response) str(k string) string { s, _ := r.Body[k].(string); return s }

// post sends a form as client id/secret with basic auth (id "" → no auth).
func (s *stack) post(path, id, secret string, form url.Values) response {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return s.do(req)
}

func (s *stack) do(req *http.Request) response {
	s.t.Helper()
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	_ = json.Unmarshal(raw, &out.Body)
	return out
}

func exchangeForm(subject string) url.Values {
	return url.Values{
		"grant_type":         {issuer.GrantTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {issuer.TokenTypeAccessToken},
	}
}

func (s *stack) exchange(subject string) response {
	s.t.Helper()
	return s.post("/token", "bff", bffSecret, exchangeForm(subject))
}

func (s *stack) renew(refresh string) response {
	s.t.Helper()
	return s.post("/token", "bff", bffSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
}

func (s *stack) logout(token string) response {
	s.t.Helper()
	return s.post("/backchannel-logout", "", "", url.Values{"logout_token": {token}})
}

// mustExchange exchanges a fresh upstream token for sid and returns the answer.
func (s *stack) mustExchange(sub, sid string) response {
	s.t.Helper()
	r := s.exchange(s.realm.AccessToken(kctest.Token{Subject: sub, SID: sid, IssuedAt: s.clock.Now()}))
	if r.Status != http.StatusOK {
		s.t.Fatalf("exchange: %d %s", r.Status, r.Raw)
	}
	return r
}
