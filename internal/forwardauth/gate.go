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
	"time"

	"golang.org/x/time/rate"

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
	// HeaderActor is the actor chain of a delegated token (act, RFC 8693 §4.1), outermost
	// first, comma-separated ("payments,orders"); empty for a token a BFF exchanged.
	HeaderActor = "X-Tokengate-Actor"
	// HeaderPrefix starts every identity header. Proxy mode strips any client header whose
	// name starts with it, in any case and with '_' read as '-'; auth mode refuses a request
	// with such a header spelled with '_' (see docs/forward-auth.md, "Header hygiene").
	HeaderPrefix = "X-Tokengate-"
)

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
	// ResultForged: auth mode, a header spelled with '_' that a CGI-style service reads as an
	// identity header (403).
	ResultForged = "forged"
	// ResultAmbiguous: more than one Authorization field (403 in auth mode, 400 in proxy mode).
	ResultAmbiguous = "ambiguous"
)

// results lists every decision result, to initialise the metric's series.
var results = []string{ResultAllowed, ResultMissing, ResultInvalid, ResultRevoked, ResultUnavailable, ResultForged, ResultAmbiguous}

// Gate decides requests: it verifies the bearer token and maps the verdict to HTTP.
type Gate struct {
	src     Source
	metrics *Metrics
	log     *slog.Logger
	// refusalWarn lets a refusal of a hostile request log at WARN at most once a minute (the
	// rest at DEBUG, all counted by the metric): a client must not grow the log at its rate.
	refusalWarn rate.Sometimes
}

// NewGate returns a Gate over src; m may be nil.
func NewGate(src Source, m *Metrics, log *slog.Logger) *Gate {
	if log == nil {
		log = slog.Default()
	}
	return &Gate{src: src, metrics: m, log: log, refusalWarn: rate.Sometimes{Interval: time.Minute}}
}

// logRefusal logs a refused hostile request: at WARN the first time in a minute, else at DEBUG.
func (g *Gate) logRefusal(msg string, args ...any) {
	level := slog.LevelDebug
	g.refusalWarn.Do(func() { level = slog.LevelWarn })
	g.log.Log(context.Background(), level, msg, args...)
}

// decide verifies r's bearer token; on refusal it returns the status and RFC 6750 error.
// Before the token it refuses what would let the service see another identity than the one
// verified: more than one Authorization field (both modes) and, in auth mode, where the proxy
// forwards the client's headers, an identity header spelled with '_' (smuggledIdentity).
func (g *Gate) decide(r *http.Request, auth bool) (tok *verifier.Token, result string, status int, body refusal) {
	start := time.Now()
	defer func() { g.metrics.decision(result, time.Since(start)) }()
	if auth {
		if name, ok := smuggledIdentity(r.Header); ok {
			g.logRefusal("refused: a request header that services reading headers the CGI way take for an identity header",
				"header", quoteName(name), "remote_addr", r.RemoteAddr)
			return nil, ResultForged, http.StatusForbidden, refusal{"invalid_request", "request header " + quoteName(name) +
				" would reach the service as a tokengate identity header; headers with underscores are refused"}
		}
	}
	if authorizationFields(r.Header) > 1 {
		g.logRefusal("refused: more than one Authorization header", "remote_addr", r.RemoteAddr)
		status = http.StatusBadRequest
		if auth { // nginx turns a 400 of the subrequest into a 500; it passes a 403 on
			status = http.StatusForbidden
		}
		return nil, ResultAmbiguous, status, refusal{"invalid_request", "more than one Authorization header"}
	}
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
// a WWW-Authenticate challenge, 403 invalid_request for a request carrying an identity header
// spelled with '_' or two Authorization fields, or 503 while revocations cannot be checked.
// The subrequest's body is never read.
func (g *Gate) AuthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _, status, body := g.decide(r, true)
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
// identity and X-Forwarded-* headers set, after removing every client header an upstream
// could read as one of them (ownedByProxy: any case, '_' for '-', anything under
// X-Tokengate-). A request with two Authorization fields is refused with 400.
func (g *Gate) ProxyHandler(upstream *url.URL) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			if n := stripOwned(pr.Out.Header); n > 0 {
				g.metrics.forgedRemoved()
				g.log.Debug("removed client headers that would read as tokengate-auth's", "names", n, "remote_addr", pr.In.RemoteAddr)
			}
			pr.SetXForwarded()
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
		tok, _, status, body := g.decide(r, false)
		if tok == nil {
			verifier.WriteRefusal(w, status, body.Error, body.Description)
			return
		}
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok)))
	})
}

type tokenKey struct{}

// refusal is the RFC 6750 §3 error of a refused request (empty when no token was sent).
type refusal struct{ Error, Description string }
