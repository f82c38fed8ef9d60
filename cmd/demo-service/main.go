// Command demo-service is the sample service of `make demo`: it trusts tokengate's internal
// tokens by verifying them locally with the verifier package (go-oidc against tokengate's
// discovery document and JWKS, no call per request) and, given a stream secret, follows its own
// Shared Signals stream so a logged-out session's tokens are refused within a second instead of
// at their exp.
//
//	demo-service -listen 127.0.0.1:18090 -issuer http://127.0.0.1:18443 -audience demo-service
//	TOKENGATE_STREAM_SECRET=… demo-service …   # follow revocations (ssf.receivers in tokengate)
//
// GET /api/whoami with "Authorization: Bearer <internal token>" answers
// {"sub":…,"username":…,"roles":[…],"exp":…}; a missing, invalid or revoked token answers 401
// with a WWW-Authenticate: Bearer error="invalid_token" header (RFC 6750); 503 while tokengate
// cannot be reached at start, or while the revocation feed fails closed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tokengate/tokengate/verifier"
)

// envStreamSecret carries the receiver secret that lets this process create its own stream.
const envStreamSecret = "TOKENGATE_STREAM_SECRET"

func main() {
	listen := flag.String("listen", "127.0.0.1:18090", "listen address")
	issuer := flag.String("issuer", "http://127.0.0.1:18443", "tokengate issuer URL (discovery at <issuer>/.well-known/openid-configuration)")
	audience := flag.String("audience", "demo-service", "this service's audience; tokens without it are refused")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	svc := &service{log: log}
	cfg := verifier.Config{Issuer: *issuer, Audience: *audience, Logger: log,
		OnRevocation: func(r verifier.Revocation) {
			log.Info("revocation applied", "sid", r.SessionID, "sub", r.Subject, "jti", r.JTI)
		}}
	if secret := os.Getenv(envStreamSecret); secret != "" {
		cfg.StreamSecret, cfg.OwnStream = secret, true
	} else {
		cfg.DisableFeed = true
		log.Warn("no " + envStreamSecret + ": tokens are verified but revocations are not followed (refused only at exp)")
	}
	go svc.connect(ctx, cfg)

	mux := http.NewServeMux()
	mux.Handle("GET /api/whoami", svc.protect(http.HandlerFunc(whoami)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /status", svc.status)
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if v := svc.v.Load(); v != nil {
			_ = v.Close()
		}
	}()
	log.Info("demo-service listening", "listen", *listen, "issuer", *issuer, "audience", *audience, "feed", !cfg.DisableFeed)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "error", err.Error())
		os.Exit(1)
	}
}

// service holds the verifier once tokengate could be reached; the service may start first.
type service struct {
	log *slog.Logger
	v   atomic.Pointer[verifier.Verifier]
}

// connect retries verifier.New until it succeeds or ctx ends.
func (s *service) connect(ctx context.Context, cfg verifier.Config) {
	for {
		v, err := verifier.New(ctx, cfg)
		if err == nil {
			s.v.Store(v)
			s.log.Info("verifier ready", "issuer", cfg.Issuer)
			return
		}
		s.log.Info("tokengate not reachable yet", "error", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// protect answers 503 until the verifier exists, then lets the verifier middleware decide.
func (s *service) protect(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := s.v.Load()
		if v == nil {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable",
				"error_description": "tokengate has not been reached yet"})
			return
		}
		v.Middleware(next).ServeHTTP(w, r)
	})
}

func (s *service) status(w http.ResponseWriter, _ *http.Request) {
	v := s.v.Load()
	if v == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true, "feed": v.Status()})
}

func whoami(w http.ResponseWriter, r *http.Request) {
	t, _ := verifier.TokenFromContext(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{
		"sub": t.Subject, "username": t.PreferredUsername, "roles": t.Roles, "sid": t.SessionID,
		"client_id": t.ClientID, "exp": t.Expiry.Unix(),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
