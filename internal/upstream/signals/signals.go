// Package signals receives Keycloak's Shared Signals stream (OpenID SSF 1.0, RFC 8936 poll) and
// records the logouts it carries, a second, durable channel beside back-channel logout.
//
// Keycloak (26.7+, feature ssf) keeps every SET in an outbox until the receiver acknowledges
// it, so a logout that happens while tokengate is down waits for tokengate instead of being
// lost like an unanswered back-channel logout. The Receiver discovers the transmitter, creates
// or reuses its stream (the stream id is kept in the store; a reused stream that does not
// request every configured event is updated to request them), asks for a verification event,
// then polls: each SET is verified (signature against Keycloak's JWKS with pinned algorithms,
// typ, iss, aud, iat, jti), mapped to a revocation and handed to the issuer, which records it
// and claims the jti in one store transaction; it is acknowledged only after that. What cannot
// be verified or understood goes back in setErrs.
//
// One Receiver polls per deployment: with replicas, only the elected leader runs it.
package signals

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/tracing"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// Events maps the short event names used in configuration to their URIs (secevent). session-revoked is
// always acted on; the others revoke every session of the user.
var Events = map[string]string{
	"session-revoked":       secevent.EventSessionRevoked,
	"credential-change":     secevent.EventCredentialChange,
	"account-disabled":      secevent.EventAccountDisabled,
	"account-purged":        secevent.EventAccountPurged,
	"credential-compromise": secevent.EventCredentialCompromise,
}

// Recorder records the logout a verified SET carries, durably, through the issuer's one write
// path: the revocation and the claim of the SET's jti (c) are one store transaction. It
// reports false when the jti was claimed before (the SET came again) or a stored revocation
// already covers r (the other channel was first); when it fails, nothing is claimed.
// *issuer.Issuer implements it.
type Recorder interface {
	RecordUpstreamSET(ctx context.Context, c store.Claim, r store.Revocation) (recorded bool, err error)
}

// State keeps the stream document across restarts and replicas (store.ReceiverState).
type State interface {
	ReceiverStream(ctx context.Context) ([]byte, error)
	PutReceiverStream(ctx context.Context, doc []byte) error
}

// Config says where the transmitter is and what to act on.
type Config struct {
	// Issuer is the realm URL; the SSF metadata and every SET must name it.
	Issuer string
	// ClientID and ClientSecret are the receiver client's (a confidential client with a service
	// account, ssf.enabled, and the ssf.read and ssf.manage scopes).
	ClientID     string
	ClientSecret string
	// Events are the event URIs acted on besides session-revoked (see Events).
	Events []string
	// PollInterval is the pause between polls that returned nothing (Keycloak answers polls at
	// once). Default 2s.
	PollInterval time.Duration
	// MaxAge is the oldest iat accepted: SETs wait in Keycloak's outbox while tokengate is down,
	// up to 48 h (Keycloak's pendingMaxAge). Default 48h.
	MaxAge time.Duration
	// Skew is the allowed clock difference. Default 60s.
	Skew time.Duration
	// HTTPClient makes every call (a client with a 10 s timeout when nil).
	HTTPClient *http.Client
	// AllowedOrigins are origins (scheme://host[:port]) besides the issuer's that the
	// transmitter's endpoints may be on (upstream.shared_signals.allowed_origins).
	AllowedOrigins []string
	// InsecureHTTP allows plain http to hosts that are not loopback addresses
	// (upstream.insecure_http).
	InsecureHTTP bool
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Logger receives the receiver's log lines (slog.Default when nil).
	Logger *slog.Logger
	// Registerer receives the receiver's metrics (none when nil).
	Registerer prometheus.Registerer
	// TracerProvider receives a span per poll (nil or the no-op provider: none).
	TracerProvider trace.TracerProvider
}

// Receiver follows the stream. Create it with New and run it with Run.
type Receiver struct {
	cfg     Config
	origins *origins
	state   State
	rec     Recorder
	log     *slog.Logger
	m       *metrics
	wanted  []string // event URIs requested: session-revoked plus cfg.Events
	actOn   map[string]bool
	backoff backoff
	tracer  trace.Tracer // nil: tracing off

	mu       sync.Mutex
	verified bool // a verification SET with our state arrived on the current stream

	caughtUp     chan struct{} // closed by markCaughtUp
	caughtUpOnce sync.Once
}

// New checks cfg and returns a receiver; no call is made before Run.
func New(cfg Config, st State, rec Recorder) (*Receiver, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("signals: Issuer, ClientID and ClientSecret are required")
	}
	if st == nil || rec == nil {
		return nil, errors.New("signals: a State and a Recorder are required")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 48 * time.Hour
	}
	if cfg.Skew <= 0 {
		cfg.Skew = 60 * time.Second
	}
	origins, err := newOrigins(cfg.Issuer, cfg.AllowedOrigins, cfg.InsecureHTTP)
	if err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	hc := *cfg.HTTPClient // a copy: redirects are held to the origin rule here only
	hc.CheckRedirect = origins.checkRedirect
	cfg.HTTPClient = &hc
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Receiver{
		cfg: cfg, state: st, rec: rec, log: cfg.Logger, origins: origins,
		wanted:   []string{secevent.EventSessionRevoked},
		actOn:    map[string]bool{secevent.EventSessionRevoked: true},
		backoff:  backoff{min: time.Second, max: maxBackoff},
		caughtUp: make(chan struct{}),
		tracer:   tracing.Tracer(cfg.TracerProvider),
	}
	for _, e := range cfg.Events {
		if !slices.Contains(eventURIs(), e) {
			return nil, fmt.Errorf("signals: event %q is not one tokengate acts on", e)
		}
		if !r.actOn[e] {
			r.wanted = append(r.wanted, e)
			r.actOn[e] = true
		}
	}
	r.m = newMetrics()
	if cfg.Registerer != nil {
		if err := r.m.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("signals: metrics: %w", err)
		}
	}
	return r, nil
}

func eventURIs() []string {
	out := make([]string, 0, len(Events))
	for _, u := range Events {
		out = append(out, u)
	}
	return out
}

// Verified reports whether the current stream delivered the verification event tokengate asked
// for (a stream Keycloak delivers on).
func (r *Receiver) Verified() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.verified
}

// CaughtUp is closed once the first poll found nothing more waiting (every logout that waited in
// the stream while tokengate was down is recorded), or once connecting or polling failed (so a
// caller waiting on it never waits for an unreachable Keycloak longer than one attempt). A
// single tokengate waits on it, bounded, before it serves: the first renewal after a restart
// already sees the logouts of the downtime.
func (r *Receiver) CaughtUp() <-chan struct{} { return r.caughtUp }

func (r *Receiver) markCaughtUp() { r.caughtUpOnce.Do(func() { close(r.caughtUp) }) }

// Run follows the stream until ctx ends: connect (discovery, stream, verification request),
// then poll. When Keycloak does not offer the stream or cannot be reached, it logs once per
// outage, sets tokengate_upstream_signals_up to 0 and retries with backoff; back-channel logout
// and recheck are unaffected.
func (r *Receiver) Run(ctx context.Context) {
	failing := ""
	for ctx.Err() == nil {
		c, err := r.connect(ctx)
		if err == nil {
			err = r.follow(ctx, c)
		}
		if ctx.Err() != nil {
			return
		}
		var lost *streamLostError
		if errors.As(err, &lost) {
			r.log.Warn("shared signals: Keycloak no longer has the stream; reconnecting", "event", "signals_stream_lost",
				"stream", lost.id)
			continue
		}
		r.markCaughtUp()
		r.m.up.Set(0)
		r.m.failures.Inc()
		if msg := err.Error(); msg != failing {
			r.log.Error("shared signals: Keycloak's stream is unavailable; logouts reach tokengate by back-channel logout and recheck only until it is back",
				"event", "signals_down", "error", msg)
			failing = msg
		}
		if !r.backoff.sleep(ctx) {
			return
		}
	}
}

// maxBackoff is the ceiling of the receiver's reconnect backoff: after a long Keycloak outage
// the receiver polls again at most this long after Keycloak is back. One poll attempt per
// 15 s from the one leader replica is no load on Keycloak; a minute delayed reconnecting by
// 28–51 s in the chaos suite (docs/reliability.md).
const maxBackoff = 15 * time.Second

// backoff doubles a pause between min and max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) sleep(ctx context.Context) bool {
	if b.cur == 0 {
		b.cur = b.min
	}
	t := time.NewTimer(b.cur)
	defer t.Stop()
	b.cur = min(2*b.cur, b.max)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (b *backoff) reset() { b.cur = 0 }

// metrics are the receiver's collectors.
type metrics struct {
	up       prometheus.Gauge
	verified prometheus.Gauge
	failures prometheus.Counter
	polls    *prometheus.CounterVec
	sets     *prometheus.CounterVec
	lag      prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokengate_upstream_signals_up",
			Help: "1 while the last poll of Keycloak's Shared Signals stream succeeded, 0 when it failed or the stream is not offered.",
		}),
		verified: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokengate_upstream_signals_verified",
			Help: "1 once the current stream delivered the verification event tokengate asked for.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokengate_upstream_signals_failures_total",
			Help: "Times connecting to or polling Keycloak's Shared Signals stream failed.",
		}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_upstream_signals_polls_total", Help: "Polls of Keycloak's stream, by result (ok, error).",
		}, []string{"result"}),
		sets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_upstream_signals_sets_total",
			Help: "SETs received from Keycloak, by event (short name) and outcome (recorded, duplicate, ignored, refused, retry).",
		}, []string{"event", "outcome"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokengate_upstream_signals_lag_seconds",
			Help:    "Time from a SET's iat to the revocation it carries being recorded.",
			Buckets: []float64{.1, .25, .5, 1, 2, 5, 10, 30, 60, 300, 3600},
		}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.up, m.verified, m.failures, m.polls, m.sets, m.lag} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
