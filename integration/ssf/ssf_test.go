package ssf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/internal/proctest"
	"github.com/tokengate/tokengate/verifier"
)

// EnvIntegration enables these tests.
const EnvIntegration = "TOKENGATE_INTEGRATION"

const (
	services = 100
	clientID = "bff"
	audience = "api"
)

// probeEvery is how often each service is asked with a logged-out token while measuring: the
// resolution of the measured window. Under the race detector a probe costs tens of
// microseconds, and 100 services probed every 5ms would measure the probes.
var probeEvery = func() time.Duration {
	if raceEnabled {
		return 20 * time.Millisecond
	}
	return 5 * time.Millisecond
}()

var binPath string

func TestMain(m *testing.M) {
	if os.Getenv(EnvIntegration) != "1" {
		os.Exit(m.Run()) // every test skips itself
	}
	// Built without -race on purpose: this test measures latency across processes on a small
	// machine; the transmitter runs under -race in the ssf and server package tests.
	os.Exit(proctest.Run(m, false, &binPath))
}

func integration(t *testing.T) {
	t.Helper()
	if os.Getenv(EnvIntegration) != "1" {
		t.Skip("multi-process SSF test: set TOKENGATE_INTEGRATION=1 (make test does)")
	}
}

// gateway is a `tokengate serve` process; start may be called again after kill (same data
// directory and addresses).
type gateway struct {
	*proctest.Gateway
	t        *testing.T
	bffToken string
	secrets  []string // stream secrets by service index
	receiver string   // receiver credential (a service process creates its own stream)
	adminTok string   // bearer token of the admin API (operator "ops")
}

func newGateway(t *testing.T, realm *kctest.Realm) *gateway {
	t.Helper()
	g := &gateway{t: t}
	bff, bffHash := loopback.Secret()
	g.bffToken = bff
	rs, rsHash := loopback.Secret()
	g.receiver = rs
	at, atHash := loopback.Secret()
	g.adminTok = at
	var streams []config.SSFStream
	for i := range services {
		s, h := loopback.Secret()
		g.secrets = append(g.secrets, s)
		streams = append(streams, config.SSFStream{ID: fmt.Sprintf("svc-%02d", i), SecretSHA256: h})
	}
	unlimited := &config.Limit{Rate: 100000, Burst: 100000}
	// Issuer is left empty: the public listener's URL, where the services find discovery.
	c := config.Config{
		DataDir: filepath.Join(t.TempDir(), "data"), LogLevel: "warn",
		Upstream: proctest.UpstreamFor(realm.Issuer()),
		Tokens:   config.Tokens{TTL: config.Duration(2 * time.Minute), RecheckAfter: config.Duration(time.Hour)},
		Limits:   config.Limits{Token: unlimited, Logout: unlimited},
		Clients:  []config.Client{{ID: clientID, SecretSHA256: bffHash, Audiences: []string{audience}}},
		Admin:    config.Admin{Tokens: []config.AdminToken{{Name: "ops", SHA256: atHash}}},
		SSF: config.SSF{
			Receivers: []config.SSFReceiver{{ID: "restarted", Audience: "restarted-svc", SecretSHA256: rsHash}},
			Streams:   streams,
		},
	}
	g.Gateway = proctest.StartT(t, c, proctest.Options{Bin: binPath})
	return g
}

// start starts a killed gateway again and waits for /readyz.
func (g *gateway) start() {
	g.t.Helper()
	if err := g.Restart(context.Background()); err != nil {
		g.t.Fatal(err)
	}
}

// kill9 sends SIGKILL and waits for the exit.
func (g *gateway) kill9() { g.Kill() }

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func (g *gateway) exchange(realm *kctest.Realm, sub, sid string) proctest.Reply {
	g.t.Helper()
	r := g.Exchange(client, clientID, g.bffToken, realm.AccessToken(kctest.Token{Subject: sub, SID: sid}), "")
	if r.Status != http.StatusOK || r.AccessToken == "" {
		g.t.Fatalf("exchange for %s: %v", sid, r)
	}
	return r
}

func (g *gateway) logout(realm *kctest.Realm, sub, sid string) {
	g.t.Helper()
	if r := g.Logout(client, realm.LogoutToken(sub, sid)); r.Status != http.StatusOK {
		g.t.Fatalf("logout of %s: %v", sid, r)
	}
}

// netSwitch is a service's network: its connections to tokengate can be cut, and new ones
// refused, until restored.
type netSwitch struct {
	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func (n *netSwitch) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	down := n.down
	n.mu.Unlock()
	if down {
		return nil, errors.New("network cut by the test")
	}
	c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conns == nil {
		n.conns = map[net.Conn]struct{}{}
	}
	n.conns[c] = struct{}{}
	return c, nil
}

func (n *netSwitch) cut() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down = true
	for c := range n.conns {
		_ = c.Close()
	}
	n.conns = nil
}

func (n *netSwitch) restore() { n.mu.Lock(); n.down = false; n.mu.Unlock() }

// service is one receiving service: a verifier behind its net/http middleware.
type service struct {
	name    string
	v       *verifier.Verifier
	handler http.Handler
	net     *netSwitch

	mu      sync.Mutex
	applied map[string]time.Time // sid → when the verifier applied its revocation
}

func (s *service) appliedAt(sid string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.applied[sid]
	return at, ok
}

// status asks the service with token and returns the HTTP status.
func (s *service) status(token string) int {
	req := httptest.NewRequest(http.MethodGet, "/orders", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return s.serve(req)
}

// serve sends req to the service and returns the HTTP status.
func (s *service) serve(req *http.Request) int {
	w := &statusWriter{}
	s.handler.ServeHTTP(w, req)
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// statusWriter is a ResponseWriter that keeps only the status, so the measuring loops stay
// cheap next to what they measure.
type statusWriter struct {
	h    http.Header
	code int
}

func (w *statusWriter) Header() http.Header {
	if w.h == nil {
		w.h = http.Header{}
	}
	return w.h
}
func (w *statusWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func startServices(t *testing.T, g *gateway) []*service {
	t.Helper()
	out := make([]*service, services)
	var wg sync.WaitGroup
	for i := range services {
		wg.Go(func() {
			sw := &netSwitch{}
			svc := &service{name: fmt.Sprintf("svc-%02d", i), net: sw, applied: map[string]time.Time{}}
			v, err := verifier.New(context.Background(), verifier.Config{
				Issuer: g.Base, Audience: audience, StreamID: fmt.Sprintf("svc-%02d", i), StreamSecret: g.secrets[i],
				HTTPClient: &http.Client{Transport: &http.Transport{DialContext: sw.dial}},
				Logger:     slog.New(slog.DiscardHandler),
				OnRevocation: func(r verifier.Revocation) {
					svc.mu.Lock()
					svc.applied[r.SessionID] = time.Now()
					svc.mu.Unlock()
				},
			})
			if err != nil {
				t.Errorf("service %d: %v", i, err)
				return
			}
			ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
			svc.v, svc.handler = v, v.Middleware(ok)
			out[i] = svc
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() {
		for _, s := range out {
			_ = s.v.Close()
		}
	})
	return out
}

// renewalLoad renews sessions at tokengate continuously and has a random service accept
// every new token, until stop; it reports renewals and wrongful refusals.
type renewalLoad struct {
	renewals atomic.Int64
	wrong    atomic.Int64
	firstBad atomic.Value
	stop     chan struct{}
	done     sync.WaitGroup
}

func startLoad(t *testing.T, g *gateway, realm *kctest.Realm, svcs []*service, sessions int, every time.Duration) *renewalLoad {
	t.Helper()
	l := &renewalLoad{stop: make(chan struct{})}
	for i := range sessions {
		r := g.exchange(realm, fmt.Sprintf("load-user-%d", i), fmt.Sprintf("load-sid-%d", i))
		l.done.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				got := g.Renew(client, clientID, g.bffToken, r.RefreshToken)
				if got.Status != http.StatusOK {
					continue // tokengate restarting
				}
				l.renewals.Add(1)
				svc := svcs[(i*7+n)%len(svcs)]
				if code := svc.status(got.AccessToken); code != http.StatusOK {
					l.wrong.Add(1)
					l.firstBad.CompareAndSwap(nil, fmt.Sprintf("%s answered %d to a live session's token", svc.name, code))
				}
			}
		})
	}
	return l
}

func (l *renewalLoad) finish() { close(l.stop); l.done.Wait() }

// enforcement waits until every service refuses token and returns each service's delay from
// acked; services still accepting after limit are reported as missed.
func enforcement(svcs []*service, token string, acked time.Time, limit time.Duration) (delays []time.Duration, missed []string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range svcs {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodGet, "/orders", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			for {
				code := s.serve(req)
				now := time.Now()
				if code == http.StatusUnauthorized {
					mu.Lock()
					delays = append(delays, now.Sub(acked))
					mu.Unlock()
					return
				}
				if now.Sub(acked) > limit {
					mu.Lock()
					missed = append(missed, fmt.Sprintf("%s (answered %d)", s.name, code))
					mu.Unlock()
					return
				}
				time.Sleep(probeEvery)
			}
		})
	}
	wg.Wait()
	return delays, missed
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[int(math.Ceil(p*float64(len(s))))-1]
}

// TestLogoutEnforcedAtEveryService measures the service-side revocation window: from the 200 of
// /backchannel-logout at a real tokengate process to the first refused request at each of 100
// services (verifiers on their own SSF streams), under a steady renewal load. Then it kills
// tokengate with SIGKILL right after logouts are acknowledged, restarts it, cuts ten services'
// network while more logouts happen, restores it, and requires every service to enforce every
// logout exactly once: zero missed events. Last, a service process started after all that
// (its own stream, created with a receiver credential) refuses every one of those tokens.
func TestLogoutEnforcedAtEveryService(t *testing.T) {
	integration(t)
	realm := kctest.New(t)
	g := newGateway(t, realm)
	svcs := startServices(t, g)
	load := startLoad(t, g, realm, svcs, 20, 100*time.Millisecond) // ≈200 renewals/s, each verified at a service

	// Phase 1: the revocation window, 20 logouts × 100 services.
	const logouts = 20
	var all, applied []time.Duration
	for i := range logouts {
		sub, sid := fmt.Sprintf("user-%d", i), fmt.Sprintf("sid-w-%d", i)
		tok := g.exchange(realm, sub, sid).AccessToken
		for _, s := range svcs {
			if code := s.status(tok); code != http.StatusOK {
				t.Fatalf("%s refused a live token before the logout: %d", s.name, code)
			}
		}
		time.Sleep(50 * time.Millisecond) // let the polls settle: every stream is waiting
		g.logout(realm, sub, sid)
		acked := time.Now()
		delays, missed := enforcement(svcs, tok, acked, 5*time.Second)
		if len(missed) > 0 {
			t.Errorf("logout %d not enforced within 5s by %d services: %v", i, len(missed), missed)
		}
		all = append(all, delays...)
		for _, s := range svcs {
			if at, ok := s.appliedAt(sid); ok {
				applied = append(applied, at.Sub(acked))
			}
		}
	}
	p50, p99, worst := percentile(all, 0.50), percentile(all, 0.99), percentile(all, 1)
	t.Logf("revocation window over %d logouts × %d services (%d samples, each service probed every %s): p50 %s  p99 %s  max %s",
		logouts, services, len(all), probeEvery, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), worst.Round(100*time.Microsecond))
	t.Logf("  of which delivery (the verifier applied the SET, measured from the same 200; negative: before the 200 reached the client): p50 %s  p99 %s  max %s",
		percentile(applied, .5).Round(100*time.Microsecond), percentile(applied, .99).Round(100*time.Microsecond), percentile(applied, 1).Round(100*time.Microsecond))
	fmt.Printf("BENCH ssf_revocation_window samples=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n", len(all),
		float64(p50.Microseconds())/1000, float64(p99.Microseconds())/1000, float64(worst.Microseconds())/1000)
	if p99 > time.Second {
		t.Errorf("p99 revocation window %s exceeds 1s", p99)
	}

	// Phase 2: kill -9 right after logouts are acknowledged, restart, cut ten services' network.
	type victim struct{ sub, sid, token string }
	var victims []victim
	mint := func(n int, prefix string) []victim {
		var out []victim
		for i := range n {
			v := victim{sub: fmt.Sprintf("%s-user-%d", prefix, i), sid: fmt.Sprintf("%s-sid-%d", prefix, i)}
			v.token = g.exchange(realm, v.sub, v.sid).AccessToken
			out = append(out, v)
		}
		return out
	}
	beforeKill := mint(10, "kill")
	for _, v := range beforeKill {
		g.logout(realm, v.sub, v.sid)
	}
	g.kill9() // the last 200 arrived a moment ago; some streams may not have been served yet
	victims = append(victims, beforeKill...)
	killedAt := time.Now()
	g.start()
	t.Logf("tokengate restarted %s after SIGKILL", time.Since(killedAt).Round(time.Millisecond))

	cut := svcs[:10]
	for _, s := range cut {
		s.net.cut()
	}
	whileCut := mint(10, "cut")
	for _, v := range whileCut {
		g.logout(realm, v.sub, v.sid)
	}
	victims = append(victims, whileCut...)
	time.Sleep(time.Second)
	for _, s := range cut {
		s.net.restore()
	}
	restored := time.Now()
	for _, v := range victims {
		_, missed := enforcement(svcs, v.token, restored, 10*time.Second)
		if len(missed) > 0 {
			t.Errorf("%s: logout not enforced by %d services within 10s of the restart and reconnect: %v", v.sid, len(missed), missed)
		}
	}
	t.Logf("all %d logouts around the kill -9 and the network cut enforced by every service %s after the reconnect",
		len(victims), time.Since(restored).Round(time.Millisecond))

	// A service process started now (its own stream, from the receiver credential) learns the
	// revocations still in tokengate's log from its first poll: none of those tokens pass.
	fresh, err := verifier.New(context.Background(), verifier.Config{Issuer: g.Base, Audience: audience,
		StreamSecret: g.receiver, OwnStream: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	freshSvc := &service{name: "restarted", v: fresh, net: &netSwitch{}, applied: map[string]time.Time{},
		handler: fresh.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))}
	started := time.Now()
	for _, v := range victims {
		if _, missed := enforcement([]*service{freshSvc}, v.token, started, 5*time.Second); len(missed) > 0 {
			t.Errorf("a service process started after the logout of %s accepts its token", v.sid)
		}
	}
	t.Logf("a service process started after the logouts refused all %d tokens %s after it started",
		len(victims), time.Since(started).Round(time.Millisecond))
	if err := fresh.Close(); err != nil {
		t.Errorf("deleting the fresh process's stream: %v", err)
	}

	load.finish()
	total := logouts + len(victims)
	for _, s := range svcs {
		st := s.v.Status()
		if st.Applied != uint64(total) || st.Refused != 0 || !st.Connected {
			t.Errorf("%s: applied %d revocations (want %d), refused %d SETs, connected %v", s.name, st.Applied, total, st.Refused, st.Connected)
		}
	}
	if n := load.wrong.Load(); n > 0 {
		t.Errorf("%d live tokens refused by services; first: %v", n, load.firstBad.Load())
	}
	t.Logf("renewal load: %d renewals, each verified at a service; %d wrongly refused", load.renewals.Load(), load.wrong.Load())
}
