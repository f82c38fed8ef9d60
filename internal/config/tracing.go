package config

import (
	"net/url"
)

// Tracing configures OpenTelemetry traces. Tracing is off unless OTLPEndpoint is set; off,
// tokengate uses the no-op tracer and sends no trace headers anywhere.
type Tracing struct {
	// OTLPEndpoint is the OTLP/HTTP (protobuf) traces URL of a collector, e.g.
	// http://otel-collector:4318/v1/traces (a URL without a path gets /v1/traces). Setting it
	// turns tracing on. Credentials go in OTEL_EXPORTER_OTLP_HEADERS, not in the URL; the
	// other OTEL_EXPORTER_OTLP_* variables (headers, timeout, certificates, compression) are
	// honoured, and this key wins over OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT.
	OTLPEndpoint string `yaml:"otlp_endpoint,omitempty"`
	// SampleRatio is the share of traces recorded, in (0, 1]; default 1. It decides for
	// traces started here and for those continued from a caller's traceparent alike: a
	// caller's sampled flag or trace id never makes tokengate record.
	SampleRatio float64 `yaml:"sample_ratio,omitempty"`
	// FollowTraceparent (default true) continues a caller's W3C traceparent (the request's
	// spans join the caller's trace); false starts a new trace for every request. A caller's
	// tracestate is never passed on, and baggage is never read.
	FollowTraceparent *bool `yaml:"follow_traceparent,omitempty"`
}

// Enabled reports whether traces are exported (tracing.otlp_endpoint is set).
func (t Tracing) Enabled() bool { return t.OTLPEndpoint != "" }

// FollowsTraceparent reports tracing.follow_traceparent (true unless set to false).
func (t Tracing) FollowsTraceparent() bool { return t.FollowTraceparent == nil || *t.FollowTraceparent }

// ExportURL is the URL spans are sent to: OTLPEndpoint, with /v1/traces when it has no path.
func (t Tracing) ExportURL() string {
	u, err := url.Parse(t.OTLPEndpoint)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return t.OTLPEndpoint
	}
	u.Path = "/v1/traces"
	return u.String()
}

func (t *Tracing) setDefaults() {
	if !t.Enabled() {
		return
	}
	if t.SampleRatio == 0 {
		t.SampleRatio = 1
	}
	if t.FollowTraceparent == nil {
		on := true
		t.FollowTraceparent = &on
	}
}

func (t *Tracing) validate(bad func(field, format string, a ...any)) {
	if !t.Enabled() {
		if t.SampleRatio != 0 || t.FollowTraceparent != nil {
			bad("tracing", "sample_ratio and follow_traceparent need tracing.otlp_endpoint (tracing is off without it)")
		}
		return
	}
	u, err := url.Parse(t.OTLPEndpoint)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		bad("tracing.otlp_endpoint", "must be an absolute http(s) URL, e.g. http://otel-collector:4318/v1/traces")
	case u.User != nil:
		bad("tracing.otlp_endpoint", "must not carry credentials: put them in OTEL_EXPORTER_OTLP_HEADERS")
	case u.RawQuery != "" || u.Fragment != "":
		bad("tracing.otlp_endpoint", "%q must not have a query or fragment", t.OTLPEndpoint)
	}
	if !(t.SampleRatio > 0 && t.SampleRatio <= 1) { // also refuses NaN
		bad("tracing.sample_ratio", "%v is outside (0, 1]", t.SampleRatio)
	}
}
