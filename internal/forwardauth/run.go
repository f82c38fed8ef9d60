package forwardauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokengate/tokengate/verifier"
)

// Connector creates the verifier, retrying until tokengate answers, so that the process can
// start before tokengate does (a sidecar, a boot order). Until then every request is refused
// with 503 and /readyz fails.
type Connector struct {
	cfg  verifier.Config
	log  *slog.Logger
	v    atomic.Pointer[verifier.Verifier]
	done chan struct{}
}

// Connect starts connecting in the background; Close stops it and closes the verifier.
func Connect(ctx context.Context, cfg verifier.Config, log *slog.Logger) *Connector {
	c := &Connector{cfg: cfg, log: log, done: make(chan struct{})}
	go c.run(ctx)
	return c
}

func (c *Connector) run(ctx context.Context) {
	defer close(c.done)
	wait := 250 * time.Millisecond
	for {
		v, err := verifier.New(ctx, c.cfg)
		if err == nil {
			c.v.Store(v)
			c.log.Info("following the Shared Signals stream", "issuer", c.cfg.Issuer, "audience", c.cfg.Audience)
			return
		}
		c.log.Warn("cannot reach tokengate yet; refusing every request with 503", "error", err.Error(), "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// Current returns the verifier, or nil while not connected. A nil pointer is returned as a
// nil interface.
func (c *Connector) Current() Verifier {
	if v := c.v.Load(); v != nil {
		return v
	}
	return nil
}

// Close waits for the connecting goroutine (cancel its context first) and closes the
// verifier, which deletes an own stream.
func (c *Connector) Close() error {
	<-c.done
	if v := c.v.Load(); v != nil {
		return v.Close()
	}
	return nil
}

// AdminHandler serves /healthz (the process runs), /readyz (connected to tokengate and not
// failing closed; the feed's status as JSON) and /metrics.
func AdminHandler(src Source, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		v := src.Current()
		if v == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"ready":false,"reason":"not connected to tokengate yet"}` + "\n"))
			return
		}
		st := v.Status()
		ready := !st.FailingClosed
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(struct {
			Ready bool            `json:"ready"`
			Feed  verifier.Status `json:"feed"`
		}{ready, st})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// Run serves cfg until ctx ends, then drains in-flight requests for up to 10 s.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	vcfg := cfg.VerifierConfig()
	vcfg.Logger = log
	var upstream *url.URL
	if cfg.Mode == ModeProxy {
		u, err := url.Parse(cfg.Upstream)
		if err != nil {
			return fmt.Errorf("upstream: %w", err)
		}
		upstream = u
	}
	// Listen first: a port in use is an error at start, not a log line.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	aln, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("admin_listen: %w", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	conn := Connect(cctx, vcfg, log)
	defer func() {
		cancel()
		if err := conn.Close(); err != nil {
			log.Error("closing the verifier", "error", err.Error())
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gate := NewGate(conn, NewMetrics(reg, conn), log)
	h := gate.AuthHandler()
	if upstream != nil {
		h = gate.ProxyHandler(upstream)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	admin := &http.Server{Handler: AdminHandler(conn, reg), ReadHeaderTimeout: 10 * time.Second}
	log.Info("tokengate-auth listening", "mode", cfg.Mode, "listen", ln.Addr().String(), "admin_listen", aln.Addr().String())
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{srv, ln}, {admin, aln}} {
		wg.Go(func() {
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	_ = admin.Shutdown(sctx)
	wg.Wait()
	return err
}
