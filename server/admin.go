package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tokengate/tokengate/keys"
	"github.com/tokengate/tokengate/store"
)

// AdminOpenAPI is the OpenAPI 3 document of the admin API, served at /admin/openapi.yaml.
//
//go:embed openapi/admin.yaml
var AdminOpenAPI []byte

// AdminIssuer records operator revocations.
type AdminIssuer interface {
	RevokeSession(ctx context.Context, sid, reason string) (store.Revocation, error)
	RevokeSubject(ctx context.Context, sub, reason string) (store.Revocation, error)
}

// AdminKeys manages signing keys.
type AdminKeys interface {
	Keys() ([]keys.KeyInfo, []keys.RevokedKey)
	ActiveKeyID() string
	ActiveSince() time.Time
	Rotate(ctx context.Context, force bool) (keys.Change, error)
	RevokeKey(ctx context.Context, kid string) (keys.Change, error)
	JWKSJSON() []byte
}

// AdminStore answers session lookups and counts.
type AdminStore interface {
	SessionRevocation(ctx context.Context, sid string) (store.Revocation, error)
	SubjectRevocation(ctx context.Context, sub string) (store.Revocation, error)
	Stats(ctx context.Context) (store.Stats, error)
}

// AdminConfig configures the admin API.
type AdminConfig struct {
	// Tokens maps an operator name to the SHA-256 of its bearer token.
	Tokens map[string][32]byte
	// Version is reported by /admin/status.
	Version string
	// Started is when the process started.
	Started time.Time
	// Logger receives one audit line per admin action.
	Logger *slog.Logger
	// Metrics, when set, is served at GET /metrics (the Prometheus exposition).
	Metrics http.Handler
}

// Admin serves the admin API.
type Admin struct {
	cfg    AdminConfig
	issuer AdminIssuer
	keys   AdminKeys
	store  AdminStore
	public *Server
	log    *slog.Logger
	extra  []func(gin.IRoutes)
}

// NewAdmin returns the admin API. public provides the health endpoints.
func NewAdmin(cfg AdminConfig, is AdminIssuer, k AdminKeys, st AdminStore, public *Server) *Admin {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Admin{cfg: cfg, issuer: is, keys: k, store: st, public: public, log: cfg.Logger}
}

// mount adds routes to the admin listener (the stream management calls) before Handler is called.
func (a *Admin) mount(f func(r gin.IRoutes)) { a.extra = append(a.extra, f) }

// Handler returns the admin listener's handler: health, the admin API, the stream management
// calls (MountSSF) and /metrics (AdminConfig.Metrics).
func (a *Admin) Handler() http.Handler {
	r := a.public.healthEngine()
	r.HandleMethodNotAllowed = true
	r.Use(limitBody(MaxBodyBytes))
	r.GET("/admin/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", AdminOpenAPI) })
	g := r.Group("/admin", a.authenticate)
	g.GET("/status", a.status)
	g.GET("/keys", a.listKeys)
	g.POST("/keys/rotate", a.rotate)
	g.POST("/keys/:kid/revoke", a.revokeKey)
	g.GET("/sessions/:sid", a.session)
	g.POST("/sessions/:sid/revoke", a.revokeSession)
	g.POST("/subjects/:sub/revoke", a.revokeSubject)
	for _, f := range a.extra {
		f(r)
	}
	if a.cfg.Metrics != nil {
		r.GET("/metrics", gin.WrapH(a.cfg.Metrics))
	}
	r.NoRoute(func(c *gin.Context) { adminError(c, http.StatusNotFound, "not_found", "no such endpoint") })
	r.NoMethod(func(c *gin.Context) {
		adminError(c, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
	})
	return r
}

// adminError writes the admin API's error shape.
func adminError(c *gin.Context, status int, code, desc string) {
	c.Header("Cache-Control", "no-store")
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="tokengate-admin"`)
	}
	c.AbortWithStatusJSON(status, gin.H{"error": code, "error_description": desc})
}

const operatorKey = "tokengate.operator"

// authenticate checks the bearer token against every configured hash in constant time.
func (a *Admin) authenticate(c *gin.Context) {
	h := c.GetHeader("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		adminError(c, http.StatusUnauthorized, "unauthorized", "a bearer admin token is required")
		return
	}
	sum := sha256.Sum256([]byte(tok))
	who := ""
	for name, want := range a.cfg.Tokens {
		if subtle.ConstantTimeCompare(sum[:], want[:]) == 1 {
			who = name
		}
	}
	if who == "" {
		a.log.Warn("admin authentication failed", "event", "admin_auth_failed", "remote", c.ClientIP(), "route", c.FullPath())
		adminError(c, http.StatusUnauthorized, "unauthorized", "the admin token is not valid")
		return
	}
	c.Set(operatorKey, who)
	c.Header("Cache-Control", "no-store")
}

// audit writes one line per admin action: who, what, on what, outcome.
func (a *Admin) audit(c *gin.Context, action, target string, err error, attrs ...any) {
	args := append([]any{"event", "admin", "who", c.GetString(operatorKey), "action", action, "target", target,
		"remote", c.ClientIP(), "ok", err == nil}, attrs...)
	if err != nil {
		args = append(args, "error", err.Error())
	}
	a.log.Info("admin action", args...)
}

// readJSON decodes an optional JSON body into v, refusing other content types, unknown fields
// and trailing data. An empty body leaves v as it is.
func readJSON(c *gin.Context, v any) bool {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			adminError(c, http.StatusRequestEntityTooLarge, "invalid_request", "request body too large")
		} else {
			adminError(c, http.StatusBadRequest, "invalid_request", "could not read the request body")
		}
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return true
	}
	if mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type")); err != nil || mt != "application/json" {
		adminError(c, http.StatusUnsupportedMediaType, "invalid_request", "Content-Type must be application/json")
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		adminError(c, http.StatusBadRequest, "invalid_request", "malformed JSON body: "+truncate(err.Error(), 120))
		return false
	}
	if dec.More() {
		adminError(c, http.StatusBadRequest, "invalid_request", "malformed JSON body: trailing data")
		return false
	}
	return true
}

func (a *Admin) status(c *gin.Context) {
	st, err := a.store.Stats(c.Request.Context())
	if err != nil {
		adminError(c, http.StatusServiceUnavailable, "unavailable", "the store cannot answer")
		return
	}
	ks, _ := a.keys.Keys()
	c.JSON(http.StatusOK, gin.H{
		"version": a.cfg.Version, "started_at": a.cfg.Started.UTC(),
		"uptime_seconds": int64(time.Since(a.cfg.Started).Seconds()),
		"active_kid":     a.keys.ActiveKeyID(), "active_since": a.keys.ActiveSince().UTC(),
		"published_keys": len(ks), "store": st,
	})
}

func (a *Admin) listKeys(c *gin.Context) {
	ks, revoked := a.keys.Keys()
	if revoked == nil {
		revoked = []keys.RevokedKey{}
	}
	c.JSON(http.StatusOK, gin.H{"keys": ks, "revoked": revoked, "jwks": json.RawMessage(a.keys.JWKSJSON())})
}

func (a *Admin) rotate(c *gin.Context) {
	var req struct {
		Force bool `json:"force"`
	}
	if !readJSON(c, &req) {
		return
	}
	ch, err := a.keys.Rotate(c.Request.Context(), req.Force)
	a.audit(c, "keys.rotate", "", err, "force", req.Force, "activated", ch.Activated, "retired", ch.Retired)
	switch {
	case errors.Is(err, keys.ErrTooEarly):
		adminError(c, http.StatusConflict, "too_early", err.Error()+"; retry later or send {\"force\":true}")
	case err != nil:
		adminError(c, http.StatusServiceUnavailable, "unavailable", "rotation could not be stored")
	default:
		c.JSON(http.StatusOK, gin.H{"change": ch, "active_kid": a.keys.ActiveKeyID()})
	}
}

func (a *Admin) revokeKey(c *gin.Context) {
	kid := c.Param("kid")
	if !readJSON(c, &struct{}{}) {
		return
	}
	ch, err := a.keys.RevokeKey(c.Request.Context(), kid)
	a.audit(c, "keys.revoke", kid, err, "activated", ch.Activated)
	switch {
	case errors.Is(err, keys.ErrNoKey):
		adminError(c, http.StatusNotFound, "not_found", "no published key has kid "+truncate(kid, 80))
	case err != nil:
		adminError(c, http.StatusServiceUnavailable, "unavailable", "revocation could not be stored")
	default:
		c.JSON(http.StatusOK, gin.H{"change": ch, "active_kid": a.keys.ActiveKeyID()})
	}
}

func (a *Admin) session(c *gin.Context) {
	sid := c.Param("sid")
	r, err := a.store.SessionRevocation(c.Request.Context(), sid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.JSON(http.StatusOK, gin.H{"sid": sid, "revoked": false})
	case err != nil:
		adminError(c, http.StatusServiceUnavailable, "unavailable", "the store cannot answer")
	default:
		c.JSON(http.StatusOK, gin.H{"sid": sid, "revoked": true, "revocation": r})
	}
}

func (a *Admin) revokeSession(c *gin.Context) {
	sid := c.Param("sid")
	if !readJSON(c, &struct{}{}) {
		return
	}
	r, err := a.issuer.RevokeSession(c.Request.Context(), sid, "admin:"+c.GetString(operatorKey))
	a.audit(c, "sessions.revoke", sid, err)
	if err != nil {
		adminError(c, http.StatusServiceUnavailable, "unavailable", "the revocation could not be stored")
		return
	}
	c.JSON(http.StatusOK, gin.H{"revocation": r})
}

func (a *Admin) revokeSubject(c *gin.Context) {
	sub := c.Param("sub")
	if !readJSON(c, &struct{}{}) {
		return
	}
	r, err := a.issuer.RevokeSubject(c.Request.Context(), sub, "admin:"+c.GetString(operatorKey))
	a.audit(c, "subjects.revoke", sub, err)
	if err != nil {
		adminError(c, http.StatusServiceUnavailable, "unavailable", "the revocation could not be stored")
		return
	}
	c.JSON(http.StatusOK, gin.H{"revocation": r})
}
