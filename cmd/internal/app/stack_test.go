package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/cmd/internal/app"
	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/proctest"
	"github.com/tokengate/tokengate/internal/ssf"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/keys"
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

// stack is a whole tokengate, assembled by internal/app as `tokengate serve` assembles it, on
// httptest with a fake Keycloak realm. restart replaces the process state (the app: store
// handle, keys, issuer, transmitter, handler) while keeping the data file and address.
type stack struct {
	t       testing.TB
	realm   *kctest.Realm
	app     *app.App
	store   store.Store
	keys    *keys.Manager
	issuer  *issuer.Issuer
	tx      *ssf.Transmitter
	logs    *proctest.SyncBuffer // every log line of the gateway (JSON)
	srv     *httptest.Server
	clock   *clock
	dir     string
	opts    stackOptions
	handler atomic.Pointer[http.Handler]
}

// stackOptions tune a stack.
type stackOptions struct {
	// configure changes the configuration (see stackConfig) before the app is built.
	configure func(c *config.Config)
	// registry receives the metrics (a fresh one when nil); only for stacks not restarted.
	registry *prometheus.Registry
	// appOptions are passed to app.New after the stack's own.
	appOptions []app.Option
}

func newStack(t testing.TB) *stack { return newStackOpts(t, stackOptions{}) }

func newStackOpts(t testing.TB, o stackOptions) *stack {
	t.Helper()
	s := &stack{t: t, realm: kctest.New(t), clock: &clock{t: time.Now()}, dir: t.TempDir(), opts: o,
		logs: &proctest.SyncBuffer{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*s.handler.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	s.boot()
	t.Cleanup(func() { _ = s.app.Close() })
	return s
}

// hexSHA256 is the configuration form of a secret's hash.
func hexSHA256(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// stackConfig is the configuration of every stack: clients bff and other, one configured
// stream (orders) and one receiver (search), the admin token "ops", no rate limits.
func (s *stack) stackConfig() config.Config {
	c := config.Config{
		Issuer: s.srv.URL, DataDir: s.dir,
		Upstream: config.Upstream{Issuer: s.realm.Issuer(), ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret,
			LogoutAudiences: []string{kctest.LogoutAudience}},
		Clients: []config.Client{
			{ID: "bff", SecretSHA256: hexSHA256(bffSecret), Audiences: []string{"demo-service", "orders"}},
			{ID: "other", SecretSHA256: hexSHA256(otherSecret), Audiences: []string{"demo-service"}},
		},
		Admin: config.Admin{Tokens: []config.AdminToken{{Name: "ops", SHA256: hexSHA256(adminToken)}}},
		SSF: config.SSF{Retention: config.Duration(2 * time.Minute), PollTimeout: config.Duration(5 * time.Second),
			Streams:   []config.SSFStream{{ID: "orders", SecretSHA256: hexSHA256(ordersSecret)}},
			Receivers: []config.SSFReceiver{{ID: "search", Audience: "search-api", SecretSHA256: hexSHA256(receiverSecret)}},
		},
	}
	c.SetDefaults()
	c.Limits = config.Limits{}
	if s.opts.configure != nil {
		s.opts.configure(&c)
	}
	return c
}

// restart closes the app and boots again from the same data file.
func (s *stack) restart() {
	s.t.Helper()
	if err := s.app.Close(); err != nil {
		s.t.Fatal(err)
	}
	s.boot()
}

func (s *stack) boot() {
	t := s.t
	t.Helper()
	st, err := bolt.Open(filepath.Join(s.dir, "tokengate.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	opts := []app.Option{app.WithStore(st), app.WithClock(s.clock.Now), app.WithVersion("test"),
		app.WithLogger(slog.New(slog.NewJSONHandler(s.logs, nil)))}
	if s.opts.registry != nil {
		opts = append(opts, app.WithRegistry(s.opts.registry))
	}
	opts = append(opts, s.opts.appOptions...)
	a, err := app.New(context.Background(), s.stackConfig(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	h := a.Handler()
	s.app, s.store, s.keys, s.issuer, s.tx = a, a.Store(), a.Keys(), a.Issuer(), a.Transmitter()
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
		"audience":           {"demo-service"}, // the bff may call two services: it names one
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
