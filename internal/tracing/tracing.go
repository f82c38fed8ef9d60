// Package tracing holds the few helpers tokengate's packages share to start OpenTelemetry
// spans. It depends on the OpenTelemetry API only; cmd/internal/app builds the SDK (exporter,
// sampler) and hands each package its trace.TracerProvider at construction.
//
// Off — no provider, or the no-op one — a package keeps a nil tracer and Start returns the
// context unchanged with the no-op span: no allocation, no context value, so the hot paths
// (renewal) cost what they cost without tracing.
//
// What spans carry: operation names, client ids, outcomes and OAuth error codes, counts. Never
// a token, a secret, a user's subject or session id, or a caller's free text.
package tracing

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Scope is the instrumentation scope name of every tokengate span.
const Scope = "github.com/tokengate/tokengate"

// Tracer returns tp's tracer, or nil when tracing is off (tp is nil or the no-op provider).
func Tracer(tp trace.TracerProvider) trace.Tracer {
	switch tp.(type) {
	case nil, noop.TracerProvider, *noop.TracerProvider:
		return nil
	}
	return tp.Tracer(Scope)
}

// noSpan is what Start returns when tracing is off.
var noSpan trace.Span = noop.Span{}

// Start starts span name on t (a child of ctx's span), or returns ctx and the no-op span
// when t is nil.
func Start(ctx context.Context, t trace.Tracer, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noSpan
	}
	return t.Start(ctx, name, opts...)
}
