// Package server translates HTTP to and from the issuer: one handler per protocol endpoint,
// OAuth errors written in one place. gin stays inside this package.
//
// This package is tokengate's own, not an API for other modules: its exported names may change
// without notice. Its Config and the interfaces it is built from name types of internal/store,
// internal/metrics and internal/ssf, which no other module can name; services import verifier.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/tracing"
	"github.com/tokengate/tokengate/issuer"
)

// MaxBodyBytes is the largest request body accepted on any endpoint.
const MaxBodyBytes = 64 << 10

// ErrDraining is what Config.Ready wraps while the process shuts down: /readyz answers 503
// "shutting down" so load balancers stop sending it new work before its listeners close.
var ErrDraining = errors.New("server: shutting down")

// Issuer is the policy the public endpoints call.
type Issuer interface {
	Authenticate(id, secret string) (issuer.Client, error)
	Exchange(ctx context.Context, c issuer.Client, r issuer.ExchangeRequest) (issuer.TokenResponse, error)
	Renew(ctx context.Context, c issuer.Client, refreshToken, scope string) (issuer.TokenResponse, error)
	Revoke(ctx context.Context, c issuer.Client, token, hint string) error
	RecordLogout(ctx context.Context, logoutToken string) (store.Revocation, error)
}

// Keys publishes the verification keys.
type Keys interface {
	JWKSJSON() []byte
	Algorithms() []string
	Loaded() bool
}

// Config configures the public HTTP surface.
type Config struct {
	// Issuer is tokengate's issuer URL; routes are mounted at its path.
	Issuer string
	// JWKSMaxAge is the Cache-Control max-age of the JWKS.
	JWKSMaxAge time.Duration
	// Ready reports whether the process should get traffic (nil: always): an error wrapping
	// ErrDraining while it shuts down, issuer.ErrNotWritable while logouts wait for the store
	// to accept writes, any other error when the store cannot answer.
	Ready func(ctx context.Context) error
	// Logger receives one line per request (slog.Default when nil).
	Logger *slog.Logger
	// Metrics records request counts and latencies (nil: none).
	Metrics *metrics.Metrics
	// Limits are the rate limits (zero: none).
	Limits Limits
	// TrustedProxies are the addresses (or CIDRs) whose X-Forwarded-For is believed when
	// taking a request's source address; none by default.
	TrustedProxies []string
	// TracerProvider receives a span per protocol request (nil or the no-op provider: none,
	// and no tracing middleware at all).
	TracerProvider trace.TracerProvider
	// FollowTraceparent continues a caller's W3C traceparent instead of starting a new trace.
	FollowTraceparent bool
}

// Server holds the public handlers.
type Server struct {
	cfg    Config
	issuer Issuer
	keys   Keys
	log    *slog.Logger
	prefix string

	ssf    SSF          // nil: no Shared Signals routes
	tracer trace.Tracer // nil: tracing off

	tokenLimit, logoutLimit, authFailLimit *keyedLimiter
}

// New returns the public server. tx, when not nil, is the Shared Signals transmitter whose
// public endpoints it also serves.
func New(cfg Config, is Issuer, k Keys, tx SSF) (*Server, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("server: issuer %q is not an absolute URL", cfg.Issuer)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, issuer: is, keys: k, ssf: tx, log: cfg.Logger, prefix: strings.TrimSuffix(u.Path, "/"),
		tokenLimit:    newKeyedLimiter("token_per_client", cfg.Limits.Token),
		logoutLimit:   newKeyedLimiter("logout_per_source", cfg.Limits.Logout),
		authFailLimit: newKeyedLimiter("auth_failures_per_source", cfg.Limits.AuthFailures),
		tracer:        tracing.Tracer(cfg.TracerProvider),
	}, nil
}

func init() { gin.SetMode(gin.ReleaseMode) }

// Handler returns the public HTTP handler.
func (s *Server) Handler() http.Handler {
	r := s.engine()
	r.HandleMethodNotAllowed = true
	r.Use(s.recoverer(), s.accessLog(), limitBody(MaxBodyBytes))
	g := r.Group(s.prefix)
	if s.tracer != nil {
		g.Use(s.traced())
	}
	g.POST("/token", s.token)
	g.POST("/revoke", s.revoke)
	g.POST("/backchannel-logout", s.backchannelLogout)
	g.GET("/.well-known/openid-configuration", s.discovery)
	g.GET("/.well-known/oauth-authorization-server", s.discovery)
	g.GET("/jwks.json", s.jwks)
	if s.ssf != nil {
		s.mountSSF(r, g)
	}
	s.health(r)
	r.NoRoute(func(c *gin.Context) {
		writeError(c, oauthErrors, http.StatusNotFound, "not_found", "no such endpoint")
	})
	r.NoMethod(func(c *gin.Context) {
		writeError(c, oauthErrors, http.StatusMethodNotAllowed, issuer.CodeInvalidRequest, "method not allowed")
	})
	return r
}

// health mounts /healthz and /readyz.
func (s *Server) health(r gin.IRoutes) {
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", func(c *gin.Context) {
		if !s.keys.Loaded() {
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not ready", "reason": "no signing key"})
			return
		}
		if s.cfg.Ready != nil {
			if err := s.cfg.Ready(c.Request.Context()); err != nil {
				reason := "store unavailable"
				switch {
				case errors.Is(err, ErrDraining):
					reason = "shutting down"
				case errors.Is(err, issuer.ErrNotWritable):
					reason = "store cannot write"
				}
				c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not ready", "reason": reason})
				return
			}
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
	})
}

// healthEngine returns an engine with only /healthz and /readyz, for the admin listener.
func (s *Server) healthEngine() *gin.Engine {
	r := s.engine()
	r.Use(s.recoverer())
	s.health(r)
	return r
}

// engine returns a gin engine that believes forwarding headers only from trusted proxies.
func (s *Server) engine() *gin.Engine {
	r := gin.New()
	if err := r.SetTrustedProxies(s.cfg.TrustedProxies); err != nil {
		s.log.Error("trusted_proxies ignored", "error", err.Error())
		_ = r.SetTrustedProxies(nil)
	}
	return r
}

func (s *Server) accessLog() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		s.cfg.Metrics.Request(route, c.Writer.Status(), time.Since(start))
		if !s.log.Enabled(c.Request.Context(), slog.LevelDebug) {
			return // skip building the attributes (ClientIP parses headers) on every request
		}
		// Never the query string or body: they may carry tokens.
		s.log.Debug("request", "method", c.Request.Method, "route", route, "status", c.Writer.Status(),
			"duration_ms", float64(time.Since(start).Microseconds())/1000, "remote", c.ClientIP())
	}
}

func (s *Server) recoverer() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if v := recover(); v != nil {
				if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(v)
				}
				s.log.Error("panic in handler", "route", c.FullPath(), "panic", fmt.Sprint(v))
				writeError(c, oauthErrors, http.StatusInternalServerError, issuer.CodeServerError, "internal error")
				c.Abort()
			}
		}()
		c.Next()
	}
}
