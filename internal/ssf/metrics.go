package ssf

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the transmitter's collectors, labelled by stream.
type metrics struct {
	emitted     *prometheus.CounterVec
	delivered   *prometheus.CounterVec
	redelivered *prometheus.CounterVec
	acked       *prometheus.CounterVec
	setErrors   *prometheus.CounterVec
	lag         *prometheus.HistogramVec
	waiting     prometheus.Gauge
	backlog     *prometheus.Desc
}

func newMetrics() *metrics {
	return &metrics{
		emitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_ssf_events_emitted_total", Help: "Logout events that entered a stream (one per recorded logout per stream).",
		}, []string{"stream"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_ssf_events_delivered_total", Help: "SETs delivered to a stream's receiver for the first time.",
		}, []string{"stream"}),
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_ssf_events_redelivered_total", Help: "SETs delivered again because they were not acknowledged.",
		}, []string{"stream"}),
		acked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_ssf_events_acked_total", Help: "SETs acknowledged by a stream's receiver (ack or setErrs).",
		}, []string{"stream"}),
		setErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_ssf_set_errors_total", Help: "SETs a receiver reported as erroneous (setErrs), by error code.",
		}, []string{"stream", "err"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokengate_ssf_delivery_lag_seconds",
			Help:    "Time from a logout being recorded to its SET's first delivery to a stream.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"stream"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokengate_ssf_polls_waiting", Help: "Long polls held open waiting for an event.",
		}),
		backlog: prometheus.NewDesc("tokengate_ssf_stream_backlog",
			"Events in a stream not yet acknowledged by its receiver.", []string{"stream"}, nil),
	}
}

// register registers the collectors and t (for the backlog gauge) on reg.
func (m *metrics) register(reg prometheus.Registerer, t *Transmitter) error {
	for _, c := range []prometheus.Collector{m.emitted, m.delivered, m.redelivered, m.acked, m.setErrors, m.lag,
		m.waiting, backlogCollector{t}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// forget drops a deleted stream's series.
func (m *metrics) forget(id string) {
	for _, v := range []*prometheus.CounterVec{m.emitted, m.delivered, m.redelivered, m.acked} {
		v.DeleteLabelValues(id)
	}
	m.setErrors.DeletePartialMatch(prometheus.Labels{"stream": id})
	m.lag.DeleteLabelValues(id)
}

// backlogCollector reports each stream's backlog when scraped.
type backlogCollector struct{ t *Transmitter }

func (c backlogCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.t.m.backlog }

func (c backlogCollector) Collect(ch chan<- prometheus.Metric) {
	for id, n := range c.t.backlogs() {
		ch <- prometheus.MustNewConstMetric(c.t.m.backlog, prometheus.GaugeValue, float64(n), id)
	}
}
