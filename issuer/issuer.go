// Package issuer decides: it exchanges upstream access tokens for internal tokens, renews them,
// revokes sessions and records back-channel logouts. It knows nothing of HTTP.
//
// This package is tokengate's own, not an API for other modules: its exported names may change
// without notice. Its constructor and interfaces name types of internal/store and
// internal/upstream, which no other module can name; services import verifier.
package issuer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"

	"github.com/tokengate/tokengate/internal/metrics"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/tracing"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/keys"
)

// Token type and grant type URIs (RFC 8693, RFC 6749).
const (
	GrantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	GrantRefreshToken    = "refresh_token"
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	// TokenTypeJWT (RFC 8693 §3) is accepted as the subject_token_type of an upstream access
	// token too: Keycloak's access tokens are JWTs, and clients such as Spring Security send this
	// type for a token they hold as a parsed JWT.
	TokenTypeJWT = "urn:ietf:params:oauth:token-type:jwt"
)

// Store is what the issuer needs from storage. Every logout — back-channel, recheck, RFC 7009
// revoke or admin — is written by RecordRevocation or RecordNewRevocation: the revocation and
// its event (and the claim of the jti that carried it) in one transaction, so a logout
// acknowledged to its caller can never lose its event to a crash.
type Store interface {
	RecordRevocation(ctx context.Context, e store.Event) (store.Event, error)
	// RecordNewRevocation is RecordRevocation unless a stored revocation already covers the
	// event's (then nothing is written: store.Covered): how a logout that reaches tokengate by
	// two channels is recorded once. It claims the jti of the token that carried the logout
	// (e.Claim) in the same transaction; a jti claimed before writes nothing (store.Replayed).
	RecordNewRevocation(ctx context.Context, e store.Event) (store.Event, store.Outcome, error)
	SessionRevocation(ctx context.Context, sid string) (store.Revocation, error)
	SubjectRevocation(ctx context.Context, sub string) (store.Revocation, error)
}

// Keys signs internal tokens and seals refresh tokens.
type Keys interface {
	Sign(payload []byte) (token, kid string, err error)
	Seal(plaintext []byte) (string, error)
	Unseal(token string) ([]byte, error)
	// VerifyAccessToken verifies an internal token with the published keys and returns its
	// payload; a revoked or unknown key's error has a KeyRevoked() bool method.
	VerifyAccessToken(token string) ([]byte, error)
	// RevokeKey revokes signing key kid and appends its key event (Change.Event) in one store
	// transaction; an unknown kid is keys.ErrNoKey.
	RevokeKey(ctx context.Context, kid string) (keys.Change, error)
}

// Upstream is the provider (Keycloak).
type Upstream interface {
	VerifyAccessToken(ctx context.Context, raw string) (upstream.AccessToken, error)
	Introspect(ctx context.Context, token string) (upstream.Introspection, error)
	VerifyLogoutToken(ctx context.Context, raw string, p upstream.LogoutPolicy) (upstream.LogoutToken, error)
}

// Config is the issuer's policy.
type Config struct {
	// Issuer is tokengate's own issuer URL (iss of internal tokens).
	Issuer string
	// TTL is the lifetime of an internal token.
	TTL time.Duration
	// RecheckAfter is how long a session may renew before its upstream token is introspected again.
	RecheckAfter time.Duration
	// MaxUpstreamLifetime bounds how long an upstream access token can live; the records of
	// logouts the provider knows of (back-channel, recheck) are kept that long (plus TTL and
	// Skew).
	MaxUpstreamLifetime time.Duration
	// MaxSessionLifetime bounds how long an upstream session can live (Keycloak's SSO Session
	// Max; DefaultMaxSessionLifetime when zero, at least MaxUpstreamLifetime). Revocations
	// tokengate makes itself (admin, RFC 7009) are kept that long: the provider's session
	// lives on and keeps issuing access tokens.
	MaxSessionLifetime time.Duration
	// LogoutAudiences are the aud values accepted on logout tokens.
	LogoutAudiences []string
	// UpstreamClientID is tokengate's own client id at the provider, the one it introspects
	// with. A subject token must carry it in aud (see SkipAudienceCheck).
	UpstreamClientID string
	// SkipAudienceCheck accepts subject tokens whose aud lacks UpstreamClientID: only for
	// realms without the audience mapper, which Keycloak 26.6 and later refuse to introspect.
	SkipAudienceCheck bool
	// Skew is the allowed clock difference with the provider (60s when zero).
	Skew time.Duration
	// Clients are the BFFs allowed to call the token endpoint.
	Clients []Client
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Logger receives audit lines (slog.Default when nil).
	Logger *slog.Logger
	// Metrics records counters and latencies (nil: none).
	Metrics *metrics.Metrics
	// Caches bounds the in-memory caches (zero fields: DefaultCaches).
	Caches Caches
	// TracerProvider receives the issuer's spans (nil or the no-op provider: none).
	TracerProvider trace.TracerProvider
	// WriteTimeout bounds the store writes of one revocation (DefaultWriteTimeout when zero):
	// a logout the store has not committed by then is answered 503 and held in memory.
	WriteTimeout time.Duration
	// MaxPending bounds the revocations held in memory while the store cannot write them
	// (DefaultMaxPending when zero).
	MaxPending int
}

// Caches bounds, in entries, the issuer's per-session in-memory caches. An eviction costs
// work (an introspection, an unsealing), never a refusal turned into an acceptance.
type Caches struct {
	// RecheckSchedule holds, per live session, when its upstream token is next introspected
	// (an entry lives RecheckAfter). An evicted session is introspected at its next renewal.
	RecheckSchedule int
	// Introspection holds introspection answers per upstream token until its exp. An evicted
	// token is verified and introspected again at its next exchange or renewal check.
	Introspection int
	// RefreshTokens holds unsealed refresh tokens; an evicted one is unsealed again.
	RefreshTokens int
}

// DefaultCaches are the bounds a configuration leaves out: a million live sessions, and a
// million upstream tokens exchanged within their lifetime (Keycloak's default, 5 minutes,
// makes that 3,300 exchanges/s); 16,384 unsealed refresh tokens.
func DefaultCaches() Caches {
	return Caches{RecheckSchedule: 1_000_000, Introspection: 1_000_000, RefreshTokens: 16_384}
}

// Issuer is the policy core. It is safe for concurrent use.
type Issuer struct {
	cfg      Config
	store    Store
	keys     Keys
	upstream Upstream
	clients  map[string]Client
	cache    *introspectionCache
	grants   *boundedCache[[32]byte, *grant]
	log      *slog.Logger
	publish  Publisher
	tracer   trace.Tracer // nil: tracing off

	// rechecks holds, per session (the digest of its key), when its upstream token is next
	// introspected (Unix nanoseconds); an entry lives until then: a session without one is
	// due, so an evicted entry costs an introspection and skips none.
	rechecks *boundedCache[sessionID, int64]

	// pending holds the revocations the store could not write: refused here, written later.
	pending *pendingRevocations

	hintMu     sync.Mutex
	lastHinted time.Time // last WARN naming the missing audience mapper (see subject.go)

	// issClaim is the iss member as tokengate writes it in its tokens ("iss":"<Issuer>"): a
	// payload that holds it is decoded once as an internal token's claims (see peek).
	issClaim []byte
}

// New returns an issuer on its collaborators. pub is told about every recorded revocation
// (nil: nobody is).
func New(cfg Config, s Store, k Keys, up Upstream, pub Publisher) (*Issuer, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Skew == 0 {
		cfg.Skew = 60 * time.Second
	}
	if cfg.MaxSessionLifetime == 0 {
		cfg.MaxSessionLifetime = DefaultMaxSessionLifetime
	}
	cfg.MaxSessionLifetime = max(cfg.MaxSessionLifetime, cfg.MaxUpstreamLifetime)
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.Issuer == "" || cfg.TTL <= 0 || cfg.RecheckAfter <= 0 || cfg.MaxUpstreamLifetime <= 0 {
		return nil, errors.New("issuer: Issuer, TTL, RecheckAfter and MaxUpstreamLifetime are required")
	}
	if cfg.UpstreamClientID == "" && !cfg.SkipAudienceCheck {
		return nil, errors.New("issuer: UpstreamClientID is required unless SkipAudienceCheck is set")
	}
	clients := make(map[string]Client, len(cfg.Clients))
	for _, c := range cfg.Clients {
		if _, dup := clients[c.ID]; dup {
			return nil, fmt.Errorf("issuer: duplicate client %q", c.ID)
		}
		clients[c.ID] = c
	}
	if pub == nil {
		pub = noPublisher{}
	}
	def := DefaultCaches()
	for _, c := range []struct {
		n   *int
		def int
	}{{&cfg.Caches.RecheckSchedule, def.RecheckSchedule}, {&cfg.Caches.Introspection, def.Introspection},
		{&cfg.Caches.RefreshTokens, def.RefreshTokens}} {
		if *c.n == 0 {
			*c.n = c.def
		}
		if *c.n < 0 {
			return nil, errors.New("issuer: cache bounds must be positive")
		}
	}
	iss, err := json.Marshal(cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("issuer: encode Issuer: %w", err)
	}
	return &Issuer{
		cfg: cfg, store: s, keys: k, upstream: up, clients: clients, publish: pub,
		issClaim: append([]byte(`"iss":`), iss...),
		cache:    newIntrospectionCache(cfg.Caches.Introspection, cfg.Now),
		grants:   newBoundedCache[[32]byte, *grant](cfg.Caches.RefreshTokens, cfg.Now),
		log:      cfg.Logger,
		rechecks: newBoundedCache[sessionID, int64](cfg.Caches.RecheckSchedule, cfg.Now),
		tracer:   tracing.Tracer(cfg.TracerProvider),
		pending:  newPending(cfg.MaxPending),
	}, nil
}

// DefaultMaxSessionLifetime is Keycloak's default SSO Session Max (10 hours).
const DefaultMaxSessionLifetime = 10 * time.Hour

// revocationExpiry is when the record of a logout the provider knows of, recorded now, may be
// forgotten: no upstream access token of the session can still be alive.
func (i *Issuer) revocationExpiry(now time.Time) time.Time {
	return now.Add(i.cfg.MaxUpstreamLifetime + i.cfg.TTL + i.cfg.Skew)
}

// ownRevocationExpiry is when a revocation the provider's sessions may outlive — one tokengate
// made itself (admin, RFC 7009), or a subject-wide one from the provider's stream — recorded
// now, may be forgotten: the provider's session may live on and issue new access tokens until
// its maximum lifetime.
func (i *Issuer) ownRevocationExpiry(now time.Time) time.Time {
	return now.Add(i.cfg.MaxSessionLifetime + i.cfg.TTL + i.cfg.Skew)
}

// introspect calls the provider and records the call's latency and outcome.
func (i *Issuer) introspect(ctx context.Context, token string) (upstream.Introspection, error) {
	ctx, span := tracing.Start(ctx, i.tracer, "issuer.introspect")
	defer span.End()
	start := time.Now()
	r, err := i.upstream.Introspect(ctx, token)
	outcome := "active"
	switch {
	case err != nil:
		outcome = "error"
	case !r.Active:
		outcome = "inactive"
	}
	i.cfg.Metrics.Introspection(outcome, time.Since(start))
	if span.IsRecording() {
		span.SetAttributes(attrIntro.String(outcome))
		if err != nil {
			span.SetStatus(codes.Error, "introspection failed")
		}
	}
	return r, err
}

// outcome classifies an error for metrics: ok, refused (the caller's fault) or error (ours or
// upstream's), with the OAuth code as reason.
func outcome(err error) (result, reason string) {
	if err == nil {
		return "ok", ""
	}
	var oe *Error
	if errors.As(err, &oe) {
		if oe.Code == CodeTemporarilyUnavailable || oe.Code == CodeServerError {
			return "error", oe.Code
		}
		return "refused", oe.Code
	}
	return "error", CodeServerError
}

// sessionID identifies a session for recheck bookkeeping: 16 bytes of the SHA-256 of its key
// (sid, or sub for a token without sid), a fixed-size key whatever the provider's ids.
type sessionID [16]byte

// sessionKey identifies the session sid of sub (sub alone for a token without sid).
func sessionKey(sid, sub string) sessionID {
	var h [32]byte
	if sid != "" {
		h = digest("sid:" + sid)
	} else {
		h = digest("sub:" + sub)
	}
	return sessionID(h[:16])
}

// CacheStats is the size of one of the issuer's caches and how many entries its bound evicted.
type CacheStats = metrics.CacheStats

// CacheStats reports the issuer's caches: recheck_schedule, introspection, refresh_tokens.
func (i *Issuer) CacheStats() []CacheStats {
	return []CacheStats{
		{Name: "recheck_schedule", Entries: i.rechecks.len(), Evictions: i.rechecks.evicted()},
		{Name: "introspection", Entries: i.cache.entries.len(), Evictions: i.cache.entries.evicted()},
		{Name: "refresh_tokens", Entries: i.grants.len(), Evictions: i.grants.evicted()},
	}
}

// TokenHash returns a short, non-reversible fingerprint of a token for logs.
func TokenHash(token string) string {
	h := digest(token)
	return hex.EncodeToString(h[:6])
}

// scratch holds the buffers digest copies tokens into; tokens are a few KiB at most.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// digest is the SHA-256 of s. It reuses a pooled buffer instead of allocating a []byte copy
// of the token on every request (renewal and exchange hash theirs on each call).
func digest(s string) [32]byte {
	bp := scratch.Get().(*[]byte)
	b := append((*bp)[:0], s...)
	sum := sha256.Sum256(b)
	*bp = b[:0]
	scratch.Put(bp)
	return sum
}

func newJTI() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
