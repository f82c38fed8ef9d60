// Package app assembles the whole gateway from a config.Config — store, keys, upstream client,
// issuer, Shared Signals transmitter, logout relay, metrics and the public and admin handlers —
// and runs it. `tokengate serve`, the server tests and the in-process benchmark all build the
// gateway here, so they exercise what production runs.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/relay"
	"github.com/tokengate/tokengate/internal/ssf"
	"github.com/tokengate/tokengate/internal/store"
	etcdstore "github.com/tokengate/tokengate/internal/store/etcd"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/internal/upstream/signals"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/keys"
	"github.com/tokengate/tokengate/server"
)

// gcInterval is how often expired revocations and jti claims are removed from the store.
const gcInterval = time.Minute

// pendingRetryInterval is how often logouts the store could not write are tried again.
const pendingRetryInterval = time.Second

// App is one assembled gateway. Build it with New, serve it with Run (or mount its handlers
// yourself, as tests do), and Close it.
type App struct {
	cfg        config.Config
	log        *slog.Logger
	reg        *prometheus.Registry
	metrics    *metrics.Metrics
	store      store.Store      // instrumented
	replicated *etcdstore.Store // the etcd store when replicas share it, nil for bolt
	keys       *keys.Manager
	issuer     *issuer.Issuer
	ssf        *ssf.Transmitter
	relay      *relay.Relay      // nil without forward_logout_to
	signals    *signals.Receiver // nil without upstream.shared_signals
	public     *server.Server
	admin      *server.Admin
	certs      *certReloader // nil without tls
	tracing    tracingSetup

	draining atomic.Bool // set at shutdown: /readyz 503, every answer Connection: close
}

// Option changes how New builds the gateway; production uses none.
type Option func(*options)

type options struct {
	now            func() time.Time
	logger         *slog.Logger
	store          store.Store
	upstreamClient *http.Client
	registry       *prometheus.Registry
	version        string
	spanExporter   sdktrace.SpanExporter
}

// WithClock makes the issuer, the keys and the transmitter read time from now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets the logger (default: JSON at cfg.LogLevel on standard error).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithStore uses st instead of opening the configured backend; the App closes it.
func WithStore(st store.Store) Option { return func(o *options) { o.store = st } }

// WithUpstreamClient sets the HTTP client for calls to the provider (default: one with
// cfg.Upstream.Timeout).
func WithUpstreamClient(c *http.Client) Option { return func(o *options) { o.upstreamClient = c } }

// WithRegistry registers the metrics on reg instead of a new registry (served at /metrics).
func WithRegistry(reg *prometheus.Registry) Option { return func(o *options) { o.registry = reg } }

// WithVersion sets the version /admin/status reports.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithSpanExporter turns tracing on, with the configured sampler (tracing.sample_ratio; 1 when
// unset), and hands every span to e as it ends instead of exporting by OTLP: for tests
// (sdk/trace/tracetest's in-memory exporter).
func WithSpanExporter(e sdktrace.SpanExporter) Option { return func(o *options) { o.spanExporter = e } }

// New builds the gateway from cfg, a validated configuration (config.Load or config.Parse). On
// error everything opened so far is closed.
func New(ctx context.Context, cfg config.Config, opts ...Option) (_ *App, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = NewLogger(cfg.LogLevel, os.Stderr)
	}
	if o.version == "" {
		o.version = "dev"
	}
	if o.registry == nil {
		o.registry = prometheus.NewRegistry()
	}
	a := &App{cfg: cfg, log: o.logger, reg: o.registry}
	log := a.log
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics = metrics.New(a.reg)
	if a.tracing, err = newTracing(ctx, &cfg, o.spanExporter, o.version, log); err != nil {
		return nil, err
	}
	tp := a.tracing.provider
	defer func() {
		if err != nil {
			_ = a.tracing.shutdown(context.Background())
		}
	}()

	st := o.store
	if st == nil {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
		if st, a.replicated, err = openStore(ctx, &cfg, log); err != nil {
			return nil, err
		}
	}
	if a.tracing.on {
		a.store = metrics.InstrumentStore(newTracedStore(st, tp, cfg.Store.Backend), a.metrics)
	} else {
		a.store = metrics.InstrumentStore(st, a.metrics)
	}
	defer func() {
		if err != nil {
			_ = a.store.Close()
		}
	}()

	kek, err := cfg.KEK(os.Getenv)
	if err != nil {
		return nil, err
	}
	if kek == nil {
		log.Warn("private keys are stored unencrypted: set keys.kek_file or TOKENGATE_KEK")
	}
	a.keys, err = keys.Open(ctx, a.store, keys.Config{
		Algorithm: cfg.Keys.Algorithm, RotateEvery: cfg.Keys.RotateEvery.D(),
		PublishLead: cfg.Keys.JWKSMaxAge.D(), TokenLifetime: cfg.Tokens.TTL.D(),
		SealRetention: cfg.Upstream.MaxTokenLifetime.D() + cfg.Tokens.TTL.D(), KEK: kek, Now: o.now,
	})
	if err != nil {
		return nil, err
	}
	hc := o.upstreamClient
	if hc == nil {
		hc = &http.Client{Timeout: cfg.Upstream.Timeout.D()}
	}
	// Every answer from Keycloak measures this clock against Keycloak's (its Date header);
	// reported, never refused on (tokengate_upstream_clock_offset_seconds).
	clock := upstream.NewClockMeter(o.now, log)
	metered := *hc
	metered.Transport = clock.Transport(hc.Transport)
	hc = &metered
	metrics.UpstreamClockOffset(a.reg, clock.Offset)
	if a.tracing.on {
		hc = tracedClient(hc, tp) // traceparent to Keycloak on introspection, JWKS, the SSF stream
	}
	up := upstream.New(upstream.Config{
		Issuer: cfg.Upstream.Issuer, ClientID: cfg.Upstream.ClientID, ClientSecret: cfg.Upstream.ClientSecret,
		HTTPClient: hc, InsecureHTTP: cfg.Upstream.InsecureHTTP,
	})
	// The transmitter reads the event log through the instrumented store like every other
	// collaborator: both wrappers (metrics, tracing) pass etcd's EventsChanged through, which
	// wakes held polls on every replica as soon as any replica records a logout
	// (TestRun_HeldPollWakesWhenAnotherReplicaRecords).
	if a.ssf, err = newTransmitter(ctx, &cfg, a.store, a.keys, a.reg, o.now, log); err != nil {
		return nil, err
	}
	if len(cfg.Upstream.ForwardLogoutTo) > 0 {
		if a.relay, err = relay.New(relay.Config{Targets: cfg.Upstream.ForwardLogoutTo, Logger: log}); err != nil {
			return nil, err
		}
	}
	var clients []issuer.Client
	for _, c := range cfg.Clients {
		clients = append(clients, issuer.Client{ID: c.ID, SecretSHA256: c.SecretHash(), Audiences: c.Audiences,
			UpstreamClients: c.UpstreamClients, Delegation: issuer.Delegation{To: c.DelegateTo,
				MaxDepth: c.MaxDelegationDepth, Audience: c.ServiceAudience}})
	}
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	a.issuer, err = issuer.New(issuer.Config{
		Issuer: cfg.Issuer, TTL: cfg.Tokens.TTL.D(), RecheckAfter: cfg.Tokens.RecheckAfter.D(),
		MaxUpstreamLifetime: cfg.Upstream.MaxTokenLifetime.D(), MaxSessionLifetime: cfg.Upstream.MaxSessionLifetime.D(),
		LogoutAudiences:  cfg.Upstream.LogoutAudiences,
		UpstreamClientID: cfg.Upstream.ClientID, SkipAudienceCheck: !cfg.Upstream.AudienceRequired(),
		Clients: clients, Now: o.now, Logger: log, Metrics: a.metrics, TracerProvider: tp,
		Caches: issuer.Caches{RecheckSchedule: cfg.Limits.Caches.RecheckSchedule,
			Introspection: cfg.Limits.Caches.Introspection, RefreshTokens: cfg.Limits.Caches.RefreshTokens},
		WriteTimeout: cfg.Store.WriteTimeout.D(),
	}, a.store, a.keys, up, publisher{ssf: a.ssf, relay: a.relay})
	if err != nil {
		return nil, err
	}
	if a.signals, err = newReceiver(&cfg, a.store, a.issuer, a.reg, hc, tp, o.now, log); err != nil {
		return nil, err
	}
	a.public, err = server.New(server.Config{
		Issuer: cfg.Issuer, JWKSMaxAge: cfg.Keys.JWKSMaxAge.D(), Logger: log, Metrics: a.metrics,
		TrustedProxies: cfg.TrustedProxies, TracerProvider: tp, FollowTraceparent: cfg.Tracing.FollowsTraceparent(),
		Limits: server.Limits{
			Token:        server.Limit(cfg.Limits.Token.Get()),
			Logout:       server.Limit(cfg.Limits.Logout.Get()),
			AuthFailures: server.Limit(cfg.Limits.AuthFailures.Get()),
		},
		Ready: a.ready,
	}, a.issuer, a.keys, a.ssf)
	if err != nil {
		return nil, err
	}
	metrics.KeyAge(a.reg, a.keys.ActiveSince)
	metrics.Caches(a.reg, a.issuer.CacheStats)
	metrics.PendingRevocations(a.reg, a.issuer.PendingWrites)
	a.admin = server.NewAdmin(server.AdminConfig{
		Tokens: cfg.AdminTokenHashes(), Version: o.version, Started: time.Now(), Logger: log,
		Metrics: promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}),
	}, a.issuer, a.keys, a.store, a.public, a.ssf)
	if cfg.TLS != nil {
		if a.certs, err = newCertReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile, log); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// publisher tells the transmitter about every recorded revocation (its long polls wake up) and
// hands back-channel logout tokens to the relay.
type publisher struct {
	ssf   *ssf.Transmitter
	relay *relay.Relay
}

// Recorded wakes the transmitter's polls and relays logoutToken, if any.
func (p publisher) Recorded(e store.Event, logoutToken string) {
	p.ssf.Notify(e)
	p.AlreadyRecorded(logoutToken)
}

// AlreadyRecorded relays logoutToken, if any: the feed has nothing new.
func (p publisher) AlreadyRecorded(logoutToken string) {
	if p.relay != nil && logoutToken != "" {
		p.relay.Forward(logoutToken)
	}
}

// ready reports whether the gateway should get traffic: it is not shutting down, no logout
// waits for the store to accept writes, and the store can answer.
func (a *App) ready(ctx context.Context) error {
	if a.draining.Load() {
		return server.ErrDraining
	}
	if err := a.issuer.Writable(); err != nil {
		return err
	}
	_, err := a.store.SessionRevocation(ctx, "readiness-probe")
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// Handler is the public HTTP handler (token, revoke, logout, discovery, JWKS, Shared Signals).
func (a *App) Handler() http.Handler { return a.public.Handler() }

// AdminHandler is the admin HTTP handler (admin API, health, /metrics).
func (a *App) AdminHandler() http.Handler { return a.admin.Handler() }

// Store is the gateway's store (instrumented).
func (a *App) Store() store.Store { return a.store }

// Keys is the key manager.
func (a *App) Keys() *keys.Manager { return a.keys }

// Issuer is the policy core.
func (a *App) Issuer() *issuer.Issuer { return a.issuer }

// Transmitter is the Shared Signals transmitter.
func (a *App) Transmitter() *ssf.Transmitter { return a.ssf }

// Metrics are the gateway's metrics.
func (a *App) Metrics() *metrics.Metrics { return a.metrics }

// Close flushes the spans not yet exported (at most 5s) and closes the store. Call it after Run
// returned (or instead of Run).
func (a *App) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.tracing.shutdown(ctx); err != nil {
		a.log.Warn("tracing: spans not exported at shutdown", "error", err.Error())
	}
	return a.store.Close()
}

// Run serves the public and admin listeners and runs the background work (Shared Signals
// delivery, the receiver of Keycloak's Shared Signals stream, logout relay, garbage collection,
// key schedule, certificate reloads, writing logouts the store refused) until ctx ends or a
// listener fails. Then it drains: for shutdown_grace /readyz answers 503 while requests are
// still served, each answer with Connection: close, so a load balancer takes the process out of
// rotation and keep-alive clients move away between requests; then the listeners close, the
// requests in flight are answered (for up to 15s) and it returns. The store stays open: Close
// it afterwards. With upstream.shared_signals and one process, it first waits (at most
// catchUpWait) until the logouts that waited in Keycloak's stream are recorded.
func (a *App) Run(ctx context.Context) error {
	cfg, log := &a.cfg, a.log
	stop := ctx // ends at SIGTERM: the drain begins
	// Background work outlives stop: logouts recorded during the drain are still relayed,
	// published and written.
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	if a.relay != nil {
		go a.relay.Run(ctx)
	}
	// The receiver starts first: a single tokengate serves once the logouts that waited in
	// Keycloak's stream while it was down are recorded (bounded by catchUpWait). With replicas
	// the elected leader polls all along, and this replica's index follows etcd.
	stopSignals := runReceiver(ctx, a.signals, a.replicated, log)
	defer stopSignals() // before the caller closes the store
	if a.signals != nil && a.replicated == nil {
		catchUp(stop, a.signals, log)
	}
	var publicTLS *tls.Config
	if a.certs != nil {
		go a.certs.watch(ctx, 5*time.Second)
		publicTLS = a.certs.config()
	}
	public, err := listenTLS(cfg.Listen, a.closeWhenDraining(a.Handler()), publicTLS)
	if err != nil {
		return err
	}
	adminTLS, err := adminTLSConfig(cfg.Admin.TLS)
	if err != nil {
		_ = public.srv.Close()
		return err
	}
	admin, err := listenTLS(cfg.AdminListen, a.closeWhenDraining(a.AdminHandler()), adminTLS)
	if err != nil {
		_ = public.srv.Close()
		return err
	}
	stopSSF := runTransmitter(ctx, a.ssf)
	go collectGarbage(ctx, a.store, a.metrics, log)
	go a.issuer.RunPendingWrites(ctx, pendingRetryInterval)
	if a.replicated != nil {
		// Several replicas: reload keys another replica changed; one elected leader rotates.
		go followKeys(ctx, a.replicated, a.keys, log)
		every := keyTickInterval(cfg.Keys.JWKSMaxAge.D())
		go whileLeader(ctx, a.replicated, keyScheduleElection, func(ctx context.Context) { rotateKeys(ctx, a.keys, every, log) }, log)
	} else {
		go rotateKeys(ctx, a.keys, keyTickInterval(cfg.Keys.JWKSMaxAge.D()), log)
	}
	log.Info("tokengate started", "listen", public.addr, "admin_listen", admin.addr, "issuer", cfg.Issuer,
		"upstream", cfg.Upstream.Issuer, "kid", a.keys.ActiveKeyID(), "ttl", cfg.Tokens.TTL.D().String())

	var serveErr error
	select {
	case <-stop.Done():
	case serveErr = <-public.errc:
	case serveErr = <-admin.errc:
	}
	a.draining.Store(true)
	if grace := cfg.ShutdownGrace.D(); grace > 0 && serveErr == nil {
		log.Info("tokengate stopping: not ready, serving for shutdown_grace", "event", "drain", "shutdown_grace", grace.String())
		t := time.NewTimer(grace)
		select {
		case <-t.C:
		case serveErr = <-public.errc:
		case serveErr = <-admin.errc:
		}
		t.Stop()
	}
	log.Info("tokengate stopping: draining requests")
	sctx, cancelDrain := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancelDrain()
	a.ssf.Close() // held long polls answer now instead of holding the drain
	for _, l := range []*listener{public, admin} {
		if err := l.srv.Shutdown(sctx); err != nil {
			log.Error("shutdown", "addr", l.addr, "error", err.Error())
		}
	}
	stopSSF()
	cancel()
	a.flushPendingAtExit(log)
	return serveErr
}

// closeWhenDraining makes every answer to a request that arrives during the drain carry
// Connection: close, so a keep-alive client opens its next connection elsewhere instead of
// sending on one the listener is about to close.
func (a *App) closeWhenDraining(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// flushPendingAtExit tries once more to write the logouts the store refused; what cannot be
// written is lost with this process (it was answered 503, never acknowledged) and logged.
func (a *App) flushPendingAtExit(log *slog.Logger) {
	if a.issuer.PendingWrites() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n, err := a.issuer.FlushPending(ctx); err != nil {
		log.Error("logouts the store refused are lost with this process (each was answered 503)",
			"event", "pending_lost", "pending", n, "error", err.Error())
	}
}

type listener struct {
	srv  *http.Server
	addr string
	errc chan error
}

// listenTLS binds addr and serves h with timeouts and header limits in the background, over
// TLS when tc is not nil.
func listenTLS(addr string, h http.Handler, tc *tls.Config) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	l := &listener{
		srv: &http.Server{
			Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 15 * time.Second, IdleTimeout: 90 * time.Second, MaxHeaderBytes: 16 << 10,
		},
		addr: ln.Addr().String(),
		errc: make(chan error, 1),
	}
	go func() {
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.errc <- fmt.Errorf("serve %s: %w", l.addr, err)
		}
	}()
	return l, nil
}

// collectGarbage removes expired revocations and jti claims from the store every gcInterval and
// refreshes the record-count gauges. (The issuer's in-memory caches sweep themselves.)
func collectGarbage(ctx context.Context, st store.Store, mx *metrics.Metrics, log *slog.Logger) {
	if s, err := st.Stats(ctx); err == nil {
		mx.Records(s)
	}
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := st.GC(ctx, now)
			if err != nil {
				log.Error("garbage collection", "error", err.Error())
			} else if n > 0 {
				log.Info("expired records removed", "count", n)
			}
			if s, err := st.Stats(ctx); err == nil {
				mx.Records(s)
			}
		}
	}
}

// NewLogger returns the JSON logger at level (debug, info, warn, error; info when unknown)
// writing to w.
func NewLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// keyTickInterval checks the key schedule often enough to honour the publication lead.
func keyTickInterval(jwksMaxAge time.Duration) time.Duration {
	d := jwksMaxAge / 10
	if d < time.Second {
		d = time.Second
	}
	if d > time.Minute {
		d = time.Minute
	}
	return d
}

// rotateKeys runs the key schedule: publish, promote, retire, remove.
func rotateKeys(ctx context.Context, km *keys.Manager, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ch, err := km.Tick(ctx)
			switch {
			case err != nil:
				log.Error("key schedule", "error", err.Error())
			case !ch.Empty():
				log.Info("keys changed", "event", "keys", "activated", ch.Activated, "retired", ch.Retired,
					"published", ch.Published, "removed", ch.Removed)
			}
		}
	}
}

// adminTLSConfig loads the admin listener's certificate and, with a client CA, requires client
// certificates signed by it.
func adminTLSConfig(c *config.TLS) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("admin.tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("admin.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("admin.tls.client_ca_file: no PEM certificate in %s", c.ClientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}
