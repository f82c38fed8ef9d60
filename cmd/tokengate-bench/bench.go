package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

type bench struct {
	o    options
	p    plan
	work string
	kc   *keycloak
	res  *Results

	kcSessions []*kcSession
	coldTokens []string // access tokens never exchanged, minted by the Keycloak refresh measurement
}

// kcSession is one Keycloak session of the bench, whose refresh token mints fresh access tokens.
type kcSession struct {
	mu sync.Mutex
	t  kcTokens
}

// fresh returns a new access token of the session (a refresh grant).
func (s *kcSession) fresh(ctx context.Context, k *keycloak) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := k.refresh(ctx, s.t.RefreshToken)
	if err != nil {
		return "", err
	}
	s.t = t
	return t.AccessToken, nil
}

func (b *bench) all(ctx context.Context) error {
	b.res.Machine.LoadStart = loadAvg()
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"sessions", b.sessions},
		{"gateway", b.gatewayParts},
		{"logout while down", b.downLogout},
		{"inproc", b.inprocParts},
		{"scale", b.scale},
	}
	if b.o.only == "delegation" {
		steps = steps[:1]
		steps = append(steps, struct {
			name string
			fn   func(context.Context) error
		}{"gateway (delegation only)", b.delegationParts})
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		t0 := time.Now()
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		logf("step %s done in %s", s.name, time.Since(t0).Round(time.Millisecond))
	}
	b.res.Machine.LoadEnd = loadAvg()
	b.res.evaluate()
	return nil
}

// sessions logs in the Keycloak sessions the throughput parts use (one per KC refresh worker).
func (b *bench) sessions(ctx context.Context) error {
	for i := range b.p.kcWorkers {
		t, err := b.kc.login(ctx, i)
		if err != nil {
			return err
		}
		b.kcSessions = append(b.kcSessions, &kcSession{t: t})
	}
	return nil
}

// gatewayParts runs everything measured against the real tokengate process.
func (b *bench) gatewayParts(ctx context.Context) error {
	g, err := startGateway(ctx, b.o.bin, b.o.gatewayAddr, b.kc.issuer(), filepath.Join(b.work, "gateway", "data"))
	if err != nil {
		return err
	}
	defer g.stop()
	b.res.Machine.ServerPinned = g.pinned
	if err := b.baseline(ctx); err != nil {
		return err
	}
	if err := b.verify(ctx, g); err != nil {
		return err
	}
	if err := b.renewal(ctx, g); err != nil {
		return err
	}
	if err := b.delegation(ctx, g); err != nil {
		return err
	}
	return b.revocationWindow(ctx, g)
}

// delegationParts is -only delegation: the delegation row and what it is compared with (the
// renewal row with raw signing, and the raw ES256 verification of (2)), nothing else.
func (b *bench) delegationParts(ctx context.Context) error {
	g, err := startGateway(ctx, b.o.bin, b.o.gatewayAddr, b.kc.issuer(), filepath.Join(b.work, "gateway", "data"))
	if err != nil {
		return err
	}
	defer g.stop()
	b.res.Machine.ServerPinned = g.pinned
	if err := b.verify(ctx, g); err != nil {
		return err
	}
	if err := b.renewal(ctx, g); err != nil {
		return err
	}
	return b.delegation(ctx, g)
}

// delegation (4d): a service delegating the token it received (RFC 8693, docs/delegation.md)
// over loopback HTTP with keep-alive, measured like the renewal of (4) on the same gateway:
// the subject token's ES256 verification plus a renewal's work.
func (b *bench) delegation(ctx context.Context, g *gateway) error {
	var subjects []string
	for i := range 4 {
		at, err := b.kcSessions[i%len(b.kcSessions)].fresh(ctx, b.kc)
		if err != nil {
			return err
		}
		a, err := g.exchange(ctx, at) // tokens for gatewayAudience, alive tokens.ttl (30 s): the run is shorter
		if err != nil {
			return err
		}
		subjects = append(subjects, a.AccessToken)
	}
	delegate := func(ctx context.Context, w int) error { return g.delegateOK(ctx, subjects[w%len(subjects)]) }
	if _, err := load(ctx, "delegation warm-up", b.p.renewWorkers, b.p.dur/4, 0, delegate); err != nil {
		return err
	}
	var err error
	b.res.Delegation, b.res.DelegationServerBusy, b.res.DelegationPerCPUSecond, err = loadOnServer(ctx, g.Pid(),
		fmt.Sprintf("delegation over HTTP (server on 1 core), c=%d", b.p.renewWorkers), b.p.renewWorkers, b.p.dur, delegate)
	if err != nil {
		return err
	}
	logf("delegation: server core %.0f%% busy, %.0f delegations per server CPU-second (renewal: %.0f)",
		100*b.res.DelegationServerBusy, b.res.DelegationPerCPUSecond, b.res.RenewalPerCPUSecond)
	return nil
}

// baseline (1): a service introspecting every request at Keycloak.
func (b *bench) baseline(ctx context.Context) error {
	for _, c := range []int{1, 32} {
		at, err := b.kcSessions[0].fresh(ctx, b.kc)
		if err != nil {
			return err
		}
		if err := b.kc.introspect(ctx, at); err != nil { // warm the connection
			return err
		}
		d, err := load(ctx, fmt.Sprintf("introspection at Keycloak, c=%d", c), c, b.p.dur, 0,
			func(ctx context.Context, _ int) error { return b.kc.introspect(ctx, at) })
		if err != nil {
			return err
		}
		if c == 1 {
			b.res.Introspect1 = d
		} else {
			b.res.Introspect32 = d
		}
	}
	return nil
}

// verify (2): a service verifying an internal token locally with go-oidc (JWKS cached).
func (b *bench) verify(ctx context.Context, g *gateway) error {
	at, err := b.kcSessions[1%len(b.kcSessions)].fresh(ctx, b.kc)
	if err != nil {
		return err
	}
	a, err := g.exchange(ctx, at)
	if err != nil {
		return err
	}
	provider, err := oidc.NewProvider(ctx, g.Base)
	if err != nil {
		return err
	}
	v := provider.Verifier(&oidc.Config{ClientID: gatewayAudience})
	if _, err := v.Verify(ctx, a.AccessToken); err != nil { // fetches and caches the JWKS
		return err
	}
	b.res.Verify, err = load(ctx, "local verification (go-oidc, cached JWKS), c=1", 1, b.p.dur, 0,
		func(ctx context.Context, _ int) error { _, err := v.Verify(ctx, a.AccessToken); return err })
	if err != nil {
		return err
	}
	// The crypto floor of (2): one P-256 signature verification.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := sha256.Sum256([]byte(a.AccessToken))
	sig, _ := ecdsa.SignASN1(rand.Reader, k, d[:])
	b.res.RawVerify, err = load(ctx, "raw ES256 verify, 1 goroutine", 1, b.p.dur/2, 0, func(context.Context, int) error {
		if !ecdsa.VerifyASN1(&k.PublicKey, d[:], sig) {
			return errors.New("signature does not verify")
		}
		return nil
	})
	return err
}

// renewal (4): renewals over loopback HTTP with keep-alive, next to raw ES256 signing on one
// core and Keycloak's own refresh grant.
func (b *bench) renewal(ctx context.Context, g *gateway) error {
	var rts []string
	for i := range 4 {
		at, err := b.kcSessions[i%len(b.kcSessions)].fresh(ctx, b.kc)
		if err != nil {
			return err
		}
		a, err := g.exchange(ctx, at)
		if err != nil {
			return err
		}
		rts = append(rts, a.RefreshToken)
	}
	// Warm the connections and the server.
	if _, err := load(ctx, "renewal warm-up", b.p.renewWorkers, b.p.dur/4, 0,
		func(ctx context.Context, w int) error { return g.renewOK(ctx, rts[w%len(rts)]) }); err != nil {
		return err
	}
	var err error
	b.res.Renewal, b.res.RenewalServerBusy, b.res.RenewalPerCPUSecond, err = loadOnServer(ctx, g.Pid(),
		fmt.Sprintf("renewal over HTTP (server on 1 core), c=%d", b.p.renewWorkers), b.p.renewWorkers, b.p.dur,
		func(ctx context.Context, w int) error { return g.renewOK(ctx, rts[w%len(rts)]) })
	if err != nil {
		return err
	}
	logf("renewal: server core %.0f%% busy, %.0f renewals per server CPU-second", 100*b.res.RenewalServerBusy, b.res.RenewalPerCPUSecond)
	b.res.RawSign, b.res.RawSignPerCPUSecond = rawSign(ctx, b.p.dur)

	// Keycloak's refresh-token grant: what the BFF does without tokengate. Keep the access
	// tokens: each is a never-exchanged subject token for the cold exchanges.
	var mu sync.Mutex
	b.res.KCRefresh, err = load(ctx, fmt.Sprintf("Keycloak refresh-token grant, c=%d", b.p.kcWorkers), b.p.kcWorkers, b.p.dur, 0,
		func(ctx context.Context, w int) error {
			at, err := b.kcSessions[w].fresh(ctx, b.kc)
			if err == nil {
				mu.Lock()
				b.coldTokens = append(b.coldTokens, at)
				mu.Unlock()
			}
			return err
		})
	return err
}

// rawSign is ECDSA P-256 signing of a SHA-256 digest on one goroutine locked to its thread: the
// crypto floor of a renewal on the one core the server gets. It also reports signatures per
// CPU-second of that thread, which other load on the machine does not skew.
func rawSign(ctx context.Context, dur time.Duration) (Dist, float64) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := sha256.Sum256([]byte(`{"iss":"https://tokengate.example","sub":"alice"}`))
	type out struct {
		lat    []float64
		cpu    float64
		wall   time.Duration
		failed error
	}
	done := make(chan out)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var o out
		var ru0, ru1 syscall.Rusage
		_ = syscall.Getrusage(rusageThread, &ru0)
		start := time.Now()
		deadline := start.Add(dur)
		for ctx.Err() == nil {
			t0 := time.Now()
			if t0.After(deadline) {
				break
			}
			if _, err := ecdsa.SignASN1(rand.Reader, k, d[:]); err != nil {
				o.failed = err
				break
			}
			o.lat = append(o.lat, us(time.Since(t0)))
		}
		o.wall = time.Since(start)
		_ = syscall.Getrusage(rusageThread, &ru1)
		o.cpu = tv(ru1.Utime) + tv(ru1.Stime) - tv(ru0.Utime) - tv(ru0.Stime)
		done <- o
	}()
	o := <-done
	res := summarise("raw ES256 sign, 1 goroutine", 1, o.lat, o.wall, 0)
	perCPU := 0.0
	if o.cpu > 0 {
		perCPU = float64(len(o.lat)) / o.cpu
	}
	logf("%s; %.0f signatures per CPU-second", res, perCPU)
	return res, perCPU
}

// rusageThread is RUSAGE_THREAD: the calling thread's resource usage.
const rusageThread = 1

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// revocationWindow (5): over many sessions created by password grant, the time from Keycloak's
// logout call returning to the first refused renewal at tokengate. Keycloak delivers the
// back-channel logout to the gateway before its logout call returns.
func (b *bench) revocationWindow(ctx context.Context, g *gateway) error {
	type sess struct {
		kc  kcTokens
		sid string
		rt  string
	}
	ss := make([]sess, b.p.sessions)
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	next := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t, err := b.kc.login(ctx, i)
				if err == nil {
					var a answer
					a, err = g.exchange(ctx, t.AccessToken)
					ss[i] = sess{kc: t, sid: sid(t.AccessToken), rt: a.RefreshToken}
				}
				if err == nil {
					err = g.renewOK(ctx, ss[i].rt)
				}
				if err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range ss {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errc:
		return fmt.Errorf("creating sessions: %w", err)
	default:
	}
	logf("revocation window: %d sessions created by password grant and exchanged", len(ss))
	var all []float64
	by := map[string][]float64{}
	for i, s := range ss {
		method := "end_session"
		var err error
		if i%2 == 0 {
			err = b.kc.endSession(ctx, s.kc.RefreshToken)
		} else {
			method = "admin session delete"
			err = b.kc.deleteSession(ctx, s.sid)
		}
		if err != nil {
			return err
		}
		t0 := time.Now()
		for {
			err := g.renewOK(ctx, s.rt)
			if errors.Is(err, errRefused) {
				break
			}
			if err != nil {
				return err
			}
			b.res.RevocationStale++ // a renewal accepted after Keycloak's logout returned
			if time.Since(t0) > 10*time.Second {
				return fmt.Errorf("session %s still renewing 10s after %s", s.sid, method)
			}
		}
		w := float64(time.Since(t0).Nanoseconds()) / 1e3
		all = append(all, w)
		by[method] = append(by[method], w)
	}
	b.res.Revocation = summarise("revocation window (logout returned → first refused renewal)", 1, all, 0, 0)
	logf("%s; renewals accepted after logout returned: %d", b.res.Revocation, b.res.RevocationStale)
	for m, xs := range by {
		b.res.RevocationBy = append(b.res.RevocationBy, summarise(m, 1, xs, 0, 0))
	}
	return nil
}

// inprocParts (3): exchange cold and warm, timed inside the server; and the CPU profile.
func (b *bench) inprocParts(ctx context.Context) error {
	dir := filepath.Join(b.work, "inproc")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	p, err := startInproc(ctx, b.kc.issuer(), dir)
	if err != nil {
		return err
	}
	defer p.close()
	// Warm-up: discovery, Keycloak's JWKS, connections.
	warm, err := b.kcSessions[0].fresh(ctx, b.kc)
	if err != nil {
		return err
	}
	first, err := p.exchange(ctx, warm)
	if err != nil {
		return err
	}
	p.take()

	toks := b.coldTokens
	if len(toks) > b.p.coldTokens {
		toks = toks[:b.p.coldTokens]
	}
	for len(toks) < b.p.coldTokens {
		at, err := b.kcSessions[len(toks)%len(b.kcSessions)].fresh(ctx, b.kc)
		if err != nil {
			return err
		}
		toks = append(toks, at)
	}
	var bare, client, server, intro, over []float64
	for _, at := range toks {
		t0 := time.Now()
		if err := b.kc.introspect(ctx, at); err != nil {
			return err
		}
		bare = append(bare, us(time.Since(t0)))
		t0 = time.Now()
		if _, err := p.exchange(ctx, at); err != nil {
			return err
		}
		client = append(client, us(time.Since(t0)))
		ts := p.take()
		if len(ts) != 1 || ts[0].introspect == 0 {
			return fmt.Errorf("cold exchange: want one request with one introspection, got %+v", ts)
		}
		server = append(server, us(ts[0].total))
		intro = append(intro, us(ts[0].introspect))
		over = append(over, us(ts[0].total-ts[0].introspect))
	}
	r := b.res
	r.BareIntrospect = summarise("bare introspection (same tokens, interleaved)", 1, bare, 0, 0)
	r.ExchangeColdClient = summarise("cold exchange at the client", 1, client, 0, 0)
	r.ExchangeColdServer = summarise("cold exchange in the server", 1, server, 0, 0)
	r.ExchangeColdIntrospect = summarise("its introspection round trip", 1, intro, 0, 0)
	r.ExchangeColdOverhead = summarise("cold exchange overhead (server − its introspection)", 1, over, 0, 0)
	for _, d := range []Dist{r.BareIntrospect, r.ExchangeColdClient, r.ExchangeColdServer, r.ExchangeColdIntrospect, r.ExchangeColdOverhead} {
		logf("%s", d)
	}

	// Warm: the same subject token again and again (introspection cached).
	r.ExchangeWarmClient, err = load(ctx, "warm exchange at the client, c=1", 1, b.p.dur, 0,
		func(ctx context.Context, _ int) error { _, err := p.exchange(ctx, warm); return err })
	if err != nil {
		return err
	}
	var srv []float64
	for _, t := range p.take() {
		if t.introspect != 0 {
			return errors.New("warm exchange introspected")
		}
		srv = append(srv, us(t.total))
	}
	r.ExchangeWarmServer = summarise("warm exchange in the server, c=1", 1, srv, 0, 0)
	logf("%s", r.ExchangeWarmServer)

	// Renewal in the server (same packages as the binary), c=1: server-side time per renewal.
	if _, err := load(ctx, "in-process renewal at the client, c=1", 1, b.p.dur/2, 0,
		func(ctx context.Context, _ int) error { return p.renew(ctx, first.RefreshToken) }); err != nil {
		return err
	}
	srv = srv[:0]
	for _, t := range p.take() {
		srv = append(srv, us(t.total))
	}
	r.RenewalServer = summarise("renewal in the server, c=1", 1, srv, 0, 0)
	logf("%s", r.RenewalServer)

	// CPU profiles of the two hot paths under load over loopback HTTP.
	prof := func(name string, fn func(ctx context.Context, w int) error) error {
		path := filepath.Join(b.o.out, name+".cpu.pprof")
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		_, lerr := load(ctx, "profiling "+name, 8, b.p.dur, 0, fn)
		pprof.StopCPUProfile()
		f.Close()
		if lerr != nil {
			return lerr
		}
		// The server's share only (the load generator runs in this process too): cumulative,
		// so the published page shows which step of the request the time goes to; flat in the file too.
		var tops [2][]byte
		for i, mode := range []string{"-cum", "-flat"} {
			tops[i], err = exec.CommandContext(ctx, "go", "tool", "pprof", "-top", mode, "-nodecount=40",
				"-focus=serverHandler", path).Output()
			if err != nil {
				return fmt.Errorf("go tool pprof: %w", err)
			}
		}
		all := append(append(tops[0], "\n"...), tops[1]...)
		if err := os.WriteFile(filepath.Join(b.o.out, name+".pprof-top.txt"), all, 0o644); err != nil {
			return err
		}
		r.Profiles = append(r.Profiles, Profile{Name: name, File: name + ".cpu.pprof", Top: string(tops[0])})
		return nil
	}
	if err := prof("renewal", func(ctx context.Context, _ int) error { return p.renew(ctx, first.RefreshToken) }); err != nil {
		return err
	}
	p.take()
	if err := prof("exchange-warm", func(ctx context.Context, _ int) error { _, err := p.exchange(ctx, warm); return err }); err != nil {
		return err
	}
	p.take()
	return nil
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
