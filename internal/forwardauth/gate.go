// Package forwardauth is tokengate-auth, the verifier package as a process for services in
// any language: it answers the auth subrequests of nginx (auth_request), Traefik (ForwardAuth)
// and Envoy (HTTP ext_authz), or verifies and forwards every request to one upstream, and
// follows the service's Shared Signals stream so that a logged-out session's tokens are refused
// within the stream's delay rather than at their exp.
package forwardauth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/tokengate/tokengate/verifier"
)

// Identity headers: set on the 200 answer to an auth subrequest, and on the request forwarded
// in proxy mode (where whatever the client sent under these names is removed first).
const (
	HeaderSubject  = "X-Tokengate-Subject"  // sub
	HeaderSession  = "X-Tokengate-Session"  // sid (Keycloak's session id)
	HeaderClient   = "X-Tokengate-Client"   // client_id the token was issued to
	HeaderScope    = "X-Tokengate-Scope"    // scope, space-separated
	HeaderRoles    = "X-Tokengate-Roles"    // roles, comma-separated
	HeaderUsername = "X-Tokengate-Username" // preferred_username
	// HeaderPrefix starts every identity header; proxy mode strips any client header with it.
	HeaderPrefix = "X-Tokengate-"
)

// IdentityHeaders lists the identity headers, for proxy configurations (Traefik's
// authResponseHeaders, Envoy's allowed_upstream_headers, nginx's auth_request_set).
var IdentityHeaders = []string{HeaderSubject, HeaderSession, HeaderClient, HeaderScope, HeaderRoles, HeaderUsername}

// Verifier verifies a token and reports the revocation feed; *verifier.Verifier is one.
type Verifier interface {
	Verify(ctx context.Context, raw string) (*verifier.Token, error)
	Status() verifier.Status
}

// Source hands out the verifier, or nil while it is not connected to tokengate yet.
type Source interface {
	Current() Verifier
}

// Decision results, the label of tokengate_auth_decisions_total.
const (
	ResultAllowed     = "allowed"
	ResultMissing     = "missing"
	ResultInvalid     = "invalid"
	ResultRevoked     = "revoked"
	ResultUnavailable = "unavailable"
)

// Gate decides requests: it verifies the bearer token and maps the verdict to HTTP.
type Gate struct {
	src     Source
	metrics *Metrics
	log     *slog.Logger
}

// NewGate returns a Gate over src; m may be nil.
func NewGate(src Source, m *Metrics, log *slog.Logger) *Gate {
	if log == nil {
		log = slog.Default()
	}
	return &Gate{src: src, metrics: m, log: log}
}

// decide verifies r's bearer token; on refusal it returns the status and RFC 6750 error.
func (g *Gate) decide(r *http.Request) (tok *verifier.Token, result string, status int, body refusal) {
	start := time.Now()
	defer func() { g.metrics.decision(result, time.Since(start)) }()
	raw, ok := verifier.BearerToken(r.Header.Get("Authorization"))
	if !ok {
		return nil, ResultMissing, http.StatusUnauthorized, refusal{}
	}
	v := g.src.Current()
	if v == nil {
		return nil, ResultUnavailable, http.StatusServiceUnavailable, refusal{"temporarily_unavailable", "not connected to tokengate yet"}
	}
	tok, err := v.Verify(r.Context(), raw)
	switch {
	case err == nil:
		return tok, ResultAllowed, http.StatusOK, refusal{}
	case errors.Is(err, verifier.ErrFeedUnavailable):
		g.log.Debug("refused: revocation feed unavailable", "error", err.Error()) // the verifier logs the feed itself
		return nil, ResultUnavailable, http.StatusServiceUnavailable, refusal{"temporarily_unavailable", "token revocations cannot be checked"}
	case errors.Is(err, verifier.ErrRevoked):
		g.log.Debug("refused: revoked", "error", err.Error())
		return nil, ResultRevoked, http.StatusUnauthorized, refusal{"invalid_token", "the token's session has been logged out"}
	default:
		g.log.Debug("refused: invalid token", "error", err.Error())
		return nil, ResultInvalid, http.StatusUnauthorized, refusal{"invalid_token", "the token is not valid"}
	}
}

// AuthHandler answers auth subrequests on every path: 200 with the identity headers, 401 with
// a WWW-Authenticate challenge, or 503 while revocations cannot be checked. The subrequest's
// body is never read.
func (g *Gate) AuthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _, status, body := g.decide(r)
		if tok == nil {
			verifier.WriteRefusal(w, status, body.Error, body.Description)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		// Every identity header, empty when the token lacks the claim: a proxy that copies
		// the headers it finds (Envoy's allowed_upstream_headers, Traefik's
		// authResponseHeaders) then overwrites a client's forged value rather than keep it.
		for _, k := range IdentityHeaders {
			h[k] = []string{""}
		}
		setIdentity(h, tok)
		w.WriteHeader(http.StatusOK)
	})
}

// ProxyHandler verifies every request and forwards the accepted ones to upstream, with the
// identity headers set and any client-supplied X-Tokengate-* header removed.
func (g *Gate) ProxyHandler(upstream *url.URL) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
			stripIdentity(pr.Out.Header)
			if tok, ok := pr.In.Context().Value(tokenKey{}).(*verifier.Token); ok {
				setIdentity(pr.Out.Header, tok)
			}
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			g.metrics.upstreamError()
			g.log.Warn("upstream unreachable", "error", err.Error())
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _, status, body := g.decide(r)
		if tok == nil {
			verifier.WriteRefusal(w, status, body.Error, body.Description)
			return
		}
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok)))
	})
}

type tokenKey struct{}

// stripIdentity removes every header starting with HeaderPrefix.
func stripIdentity(h http.Header) {
	for k := range h {
		if len(k) >= len(HeaderPrefix) && strings.EqualFold(k[:len(HeaderPrefix)], HeaderPrefix) {
			delete(h, k)
		}
	}
}

func setIdentity(h http.Header, tok *verifier.Token) {
	set := func(k, v string) {
		if v != "" {
			h.Set(k, v)
		}
	}
	set(HeaderSubject, tok.Subject)
	set(HeaderSession, tok.SessionID)
	set(HeaderClient, tok.ClientID)
	set(HeaderScope, tok.Scope)
	set(HeaderRoles, strings.Join(tok.Roles, ","))
	set(HeaderUsername, tok.PreferredUsername)
}

// refusal is the RFC 6750 §3 error of a refused request (empty when no token was sent).
type refusal struct{ Error, Description string }
