package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/keys"
)

// AdminOpenAPI is the OpenAPI 3 document of the admin API, served at /admin/openapi.yaml.
//
//go:embed openapi/admin.yaml
var AdminOpenAPI []byte

// AdminIssuer records operator revocations.
type AdminIssuer interface {
	RevokeSession(ctx context.Context, sid, reason string) (store.Revocation, error)
	RevokeSubject(ctx context.Context, sub, reason string) (store.Revocation, error)
	// RevokeKey revokes signing key kid and announces it on the services' streams, in one
	// store transaction; an unknown kid is keys.ErrNoKey.
	RevokeKey(ctx context.Context, kid string) (keys.Change, error)
}

// AdminKeys manages signing keys.
type AdminKeys interface {
	Keys() ([]keys.KeyInfo, []keys.RevokedKey)
	ActiveKeyID() string
	ActiveSince() time.Time
	Rotate(ctx context.Context, force bool) (keys.Change, error)
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
	ssf    SSFAdmin // nil: no stream management calls
	log    *slog.Logger
}

// NewAdmin returns the admin API. public provides the health endpoints; tx, when not nil, is
// the Shared Signals transmitter whose streams the admin API manages.
func NewAdmin(cfg AdminConfig, is AdminIssuer, k AdminKeys, st AdminStore, public *Server, tx SSFAdmin) *Admin {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Admin{cfg: cfg, issuer: is, keys: k, store: st, public: public, ssf: tx, log: cfg.Logger}
}

// Handler returns the admin listener's handler: health, the admin API, the stream management
// calls (with a transmitter) and /metrics (AdminConfig.Metrics).
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
	if a.ssf != nil {
		a.mountSSF(r)
	}
	if a.cfg.Metrics != nil {
		r.GET("/metrics", gin.WrapH(a.cfg.Metrics))
	}
	r.NoRoute(func(c *gin.Context) { writeError(c, adminErrors, http.StatusNotFound, "not_found", "no such endpoint") })
	r.NoMethod(func(c *gin.Context) {
		writeError(c, adminErrors, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
	})
	return r
}

const operatorKey = "tokengate.operator"

// authenticate checks the bearer token against every configured hash in constant time.
func (a *Admin) authenticate(c *gin.Context) {
	h := c.GetHeader("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		writeError(c, adminErrors, http.StatusUnauthorized, "unauthorized", "a bearer admin token is required")
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
		writeError(c, adminErrors, http.StatusUnauthorized, "unauthorized", "the admin token is not valid")
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

func (a *Admin) status(c *gin.Context) {
	st, err := a.store.Stats(c.Request.Context())
	if err != nil {
		writeError(c, adminErrors, http.StatusServiceUnavailable, "unavailable", "the store cannot answer")
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
	if !readJSON(c, adminErrors, true, &req) {
		return
	}
	ch, err := a.keys.Rotate(c.Request.Context(), req.Force)
	a.audit(c, "keys.rotate", "", err, "force", req.Force, "activated", ch.Activated, "retired", ch.Retired)
	switch {
	case errors.Is(err, keys.ErrTooEarly):
		writeError(c, adminErrors, http.StatusConflict, "too_early", err.Error()+"; retry later or send {\"force\":true}")
	case err != nil:
		writeError(c, adminErrors, http.StatusServiceUnavailable, "unavailable", "rotation could not be stored")
	default:
		c.JSON(http.StatusOK, gin.H{"change": ch, "active_kid": a.keys.ActiveKeyID()})
	}
}

func (a *Admin) revokeKey(c *gin.Context) {
	kid := c.Param("kid")
	if !readJSON(c, adminErrors, true, &struct{}{}) {
		return
	}
	ch, err := a.issuer.RevokeKey(c.Request.Context(), kid)
	a.audit(c, "keys.revoke", kid, err, "activated", ch.Activated)
	switch {
	case errors.Is(err, keys.ErrNoKey):
		writeError(c, adminErrors, http.StatusNotFound, "not_found", "no published key has kid "+truncate(kid, 80))
	case err != nil:
		writeError(c, adminErrors, http.StatusServiceUnavailable, "unavailable", "revocation could not be stored")
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
		writeError(c, adminErrors, http.StatusServiceUnavailable, "unavailable", "the store cannot answer")
	default:
		c.JSON(http.StatusOK, gin.H{"sid": sid, "revoked": true, "revocation": r})
	}
}

func (a *Admin) revokeSession(c *gin.Context) {
	sid := c.Param("sid")
	if !readJSON(c, adminErrors, true, &struct{}{}) {
		return
	}
	r, err := a.issuer.RevokeSession(c.Request.Context(), sid, "admin:"+c.GetString(operatorKey))
	a.audit(c, "sessions.revoke", sid, err)
	if err != nil {
		writeError(c, adminErrors, http.StatusServiceUnavailable, "unavailable", "the revocation could not be stored")
		return
	}
	c.JSON(http.StatusOK, gin.H{"revocation": r})
}

func (a *Admin) revokeSubject(c *gin.Context) {
	sub := c.Param("sub")
	if !readJSON(c, adminErrors, true, &struct{}{}) {
		return
	}
	r, err := a.issuer.RevokeSubject(c.Request.Context(), sub, "admin:"+c.GetString(operatorKey))
	a.audit(c, "subjects.revoke", sub, err)
	if err != nil {
		writeError(c, adminErrors, http.StatusServiceUnavailable, "unavailable", "the revocation could not be stored")
		return
	}
	c.JSON(http.StatusOK, gin.H{"revocation": r})
}
