package issuer

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokengate/tokengate/internal/tracing"
)

// Span attributes the issuer sets. None carries a token, a secret, a subject or a session id.
const (
	attrClientID = attribute.Key("tokengate.client_id")
	attrOutcome  = attribute.Key("tokengate.outcome") // ok, refused, error
	attrReason   = attribute.Key("tokengate.reason")  // why a renewal was refused (logged_out, ...)
	attrErrType  = attribute.Key("error.type")        // the OAuth error code
	attrIntro    = attribute.Key("tokengate.introspection")
	attrCached   = attribute.Key("tokengate.cached_introspection")
)

// startSpan starts the span of an issuer call by client c (c.ID empty: no client).
func (i *Issuer) startSpan(ctx context.Context, name string, c Client) (context.Context, trace.Span) {
	ctx, span := tracing.Start(ctx, i.tracer, name)
	if c.ID != "" && span.IsRecording() {
		span.SetAttributes(attrClientID.String(c.ID))
	}
	return ctx, span
}

// endSpan ends an issuer span with the call's outcome (ok, refused or error) and its OAuth
// code, never the error's text (it may quote what the caller sent). Only an error of ours or
// of the provider marks the span as failed; a refusal is the caller's.
func endSpan(span trace.Span, err error) {
	if span.IsRecording() {
		result, code := outcome(err)
		span.SetAttributes(attrOutcome.String(result))
		if code != "" {
			span.SetAttributes(attrErrType.String(code))
		}
		if result == "error" {
			span.SetStatus(codes.Error, code)
		}
	}
	span.End()
}

// spanReason notes on ctx's span why a call was refused.
func spanReason(ctx context.Context, reason string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attrReason.String(reason))
	}
}
