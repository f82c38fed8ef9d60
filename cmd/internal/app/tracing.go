package app

// OpenTelemetry traces: the SDK, its exporter and sampler are built here, and the one
// TracerProvider is handed to the server, the issuer and the Shared Signals receiver at
// construction. Off (no tracing.otlp_endpoint), every one of them gets the no-op provider, the
// upstream HTTP client is not wrapped and the store is not wrapped: nothing changes.

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/tracing"
)

// tracingSetup is the assembled tracing: the provider every component gets, whether it
// records, and how to flush it at Close.
type tracingSetup struct {
	provider trace.TracerProvider
	on       bool
	shutdown func(context.Context) error
}

// newTracing builds the TracerProvider: the no-op one unless tracing.otlp_endpoint is set (or
// a test gave an exporter); OTEL_SDK_DISABLED=true turns it off whatever the file says.
func newTracing(ctx context.Context, cfg *config.Config, exporter sdktrace.SpanExporter, version string,
	log *slog.Logger) (tracingSetup, error) {
	off := tracingSetup{provider: noop.NewTracerProvider(), shutdown: func(context.Context) error { return nil }}
	if exporter == nil && !cfg.Tracing.Enabled() {
		return off, nil
	}
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		log.Info("tracing: off (OTEL_SDK_DISABLED=true)")
		return off, nil
	}
	ratio := cfg.Tracing.SampleRatio
	if ratio == 0 {
		ratio = 1 // a test's exporter without a tracing section
	}
	res, err := resource.New(ctx, resource.WithAttributes(
		attribute.String("service.name", "tokengate"), attribute.String("service.version", version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil { // a malformed OTEL_RESOURCE_ATTRIBUTES: keep what could be read
		log.Warn("tracing: resource attributes", "error", err.Error())
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler{ratio: ratio})}
	if exporter != nil {
		opts = append(opts, sdktrace.WithSyncer(exporter))
	} else {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.Tracing.ExportURL()))
		if err != nil {
			return off, fmt.Errorf("tracing.otlp_endpoint: %w", err)
		}
		// Batched, with the SDK's bounded queue: a collector that is down drops spans, never
		// holds a request.
		opts = append(opts, sdktrace.WithBatcher(exp))
		log.Info("tracing: on", "otlp_endpoint", cfg.Tracing.ExportURL(), "sample_ratio", ratio,
			"follow_traceparent", cfg.Tracing.FollowsTraceparent())
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return tracingSetup{provider: tp, on: true, shutdown: tp.Shutdown}, nil
}

// sampler records ratio of the traces, by a random draw: for a trace started here and for one
// continued from a caller's traceparent alike. A span whose parent is local follows its parent.
// A caller never decides: its sampled flag is ignored, and so is its trace id (the SDK's
// TraceIDRatioBased samples by trace id, which a caller chooses). The caller's tracestate is
// dropped, so it travels no further (not to Keycloak).
type sampler struct{ ratio float64 }

// ShouldSample implements sdktrace.Sampler.
func (s sampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	parent := trace.SpanContextFromContext(p.ParentContext)
	if parent.IsValid() && !parent.IsRemote() {
		if parent.IsSampled() {
			return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample, Tracestate: parent.TraceState()}
		}
		return sdktrace.SamplingResult{Decision: sdktrace.Drop, Tracestate: parent.TraceState()}
	}
	if s.ratio >= 1 || rand.Float64() < s.ratio {
		return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
	}
	return sdktrace.SamplingResult{Decision: sdktrace.Drop}
}

// Description implements sdktrace.Sampler.
func (s sampler) Description() string { return fmt.Sprintf("TokengateSampler{ratio=%g}", s.ratio) }

// tracedClient returns a copy of hc whose calls are client spans, children of the caller's
// span, and carry its W3C traceparent to Keycloak (never baggage; the tracestate is ours,
// empty).
func tracedClient(hc *http.Client, tp trace.TracerProvider) *http.Client {
	c := *hc
	c.Transport = otelhttp.NewTransport(hc.Transport, otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.TraceContext{}))
	return &c
}

// tracedStore makes each durable write made within a traced operation a child span: the
// issuer's RecordRevocation / RecordNewRevocation, the receiver's stream document,
// key updates and key revocations. A write outside any span (garbage collection, the key schedule) starts none.
type tracedStore struct {
	store.Store
	tracer  trace.Tracer
	backend attribute.KeyValue
}

func newTracedStore(st store.Store, tp trace.TracerProvider, backend string) *tracedStore {
	name := "bbolt"
	if backend == config.BackendEtcd {
		name = "etcd"
	}
	return &tracedStore{Store: st, tracer: tracing.Tracer(tp), backend: attribute.String("db.system.name", name)}
}

// EventsChanged forwards the wrapped store's notification channel (see metrics.InstrumentedStore).
func (s *tracedStore) EventsChanged() <-chan struct{} {
	if n, ok := s.Store.(interface{ EventsChanged() <-chan struct{} }); ok {
		return n.EventsChanged()
	}
	return nil
}

// start starts the span of write op when ctx is within a traced operation.
func (s *tracedStore) start(ctx context.Context, op string) (context.Context, trace.Span, bool) {
	if s.tracer == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil, false
	}
	ctx, span := s.tracer.Start(ctx, "store."+op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(s.backend, attribute.String("db.operation.name", op)))
	return ctx, span, true
}

// end ends span with err's status (never its text: it may name a key).
func end(span trace.Span, err error, attrs ...attribute.KeyValue) {
	span.SetAttributes(attrs...)
	if err != nil {
		span.SetStatus(codes.Error, "store write failed")
	}
	span.End()
}

// source is a revocation's origin for a span (backchannel, recheck, revoke, admin, signals):
// the part of its reason before ':'.
func source(e store.Event) attribute.KeyValue {
	src, _, _ := strings.Cut(e.Revocation.Reason, ":")
	if e.KeyRevoked != "" {
		src = "key_revoked"
	}
	return attribute.String("tokengate.revocation.source", src)
}

// RecordRevocation traces the wrapped call.
func (s *tracedStore) RecordRevocation(ctx context.Context, e store.Event) (store.Event, error) {
	ctx, span, ok := s.start(ctx, "RecordRevocation")
	got, err := s.Store.RecordRevocation(ctx, e)
	if ok {
		end(span, err, source(e))
	}
	return got, err
}

// RecordNewRevocation traces the wrapped call; tokengate.store.recorded says whether it wrote
// the revocation and, for a write that claims a jti (the logout token's, the SET's),
// tokengate.store.fresh is false for a replay.
func (s *tracedStore) RecordNewRevocation(ctx context.Context, e store.Event) (store.Event, store.Outcome, error) {
	ctx, span, ok := s.start(ctx, "RecordNewRevocation")
	got, o, err := s.Store.RecordNewRevocation(ctx, e)
	if ok {
		attrs := []attribute.KeyValue{source(e), attribute.Bool("tokengate.store.recorded", o == store.Recorded)}
		if e.Claim.JTI != "" && err == nil {
			attrs = append(attrs, attribute.Bool("tokengate.store.fresh", o != store.Replayed))
		}
		end(span, err, attrs...)
	}
	return got, o, err
}

// UpdateKeys traces the wrapped call.
func (s *tracedStore) UpdateKeys(ctx context.Context, update func([]byte) ([]byte, error)) error {
	ctx, span, ok := s.start(ctx, "UpdateKeys")
	err := s.Store.UpdateKeys(ctx, update)
	if ok {
		end(span, err)
	}
	return err
}

// RecordKeyRevocation traces the wrapped call.
func (s *tracedStore) RecordKeyRevocation(ctx context.Context, e store.Event, update func([]byte) ([]byte, error)) (store.Event, error) {
	ctx, span, ok := s.start(ctx, "RecordKeyRevocation")
	got, err := s.Store.RecordKeyRevocation(ctx, e, update)
	if ok {
		end(span, err, source(e))
	}
	return got, err
}

// PutReceiverStream traces the wrapped call.
func (s *tracedStore) PutReceiverStream(ctx context.Context, doc []byte) error {
	ctx, span, ok := s.start(ctx, "PutReceiverStream")
	err := s.Store.PutReceiverStream(ctx, doc)
	if ok {
		end(span, err)
	}
	return err
}
