package config

import (
	"strings"
	"testing"
)

func TestTracing_OffByDefault(t *testing.T) {
	c, err := parseWith(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Tracing.Enabled() || c.Tracing.SampleRatio != 0 || c.Tracing.FollowTraceparent != nil {
		t.Fatalf("tracing set by default: %+v", c.Tracing)
	}
	// The OTEL_* environment alone does not turn tracing on: only the file does.
	c, err = parseWith(t, "", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
	if err != nil || c.Tracing.Enabled() {
		t.Fatalf("tracing on from the environment alone: %+v, %v", c.Tracing, err)
	}
}

func TestTracing_Defaults(t *testing.T) {
	c, err := parseWith(t, "tracing:\n  otlp_endpoint: http://otel-collector:4318\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := c.Tracing
	if !tr.Enabled() || tr.SampleRatio != 1 || !tr.FollowsTraceparent() {
		t.Errorf("defaults: %+v", tr)
	}
	if got := tr.ExportURL(); got != "http://otel-collector:4318/v1/traces" {
		t.Errorf("ExportURL = %q, want the OTLP traces path added", got)
	}
	c, err = parseWith(t, "tracing:\n  otlp_endpoint: https://otel.example/custom/traces\n  sample_ratio: 0.01\n  follow_traceparent: false\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr := c.Tracing; tr.ExportURL() != "https://otel.example/custom/traces" || tr.SampleRatio != 0.01 || tr.FollowsTraceparent() {
		t.Errorf("explicit values: %+v, %q", tr, tr.ExportURL())
	}
}

// TestTracing_Refused: every bad tracing section is refused naming its field, and an endpoint
// with credentials is refused without quoting them.
func TestTracing_Refused(t *testing.T) {
	for _, tc := range []struct{ name, section, field string }{
		{"ratio without endpoint", "  sample_ratio: 0.5\n", "tracing"},
		{"follow without endpoint", "  follow_traceparent: false\n", "tracing"},
		{"not a URL", "  otlp_endpoint: otel-collector:4318\n", "tracing.otlp_endpoint"},
		{"grpc scheme", "  otlp_endpoint: grpc://otel:4317\n", "tracing.otlp_endpoint"},
		{"no host", "  otlp_endpoint: http:///v1/traces\n", "tracing.otlp_endpoint"},
		{"query", "  otlp_endpoint: http://otel:4318/v1/traces?x=1\n", "tracing.otlp_endpoint"},
		{"credentials", "  otlp_endpoint: https://user:hunter2-secret@otel:4318\n", "tracing.otlp_endpoint"},
		{"ratio above 1", "  otlp_endpoint: http://otel:4318\n  sample_ratio: 1.5\n", "tracing.sample_ratio"},
		{"negative ratio", "  otlp_endpoint: http://otel:4318\n  sample_ratio: -0.1\n", "tracing.sample_ratio"},
		{"NaN ratio", "  otlp_endpoint: http://otel:4318\n  sample_ratio: .nan\n", "tracing.sample_ratio"},
		{"infinite ratio", "  otlp_endpoint: http://otel:4318\n  sample_ratio: .inf\n", "tracing.sample_ratio"},
		{"ratio not a number", "  otlp_endpoint: http://otel:4318\n  sample_ratio: most\n", "most"},
		{"unknown key", "  otlp_endpoint: http://otel:4318\n  exporter: jaeger\n", "exporter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseWith(t, "tracing:\n"+tc.section, nil)
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want an error naming %q", err, tc.field)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error quotes a credential: %v", err)
			}
		})
	}
}
