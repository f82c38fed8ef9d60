// Package metrics defines tokengate's Prometheus collectors and the store instrumentation.
package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/store"
)

// Metrics holds every collector. A nil *Metrics is valid and records nothing, so packages
// can be used without metrics in tests.
type Metrics struct {
	Exchanges          *prometheus.CounterVec
	Renewals           *prometheus.CounterVec
	Logouts            *prometheus.CounterVec
	IntrospectionTime  *prometheus.HistogramVec
	IntrospectionCache *prometheus.CounterVec
	StoreCommitTime    *prometheus.HistogramVec
	RateLimited        *prometheus.CounterVec
	Requests           *prometheus.CounterVec
	RequestTime        *prometheus.HistogramVec
	RevocationRecords  *prometheus.GaugeVec
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_exchanges_total", Help: "Token exchanges by result (ok, refused, error) and reason.",
		}, []string{"result", "reason"}),
		Renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_renewals_total", Help: "Renewals by result (ok, refused, error) and reason.",
		}, []string{"result", "reason"}),
		Logouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_logouts_total", Help: "Logouts by source (backchannel, recheck, revoke, admin), result (recorded, refused) and reason.",
		}, []string{"source", "result", "reason"}),
		IntrospectionTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tokengate_introspection_duration_seconds", Help: "Introspection calls to Keycloak by outcome (active, inactive, error).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"outcome"}),
		IntrospectionCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_introspection_cache_total", Help: "Exchange introspection lookups by result (hit, miss).",
		}, []string{"result"}),
		StoreCommitTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tokengate_store_commit_duration_seconds", Help: "Durable store writes by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"op"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_rate_limited_total", Help: "Requests refused with 429 by limiter.",
		}, []string{"limiter"}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		RequestTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tokengate_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"route"}),
		RevocationRecords: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokengate_revocation_records", Help: "Records in the store by kind (sessions, subjects, jtis), sampled every minute.",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.Exchanges, m.Renewals, m.Logouts, m.IntrospectionTime, m.IntrospectionCache,
		m.StoreCommitTime, m.RateLimited, m.Requests, m.RequestTime, m.RevocationRecords)
	return m
}

// KeyAge registers a gauge reporting the active signing key's age.
func KeyAge(reg prometheus.Registerer, activeSince func() time.Time) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tokengate_signing_key_age_seconds", Help: "Age of the active signing key.",
	}, func() float64 { return time.Since(activeSince()).Seconds() }))
}

// Exchange counts an exchange.
func (m *Metrics) Exchange(result, reason string) {
	if m != nil {
		m.Exchanges.WithLabelValues(result, reason).Inc()
	}
}

// Renewal counts a renewal.
func (m *Metrics) Renewal(result, reason string) {
	if m != nil {
		m.Renewals.WithLabelValues(result, reason).Inc()
	}
}

// Logout counts a logout.
func (m *Metrics) Logout(source, result, reason string) {
	if m != nil {
		m.Logouts.WithLabelValues(source, result, reason).Inc()
	}
}

// Introspection observes one introspection call.
func (m *Metrics) Introspection(outcome string, d time.Duration) {
	if m != nil {
		m.IntrospectionTime.WithLabelValues(outcome).Observe(d.Seconds())
	}
}

// CacheLookup counts an introspection cache hit or miss.
func (m *Metrics) CacheLookup(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.IntrospectionCache.WithLabelValues("hit").Inc()
	} else {
		m.IntrospectionCache.WithLabelValues("miss").Inc()
	}
}

// Limited counts a rate-limited request.
func (m *Metrics) Limited(limiter string) {
	if m != nil {
		m.RateLimited.WithLabelValues(limiter).Inc()
	}
}

// Request observes one HTTP request.
func (m *Metrics) Request(route string, code int, d time.Duration) {
	if m != nil {
		m.Requests.WithLabelValues(route, codeLabel(code)).Inc()
		m.RequestTime.WithLabelValues(route).Observe(d.Seconds())
	}
}

// Records sets the record-count gauges.
func (m *Metrics) Records(s store.Stats) {
	if m != nil {
		m.RevocationRecords.WithLabelValues("sessions").Set(float64(s.Sessions))
		m.RevocationRecords.WithLabelValues("subjects").Set(float64(s.Subjects))
		m.RevocationRecords.WithLabelValues("jtis").Set(float64(s.JTIs))
	}
}

func codeLabel(c int) string {
	const digits = "0123456789"
	if c < 100 || c > 999 {
		return "other"
	}
	return string([]byte{digits[c/100], digits[c/10%10], digits[c%10]})
}

// InstrumentedStore times the durable writes of a store.
type InstrumentedStore struct {
	store.Store
	m *Metrics
}

// InstrumentStore wraps s so its writes are timed.
func InstrumentStore(s store.Store, m *Metrics) *InstrumentedStore {
	return &InstrumentedStore{Store: s, m: m}
}

// EventsChanged forwards the wrapped store's notification channel (ssf.EventsNotifier: appends
// by other processes sharing the store); nil when the wrapped store has none (one process).
// Without it the wrapper would hide the channel, and held polls would learn of a logout at
// another replica only at their transmitter's next tail.
func (s *InstrumentedStore) EventsChanged() <-chan struct{} {
	if n, ok := s.Store.(interface{ EventsChanged() <-chan struct{} }); ok {
		return n.EventsChanged()
	}
	return nil
}

// storeCommit observes a durable write of op that began at start; m may be nil.
func (m *Metrics) storeCommit(op string, start time.Time) {
	if m != nil {
		m.StoreCommitTime.WithLabelValues(op).Observe(time.Since(start).Seconds())
	}
}

// RecordRevocation times the wrapped call as op "record_revocation": the durable write of a
// logout and its event.
func (s *InstrumentedStore) RecordRevocation(ctx context.Context, e store.Event) (store.Event, error) {
	defer s.m.storeCommit("record_revocation", time.Now())
	return s.Store.RecordRevocation(ctx, e)
}

// RecordNewRevocation times the wrapped call as op "record_revocation" (with the claim of the
// jti of the token that carried the logout, when it has one).
func (s *InstrumentedStore) RecordNewRevocation(ctx context.Context, e store.Event) (store.Event, store.Outcome, error) {
	defer s.m.storeCommit("record_revocation", time.Now())
	return s.Store.RecordNewRevocation(ctx, e)
}

// UpdateKeys times the wrapped call.
func (s *InstrumentedStore) UpdateKeys(ctx context.Context, update func([]byte) ([]byte, error)) error {
	defer s.m.storeCommit("update_keys", time.Now())
	return s.Store.UpdateKeys(ctx, update)
}

// RecordKeyRevocation times the wrapped call as op "update_keys": the key document's write,
// with its key event.
func (s *InstrumentedStore) RecordKeyRevocation(ctx context.Context, e store.Event, update func([]byte) ([]byte, error)) (store.Event, error) {
	defer s.m.storeCommit("update_keys", time.Now())
	return s.Store.RecordKeyRevocation(ctx, e, update)
}

// CacheStats is the size of one in-memory cache and how many entries its bound evicted.
type CacheStats struct {
	Name      string
	Entries   int
	Evictions uint64
}

// Caches registers, read from stats at each scrape, tokengate_cache_entries{cache} (entries
// held) and tokengate_cache_evictions_total{cache} (entries the size bound evicted).
func Caches(reg prometheus.Registerer, stats func() []CacheStats) {
	reg.MustRegister(cacheCollector(stats))
}

var (
	cacheEntriesDesc = prometheus.NewDesc("tokengate_cache_entries",
		"Entries held by an in-memory cache (recheck_schedule, introspection, refresh_tokens).", []string{"cache"}, nil)
	cacheEvictionsDesc = prometheus.NewDesc("tokengate_cache_evictions_total",
		"Entries evicted from an in-memory cache by its size bound (limits.caches).", []string{"cache"}, nil)
)

type cacheCollector func() []CacheStats

func (c cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cacheEntriesDesc
	ch <- cacheEvictionsDesc
}

func (c cacheCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c() {
		ch <- prometheus.MustNewConstMetric(cacheEntriesDesc, prometheus.GaugeValue, float64(s.Entries), s.Name)
		ch <- prometheus.MustNewConstMetric(cacheEvictionsDesc, prometheus.CounterValue, float64(s.Evictions), s.Name)
	}
}

// PendingRevocations registers tokengate_store_pending_revocations, read from pending at each
// scrape: revocations the store could not write, refused in memory and waiting to be written.
func PendingRevocations(reg prometheus.Registerer, pending func() int) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tokengate_store_pending_revocations",
		Help: "Revocations the store could not write (disk full, no etcd quorum), refused by this process and waiting to be written.",
	}, func() float64 { return float64(pending()) }))
}

var clockOffsetDesc = prometheus.NewDesc("tokengate_upstream_clock_offset_seconds",
	"Keycloak's clock minus this process's, from the Date header of Keycloak's last answer (corrected by half the round trip; ±0.5 s resolution, bounded to ±86400): positive, tokens issued here expire early at services on Keycloak's time.",
	nil, nil)

// clockOffsetCollector reports the last measured clock offset, and nothing before the first.
type clockOffsetCollector func() (time.Duration, bool)

func (c clockOffsetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- clockOffsetDesc }

func (c clockOffsetCollector) Collect(ch chan<- prometheus.Metric) {
	if off, ok := c(); ok {
		ch <- prometheus.MustNewConstMetric(clockOffsetDesc, prometheus.GaugeValue, off.Seconds())
	}
}

// UpstreamClockOffset registers tokengate_upstream_clock_offset_seconds, read from offset at
// each scrape; absent until offset reports a measurement.
func UpstreamClockOffset(reg prometheus.Registerer, offset func() (time.Duration, bool)) {
	reg.MustRegister(clockOffsetCollector(offset))
}
