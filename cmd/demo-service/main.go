// Command demo-service is the sample service of `make demo`: it trusts tokengate's internal
// tokens by verifying them locally with the verifier package (go-oidc against tokengate's
// discovery document and JWKS, no call per request) and, given a stream secret, follows its own
// Shared Signals stream so a logged-out session's tokens are refused within a second instead of
// at their exp.
//
//	demo-service -listen 127.0.0.1:18090 -issuer http://127.0.0.1:18443 -audience demo-service
//	TOKENGATE_STREAM_SECRET=… demo-service …   # follow revocations (ssf.receivers in tokengate)
//	TOKENGATE_CLIENT_SECRET=… demo-service -client-id demo-service \
//	    -call http://127.0.0.1:18091/api/whoami -call-audience payments   # delegate (docs/delegation.md)
//	demo-service -audience payments -require-actor demo-service      # only tokens demo-service delegated
//
// GET /api/whoami with "Authorization: Bearer <internal token>" answers
// {"sub":…,"username":…,"roles":[…],"act":[…],"exp":…} (act: the token's actor chain,
// outermost first); a missing, invalid or revoked token answers 401 with a WWW-Authenticate:
// Bearer error="invalid_token" header (RFC 6750), a token whose actor -require-actor refuses
// 403; 503 while tokengate cannot be reached at start, or while the revocation feed fails closed.
//
// With -call, GET /api/downstream (same token rules) exchanges the caller's token at tokengate
// for a delegated token for -call-audience (RFC 8693, as client -client-id) and calls the -call
// URL with it, answering {"audience":…,"status":…,"answer":…}; 403 delegation_refused when
// tokengate refuses (e.g. the session was logged out), 502 when the downstream service refuses.
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
	"strings"
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
	requireActor := flag.String("require-actor", "", "accept only tokens this service obtained by delegation from the named service (act)")
	clientID := flag.String("client-id", "", "this service's client id at tokengate, to delegate the tokens it receives (-call; secret in "+envClientSecret+")")
	call := flag.String("call", "", "downstream URL GET /api/downstream calls with a delegated token")
	callAudience := flag.String("call-audience", "payments", "audience of the delegated token for -call")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	svc := &service{log: log}
	cfg := verifier.Config{Issuer: *issuer, Audience: *audience, Logger: log,
		OnRevocation: func(r verifier.Revocation) {
			log.Info("revocation applied", "sid", r.SessionID, "sub", r.Subject, "jti", r.JTI)
		}}
	if *requireActor != "" {
		cfg.ActorPolicy = verifier.RequireActor(*requireActor)
	}
	if secret := os.Getenv(envStreamSecret); secret != "" {
		cfg.StreamSecret, cfg.OwnStream = secret, true
	} else {
		cfg.DisableFeed = true
		log.Warn("no " + envStreamSecret + ": tokens are verified but revocations are not followed (refused only at exp)")
	}
	go svc.connect(ctx, cfg)

	mux := http.NewServeMux()
	mux.Handle("GET /api/whoami", svc.protect(http.HandlerFunc(whoami)))
	if *call != "" {
		d, err := newDelegator(strings.TrimSuffix(*issuer, "/")+"/token", *clientID, os.Getenv(envClientSecret), *callAudience, *call)
		if err != nil {
			log.Error("flags", "error", err.Error())
			os.Exit(2)
		}
		mux.Handle("GET /api/downstream", svc.protect(d))
	}
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
	log.Info("demo-service listening", "listen", *listen, "issuer", *issuer, "audience", *audience, "feed", !cfg.DisableFeed,
		"require_actor", *requireActor, "call", *call, "call_audience", *callAudience)
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
	act := t.Actors()
	if act == nil {
		act = []string{} // a first-hop token: no actor
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"sub": t.Subject, "username": t.PreferredUsername, "roles": t.Roles, "sid": t.SessionID,
		"client_id": t.ClientID, "act": act, "exp": t.Expiry.Unix(),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
