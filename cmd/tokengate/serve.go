package main

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
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/keys"
	"github.com/tokengate/tokengate/metrics"
	"github.com/tokengate/tokengate/relay"
	"github.com/tokengate/tokengate/server"
	"github.com/tokengate/tokengate/store"
	"github.com/tokengate/tokengate/upstream"
)

// gcInterval is how often expired revocations, jti claims and recheck bookkeeping are removed.
const gcInterval = time.Minute

// serve runs the gateway until SIGINT or SIGTERM, then drains requests and closes the store.
func serve(ctx context.Context, cfg *config.Config, logOut io.Writer) error {
	log := newLogger(cfg.LogLevel, logOut)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mx := metrics.New(reg)
	bst, replicated, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	st := metrics.InstrumentStore(bst, mx)
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing store", "error", err.Error())
		}
	}()
	kek, err := cfg.KEK(os.Getenv)
	if err != nil {
		return err
	}
	if kek == nil {
		log.Warn("private keys are stored unencrypted: set keys.kek_file or TOKENGATE_KEK")
	}
	km, err := keys.Open(ctx, st, keys.Config{
		Algorithm: cfg.Keys.Algorithm, RotateEvery: cfg.Keys.RotateEvery.D(),
		PublishLead: cfg.Keys.JWKSMaxAge.D(), TokenLifetime: cfg.Tokens.TTL.D(),
		SealRetention: cfg.Upstream.MaxTokenLifetime.D() + cfg.Tokens.TTL.D(), KEK: kek,
	})
	if err != nil {
		return err
	}
	up := upstream.New(upstream.Config{
		Issuer: cfg.Upstream.Issuer, ClientID: cfg.Upstream.ClientID, ClientSecret: cfg.Upstream.ClientSecret,
		HTTPClient: &http.Client{Timeout: cfg.Upstream.Timeout.D()},
	})
	var clients []issuer.Client
	for _, c := range cfg.Clients {
		clients = append(clients, issuer.Client{ID: c.ID, SecretSHA256: c.SecretHash(), Audiences: c.Audiences})
	}
	is, err := issuer.New(issuer.Config{
		Issuer: cfg.Issuer, TTL: cfg.Tokens.TTL.D(), RecheckAfter: cfg.Tokens.RecheckAfter.D(),
		MaxUpstreamLifetime: cfg.Upstream.MaxTokenLifetime.D(), LogoutAudiences: cfg.Upstream.LogoutAudiences,
		Clients: clients, Logger: log, Metrics: mx,
	}, st, km, up)
	if err != nil {
		return err
	}
	if len(cfg.Upstream.ForwardLogoutTo) > 0 {
		rl, err := relay.New(relay.Config{Targets: cfg.Upstream.ForwardLogoutTo, Logger: log})
		if err != nil {
			return err
		}
		go rl.Run(ctx)
		is.OnLogoutToken = func(raw string) { rl.Forward(raw) }
	}
	srv, err := server.New(server.Config{
		Issuer: cfg.Issuer, JWKSMaxAge: cfg.Keys.JWKSMaxAge.D(), Logger: log, Metrics: mx,
		TrustedProxies: cfg.TrustedProxies,
		Limits: server.Limits{
			Token:        server.Limit(cfg.Limits.Token),
			Logout:       server.Limit(cfg.Limits.Logout),
			AuthFailures: server.Limit(cfg.Limits.AuthFailures),
		},
		Ready: func(ctx context.Context) error {
			_, err := st.SessionRevocation(ctx, "readiness-probe")
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		},
	}, is, km)
	if err != nil {
		return err
	}
	tx, err := newTransmitter(ctx, cfg, bst, is, km, mx, reg, log)
	if err != nil {
		return err
	}
	srv.MountSSF(tx)
	stopSignals, err := startSignals(ctx, cfg, bst, st, replicated, is, reg, log)
	if err != nil {
		return err
	}
	defer stopSignals() // before the store closes (deferred earlier, so run later)

	var publicTLS *tls.Config
	if cfg.TLS != nil {
		certs, err := newCertReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile, log)
		if err != nil {
			return err
		}
		go certs.watch(ctx, 5*time.Second)
		publicTLS = certs.config()
	}
	metrics.KeyAge(reg, km.ActiveSince)
	public, err := listenTLS(cfg.Listen, srv.Handler(), publicTLS)
	if err != nil {
		return err
	}
	adm := server.NewAdmin(server.AdminConfig{
		Tokens: cfg.AdminTokenHashes(), Version: version, Started: time.Now(), Logger: log,
	}, is, km, st, srv)
	adm.MountSSF(tx)
	adm.Mount(func(r gin.IRoutes) {
		r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	})
	adminTLS, err := adminTLSConfig(cfg.Admin.TLS)
	if err != nil {
		_ = public.srv.Close()
		return err
	}
	admin, err := listenTLS(cfg.AdminListen, adm.Handler(), adminTLS)
	if err != nil {
		_ = public.srv.Close()
		return err
	}
	stopSSF := runTransmitter(ctx, tx)
	go collectGarbage(ctx, st, is, mx, log)
	if replicated != nil {
		// Several replicas: reload keys another replica changed; one elected leader rotates.
		go followKeys(ctx, replicated, km, log)
		go scheduleKeys(ctx, replicated, km, keyTickInterval(cfg.Keys.JWKSMaxAge.D()), log)
	} else {
		go rotateKeys(ctx, km, keyTickInterval(cfg.Keys.JWKSMaxAge.D()), log)
	}
	log.Info("tokengate started", "listen", public.addr, "admin_listen", admin.addr, "issuer", cfg.Issuer,
		"upstream", cfg.Upstream.Issuer, "kid", km.ActiveKeyID(), "ttl", cfg.Tokens.TTL.D().String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-public.errc:
	case serveErr = <-admin.errc:
	}
	log.Info("tokengate stopping: draining requests")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tx.Close() // held long polls answer now instead of holding the drain
	for _, l := range []*listener{public, admin} {
		if err := l.srv.Shutdown(sctx); err != nil {
			log.Error("shutdown", "addr", l.addr, "error", err.Error())
		}
	}
	stopSSF()
	return serveErr
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

func collectGarbage(ctx context.Context, st store.Store, is *issuer.Issuer, mx *metrics.Metrics, log *slog.Logger) {
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
			is.Sweep(now)
			if s, err := st.Stats(ctx); err == nil {
				mx.Records(s)
			}
		}
	}
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

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
