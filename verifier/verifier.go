// Package verifier lets a service accept tokengate's internal access tokens and stop accepting
// them within a second of a logout: it verifies tokens locally against tokengate's discovery
// document and JWKS (go-oidc underneath), and follows the service's Shared Signals stream
// (CAEP session-revoked events, RFC 8936 long polling) to refuse the tokens of revoked
// sessions and users.
//
// It imports nothing else from tokengate and no web framework, so a service depends on this
// package alone (gin's middleware is in verifier/ginverifier):
//
//	v, err := verifier.New(ctx, verifier.Config{
//		Issuer:       "https://tokengate.internal",
//		Audience:     "orders",
//		StreamSecret: os.Getenv("TOKENGATE_STREAM_SECRET"),
//	})
//	defer v.Close()
//	http.Handle("/", v.Middleware(ordersAPI)) // gin: router.Use(ginverifier.Middleware(v))
//
// What it refuses: a token not signed by a key in tokengate's JWKS with an algorithm its
// discovery document lists; a JOSE typ other than at+jwt; another iss; an aud without
// Config.Audience; an expired token; a token whose sid was revoked, or whose sub was revoked
// (every token of the user issued until the revocation). Revocations are remembered for
// Config.MaxTokenLifetime, the longest an internal token can live. Keys are refetched once the
// JWKS answer is older than the max-age it declared (DefaultJWKSMaxAge without one), and at
// once when the stream announces a revoked signing key; a key tokengate no longer publishes
// stops verifying. A token whose kid is not in hand makes it fetch the JWKS at most once per
// Config.JWKSRefetchInterval (a fetch in flight is shared), and is refused if the kid is still
// unknown after that fetch; a known kid with a bad signature costs no fetch. When the stream
// has not answered for Config.FailClosedAfter, every token is refused with ErrFeedUnavailable
// (503) unless Config.FailOpen is set.
package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// Errors of Verify. Every refusal wraps ErrInvalidToken, ErrRevoked, ErrFeedUnavailable or
// ErrActorRefused (actor.go).
var (
	// ErrInvalidToken: the token is malformed, not signed by tokengate, not for this service,
	// not an access token or expired.
	ErrInvalidToken = errors.New("verifier: invalid token")
	// ErrRevoked: tokengate recorded a logout of the token's session or user.
	ErrRevoked = errors.New("verifier: token revoked")
	// ErrFeedUnavailable: the revocation feed has been unreachable longer than FailClosedAfter,
	// so a revocation may be unknown here.
	ErrFeedUnavailable = errors.New("verifier: revocation feed unavailable")
)

// Defaults.
const (
	DefaultFailClosedAfter  = 30 * time.Second
	DefaultMaxTokenLifetime = 6 * time.Minute // tokengate's tokens.ttl is at most 5m, plus skew
	// MinFailClosedAfter: a healthy feed answers at least every FailClosedAfter/3 (≥ 1s).
	MinFailClosedAfter = 3 * time.Second
)

// Config configures a Verifier.
type Config struct {
	// Issuer is tokengate's issuer URL (required).
	Issuer string
	// Audience is this service: tokens must carry it in aud (required).
	Audience string
	// StreamSecret is the bearer secret of this service's Shared Signals stream (required
	// unless DisableFeed).
	StreamSecret string
	// StreamID names the stream; when empty, the stream of StreamSecret is used.
	StreamID string
	// OwnStream makes StreamSecret a receiver credential (tokengate's ssf.receivers): New
	// creates a stream for this process and Close deletes it. Every instance of a scaled-out
	// service then gets every event, and a process that starts learns the revocations still in
	// tokengate's log, which may concern tokens that are still alive.
	OwnStream bool
	// FailClosedAfter is how long the feed may be unreachable before every token is refused
	// (DefaultFailClosedAfter when zero; at least MinFailClosedAfter). Polls ask tokengate to
	// answer within a third of it, so a healthy feed is never quiet that long.
	FailClosedAfter time.Duration
	// FailOpen keeps accepting tokens however long the feed is unreachable. A revocation sent
	// meanwhile is then unknown here until the feed answers again.
	FailOpen bool
	// MaxTokenLifetime is how long revocations and SET ids are remembered: at least
	// tokengate's tokens.ttl plus clock skew (DefaultMaxTokenLifetime when zero).
	MaxTokenLifetime time.Duration
	// DisableFeed verifies tokens without following revocations (tests, tools). Revoked
	// tokens are then accepted until they expire.
	DisableFeed bool
	// HTTPClient makes every request (discovery, JWKS, stream, polls); a default client when
	// nil. Its Timeout, if any, must exceed a long poll (30s).
	HTTPClient *http.Client
	// Logger receives feed status lines (slog.Default when nil).
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// JWKSRefetchInterval is the least time between two JWKS fetches for tokens whose kid is
	// not in hand (DefaultJWKSRefetchInterval when zero): a flood of tokens with made-up kids
	// costs tokengate one fetch per interval, and a token whose kid is still unknown after the
	// fetch is refused. tokengate publishes its next key before signing with it, so a rotation
	// needs no such fetch.
	JWKSRefetchInterval time.Duration
	// OnRevocation, when set, is called after a revocation has been applied (and before it is
	// acknowledged to tokengate).
	OnRevocation func(Revocation)
	// ActorPolicy, when set, decides on every valid token's actor chain (Token.Actors,
	// outermost first; empty for a token a BFF exchanged): an error refuses the token with
	// ErrActorRefused. RequireActor makes the common one.
	ActorPolicy func(actors []string) error
}

// Token is a verified internal token.
type Token struct {
	Issuer            string
	Subject           string
	Audience          []string
	SessionID         string
	ClientID          string
	Scope             string
	Roles             []string
	PreferredUsername string
	JTI               string
	IssuedAt          time.Time
	Expiry            time.Time
	// Claims are all the token's claims.
	Claims json.RawMessage

	gen    uint64   // the key set generation it was verified in (token cache)
	actors []string // the act chain, outermost first
}

// Verifier verifies internal tokens and follows the revocation feed. It is safe for
// concurrent use. Close stops the feed.
type Verifier struct {
	cfg        Config
	client     *http.Client
	tokens     *oidc.IDTokenVerifier
	keySet     *keySet
	algs       []jose.SignatureAlgorithm
	pollURL    string
	setAud     string
	streamID   string
	configURL  string // the SSF configuration endpoint (to delete an own stream)
	streamMu   sync.Mutex
	log        *slog.Logger
	cancel     context.CancelFunc
	done       chan struct{}
	revoked    revokedSet
	cache      tokenCache
	lastHeard  atomic.Int64 // unix nanos of the feed's last answer
	connected  atomic.Bool
	applied    atomic.Uint64
	setRefused atomic.Uint64
	closeOnce  sync.Once
}

// New fetches tokengate's discovery document and, unless DisableFeed, its Shared Signals
// configuration and this service's stream, then starts following the stream. It fails when
// tokengate cannot be reached or refuses the stream credential.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("verifier: Issuer and Audience are required")
	}
	if !cfg.DisableFeed && cfg.StreamSecret == "" {
		return nil, errors.New("verifier: StreamSecret is required (or set DisableFeed)")
	}
	switch {
	case cfg.FailClosedAfter == 0:
		cfg.FailClosedAfter = DefaultFailClosedAfter
	case cfg.FailClosedAfter < MinFailClosedAfter:
		return nil, fmt.Errorf("verifier: FailClosedAfter must be at least %s (polls are held up to a third of it, whole seconds)", MinFailClosedAfter)
	}
	if cfg.MaxTokenLifetime <= 0 {
		cfg.MaxTokenLifetime = DefaultMaxTokenLifetime
	}
	switch {
	case cfg.JWKSRefetchInterval == 0:
		cfg.JWKSRefetchInterval = DefaultJWKSRefetchInterval
	case cfg.JWKSRefetchInterval < 0:
		return nil, errors.New("verifier: JWKSRefetchInterval must not be negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	v := &Verifier{cfg: cfg, client: client, log: cfg.Logger, done: make(chan struct{}),
		revoked: revokedSet{sids: map[string]time.Time{}, subs: map[string]subjectCut{}, jtis: map[string]time.Time{}}}

	octx := oidc.ClientContext(ctx, client)
	provider, err := oidc.NewProvider(octx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("verifier: discovery: %w", err)
	}
	var md struct {
		JWKSURI    string   `json:"jwks_uri"`
		AccessAlgs []string `json:"access_token_signing_alg_values_supported"`
		IDAlgs     []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := provider.Claims(&md); err != nil || md.JWKSURI == "" {
		return nil, fmt.Errorf("verifier: discovery document without jwks_uri: %v", err)
	}
	algs := md.AccessAlgs
	if len(algs) == 0 {
		algs = md.IDAlgs
	}
	var names []string
	for _, a := range algs {
		if asymmetric[a] {
			v.algs = append(v.algs, jose.SignatureAlgorithm(a))
			names = append(names, a)
		}
	}
	if len(v.algs) == 0 {
		return nil, fmt.Errorf("verifier: discovery lists no asymmetric signing algorithm (%v)", algs)
	}
	v.keySet = newKeySet(md.JWKSURI, client, cfg.Now, cfg.JWKSRefetchInterval)
	v.tokens = oidc.NewVerifier(cfg.Issuer, v.keySet, &oidc.Config{ClientID: cfg.Audience, SupportedSigningAlgs: names, Now: cfg.Now})

	v.lastHeard.Store(cfg.Now().UnixNano())
	if cfg.DisableFeed {
		close(v.done)
		return v, nil
	}
	if err := v.subscribe(ctx); err != nil {
		return nil, err
	}
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v.cancel = cancel
	go v.follow(fctx)
	return v, nil
}

// asymmetric are the algorithms a public JWKS can verify; symmetric and "none" never pass.
var asymmetric = map[string]bool{"RS256": true, "RS384": true, "RS512": true, "PS256": true, "PS384": true,
	"PS512": true, "ES256": true, "ES384": true, "ES512": true, "EdDSA": true}

// Close stops following the feed, and deletes the process's stream with OwnStream. Verify
// keeps working (and, unless FailOpen, fails closed once FailClosedAfter has passed).
func (v *Verifier) Close() error {
	var err error
	v.closeOnce.Do(func() {
		if v.cancel != nil {
			v.cancel()
		}
		<-v.done
		v.streamMu.Lock()
		own := v.cfg.OwnStream && v.streamID != ""
		v.streamMu.Unlock()
		if own {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = v.deleteStream(ctx)
		}
	})
	<-v.done
	return err
}

// accessClaims are the claims Verify reads beyond go-oidc's.
type accessClaims struct {
	SID               string          `json:"sid"`
	ClientID          string          `json:"client_id"`
	Scope             string          `json:"scope"`
	Roles             []string        `json:"roles"`
	PreferredUsername string          `json:"preferred_username"`
	JTI               string          `json:"jti"`
	Act               json.RawMessage `json:"act"`
}

// Verify checks an internal token and that neither its session nor its user was revoked.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Token, error) {
	tok, err := v.verifySigned(ctx, raw)
	if err != nil {
		return nil, err
	}
	now := v.cfg.Now()
	if !tok.Expiry.After(now) {
		return nil, fmt.Errorf("%w: expired", ErrInvalidToken)
	}
	if why := v.revoked.check(tok.SessionID, tok.Subject, tok.IssuedAt); why != "" {
		return nil, fmt.Errorf("%w: %s", ErrRevoked, why)
	}
	if !v.cfg.DisableFeed && !v.cfg.FailOpen {
		if quiet := now.Sub(time.Unix(0, v.lastHeard.Load())); quiet > v.cfg.FailClosedAfter {
			return nil, fmt.Errorf("%w: no answer for %s", ErrFeedUnavailable, quiet.Round(time.Millisecond))
		}
	}
	if err := v.checkActors(tok); err != nil {
		return nil, err
	}
	return tok, nil
}

// verifySigned checks signature, typ, iss, aud and exp, from a cache of recently verified
// tokens keyed by their text (revocation is checked on every call, after this). A cached token
// counts only while the keys it was verified with are unchanged and not past their max-age, so
// a key that leaves the JWKS stops verifying cached tokens too.
func (v *Verifier) verifySigned(ctx context.Context, raw string) (*Token, error) {
	gen := v.keySet.generation.Load()
	if tok := v.cache.get(raw, v.cfg.Now()); tok != nil && tok.gen == gen && !v.keySet.stale() {
		return tok, nil
	}
	jws, err := jose.ParseSignedCompact(raw, v.algs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want one signature", ErrInvalidToken)
	}
	if typ, _ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string); !typIs(typ, "at+jwt") {
		return nil, fmt.Errorf("%w: JOSE typ %q is not at+jwt", ErrInvalidToken, typ)
	}
	idt, err := v.tokens.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	var c accessClaims
	var all json.RawMessage
	if err := idt.Claims(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	_ = idt.Claims(&all)
	tok := &Token{Issuer: idt.Issuer, Subject: idt.Subject, Audience: idt.Audience, SessionID: c.SID,
		ClientID: c.ClientID, Scope: c.Scope, Roles: c.Roles, PreferredUsername: c.PreferredUsername, JTI: c.JTI,
		IssuedAt: idt.IssuedAt, Expiry: idt.Expiry, Claims: all, gen: gen}
	if tok.Subject == "" || tok.IssuedAt.IsZero() {
		return nil, fmt.Errorf("%w: sub and iat are required", ErrInvalidToken)
	}
	if tok.actors, err = parseActors(c.Act); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	v.cache.put(raw, tok)
	return tok, nil
}

// typIs compares a JOSE typ with want, accepting the "application/" prefix (RFC 7515 §4.1.9).
func typIs(typ, want string) bool {
	typ = strings.ToLower(typ)
	return typ == want || typ == "application/"+want
}

// HasScope reports whether the token was granted scope s.
func (t *Token) HasScope(s string) bool { return slices.Contains(strings.Fields(t.Scope), s) }

// Status describes the feed.
type Status struct {
	// Connected is true while polls succeed.
	Connected bool `json:"connected"`
	// LastHeard is when the feed last answered.
	LastHeard time.Time `json:"last_heard"`
	// FailingClosed is true when tokens are refused because the feed is quiet too long.
	FailingClosed bool `json:"failing_closed"`
	// RevokedSessions and RevokedSubjects count the revocations remembered.
	RevokedSessions int `json:"revoked_sessions"`
	RevokedSubjects int `json:"revoked_subjects"`
	// Applied counts revocation events applied; Refused counts SETs refused.
	Applied uint64 `json:"applied"`
	Refused uint64 `json:"refused"`
}

// Status reports the feed's state, for health checks.
func (v *Verifier) Status() Status {
	heard := time.Unix(0, v.lastHeard.Load())
	sessions, subjects := v.revoked.counts()
	return Status{Connected: v.connected.Load(), LastHeard: heard,
		FailingClosed:   !v.cfg.DisableFeed && !v.cfg.FailOpen && v.cfg.Now().Sub(heard) > v.cfg.FailClosedAfter,
		RevokedSessions: sessions, RevokedSubjects: subjects, Applied: v.applied.Load(), Refused: v.setRefused.Load()}
}
