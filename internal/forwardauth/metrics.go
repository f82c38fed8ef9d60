package forwardauth

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are tokengate-auth's collectors. A nil *Metrics records nothing.
type Metrics struct {
	decisions     *prometheus.CounterVec
	decisionTime  prometheus.Histogram
	upstreamFails prometheus.Counter
	forgedHeaders prometheus.Counter
}

// NewMetrics registers the collectors on reg, with gauges read from src's feed status.
func NewMetrics(reg prometheus.Registerer, src Source) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_auth_decisions_total", Help: "Requests decided, by result (allowed, missing, invalid, revoked, unavailable, forged, ambiguous).",
		}, []string{"result"}),
		decisionTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tokengate_auth_decision_duration_seconds", Help: "Time to decide a request (token verification and revocation check).",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .01, .1, 1},
		}),
		upstreamFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokengate_auth_upstream_errors_total", Help: "Accepted requests the upstream did not answer (proxy mode; 502).",
		}),
		forgedHeaders: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokengate_auth_forged_headers_removed_total",
			Help: "Accepted requests from which client headers that read as tokengate-auth's own were removed (proxy mode).",
		}),
	}
	for _, r := range results {
		m.decisions.WithLabelValues(r)
	}
	status := func(f func(s statusView) float64) func() float64 {
		return func() float64 {
			v := src.Current()
			if v == nil {
				return f(statusView{})
			}
			st := v.Status()
			return f(statusView{connected: true, feedUp: st.Connected, failing: st.FailingClosed,
				age: time.Since(st.LastHeard).Seconds(), applied: float64(st.Applied), sessions: float64(st.RevokedSessions)})
		}
	}
	b := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	reg.MustRegister(m.decisions, m.decisionTime, m.upstreamFails, m.forgedHeaders,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokengate_auth_feed_connected", Help: "1 while polls of the Shared Signals stream succeed.",
		}, status(func(s statusView) float64 { return b(s.feedUp) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokengate_auth_failing_closed", Help: "1 while every token is refused because revocations cannot be checked (also before the first connection).",
		}, status(func(s statusView) float64 { return b(!s.connected || s.failing) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokengate_auth_feed_last_heard_age_seconds", Help: "Seconds since the stream last answered.",
		}, status(func(s statusView) float64 { return s.age })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tokengate_auth_revocations_applied_total", Help: "Session and user revocations applied from the stream.",
		}, status(func(s statusView) float64 { return s.applied })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokengate_auth_revoked_sessions", Help: "Revoked sessions remembered (for the longest token lifetime).",
		}, status(func(s statusView) float64 { return s.sessions })),
	)
	return m
}

type statusView struct {
	connected, feedUp, failing bool
	age, applied, sessions     float64
}

func (m *Metrics) decision(result string, d time.Duration) {
	if m != nil {
		m.decisions.WithLabelValues(result).Inc()
		m.decisionTime.Observe(d.Seconds())
	}
}

func (m *Metrics) upstreamError() {
	if m != nil {
		m.upstreamFails.Inc()
	}
}

func (m *Metrics) forgedRemoved() {
	if m != nil {
		m.forgedHeaders.Inc()
	}
}
