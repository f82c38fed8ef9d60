// Command demo-bff is the sample backend-for-frontend of `make demo`. It logs users in at
// Keycloak (authorization code + PKCE), keeps their tokens in a server-side session (the
// browser only holds a random cookie), exchanges the Keycloak access token at tokengate for an
// internal token (RFC 8693), renews that token before it expires, calls the sample service with
// it, exchanges the next Keycloak access token after a Keycloak refresh, logs out through
// Keycloak's end_session endpoint, and ends a session when tokengate answers invalid_grant or
// when a back-channel logout for it arrives (relayed by tokengate: POST /backchannel-logout).
//
// With -debug, GET /debug/sessions and GET /debug/backchannel expose the sessions' tokens and
// the logouts received, so the demo and the integration tests can play an attacker who copied
// tokens. DEMO ONLY: never enable it in anything real.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var cfg Config
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:18000", "listen address")
	flag.StringVar(&cfg.PublicURL, "public-url", "", "URL the browser uses for this BFF (default http://<listen>)")
	flag.StringVar(&cfg.KeycloakIssuer, "keycloak", "http://127.0.0.1:18080/realms/demo", "Keycloak realm URL")
	flag.StringVar(&cfg.ClientID, "client-id", "bff", "client id at Keycloak and at tokengate")
	flag.StringVar(&cfg.KeycloakSecret, "keycloak-secret", os.Getenv("DEMO_BFF_KEYCLOAK_SECRET"), "client secret at Keycloak (env DEMO_BFF_KEYCLOAK_SECRET)")
	flag.StringVar(&cfg.TokengateURL, "tokengate", "http://127.0.0.1:18443", "tokengate issuer URL (token endpoint <url>/token)")
	flag.StringVar(&cfg.TokengateSecret, "tokengate-secret", os.Getenv("DEMO_BFF_TOKENGATE_SECRET"), "client secret at tokengate (env DEMO_BFF_TOKENGATE_SECRET)")
	flag.StringVar(&cfg.ServiceURL, "service", "http://127.0.0.1:18090/api/whoami", "sample service endpoint")
	flag.StringVar(&cfg.Audience, "audience", "demo-service", "audience asked for at tokengate")
	flag.BoolVar(&cfg.Debug, "debug", false, "DEMO ONLY: serve /debug/sessions and /debug/backchannel with raw tokens")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg.Logger = log

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b, err := New(ctx, cfg)
	if err != nil {
		log.Error("demo-bff", "error", err.Error())
		os.Exit(1)
	}
	go b.RenewLoop(ctx, 500*time.Millisecond)
	srv := &http.Server{Addr: cfg.Listen, Handler: b.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("demo-bff listening", "url", b.cfg.PublicURL, "keycloak", cfg.KeycloakIssuer, "tokengate", cfg.TokengateURL)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "error", err.Error())
		os.Exit(1)
	}
}
