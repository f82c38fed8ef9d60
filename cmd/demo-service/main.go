// Command demo-service is the sample service of `make demo`: it trusts tokengate's internal
// tokens by verifying them locally (go-oidc against tokengate's discovery document and JWKS,
// no call per request) and answers who called.
//
//	demo-service -listen 127.0.0.1:18090 -issuer http://127.0.0.1:18443 -audience demo-service
//
// GET /api/whoami with "Authorization: Bearer <internal token>" answers
// {"sub":…,"username":…,"roles":[…],"exp":…}; any failure answers 401 with a
// WWW-Authenticate: Bearer error="invalid_token" header (RFC 6750).
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
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18090", "listen address")
	issuer := flag.String("issuer", "http://127.0.0.1:18443", "tokengate issuer URL (discovery at <issuer>/.well-known/openid-configuration)")
	audience := flag.String("audience", "demo-service", "this service's audience; tokens without it are refused")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	v := &verifier{issuer: *issuer, audience: *audience}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/whoami", v.whoami(log))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("demo-service listening", "listen", *listen, "issuer", *issuer, "audience", *audience)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "error", err.Error())
		os.Exit(1)
	}
}

// verifier verifies internal tokens; the go-oidc provider (discovery + cached JWKS) is created
// on first use and kept, so the service may start before tokengate.
type verifier struct {
	issuer, audience string

	mu sync.Mutex
	v  *oidc.IDTokenVerifier
}

func (v *verifier) get(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.v != nil {
		return v.v, nil
	}
	p, err := oidc.NewProvider(ctx, v.issuer)
	if err != nil {
		return nil, err
	}
	// ClientID checks aud; expiry and signature (ES256/EdDSA/RS256 from the JWKS) are checked too.
	v.v = p.Verifier(&oidc.Config{ClientID: v.audience, SupportedSigningAlgs: []string{"ES256", "EdDSA", "RS256"}})
	return v.v, nil
}

// claims are the internal token's claims this service uses.
type claims struct {
	Subject  string   `json:"sub"`
	Username string   `json:"preferred_username"`
	Roles    []string `json:"roles"`
	SID      string   `json:"sid"`
	ClientID string   `json:"client_id"`
}

// verify checks the JOSE typ (RFC 9068 §4: at+jwt) and then signature, iss, aud and exp.
func (v *verifier) verify(ctx context.Context, raw string) (*oidc.IDToken, claims, error) {
	var c claims
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, c, errors.New("malformed token")
	}
	if typ, _ := jws.Signatures[0].Header.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, "at+jwt") &&
		!strings.EqualFold(typ, "application/at+jwt") {
		return nil, c, fmt.Errorf("JOSE typ %q is not at+jwt", typ)
	}
	ver, err := v.get(ctx)
	if err != nil {
		return nil, c, fmt.Errorf("tokengate discovery: %w", err)
	}
	tok, err := ver.Verify(ctx, raw)
	if err != nil {
		return nil, c, err
	}
	if err := tok.Claims(&c); err != nil {
		return nil, c, err
	}
	return tok, c, nil
}

func (v *verifier) whoami(log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || raw == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="demo-service"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing bearer token"})
			return
		}
		tok, c, err := v.verify(r.Context(), strings.TrimSpace(raw))
		if err != nil {
			log.Info("token refused", "reason", err.Error())
			w.Header().Set("WWW-Authenticate",
				fmt.Sprintf(`Bearer realm="demo-service", error="invalid_token", error_description=%q`, err.Error()))
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"sub": c.Subject, "username": c.Username, "roles": c.Roles, "sid": c.SID,
			"client_id": c.ClientID, "exp": tok.Expiry.Unix(),
		})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
