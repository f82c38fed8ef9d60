package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokengate/tokengate/internal/tracing"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// traceContext reads a caller's W3C traceparent (and tracestate, which the sampler drops).
// Baggage is never read: no propagator for it is configured anywhere.
var traceContext propagation.TraceContext

// traced starts the server span of a protocol request, named "METHOD route" after the
// matched route (never the raw path, which a caller chooses). With FollowTraceparent the span
// continues the caller's trace when its traceparent is well-formed; a malformed one is ignored
// (a new trace starts). Whether the span is recorded is the sampler's decision alone, never
// the caller's sampled flag (see cmd/internal/app). Attributes: method, route, status.
func (s *Server) traced() gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		if s.cfg.FollowTraceparent {
			ctx = traceContext.Extract(ctx, propagation.HeaderCarrier(c.Request.Header))
		}
		route := c.FullPath()
		ctx, span := s.tracer.Start(ctx, c.Request.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", c.Request.Method), attribute.String("http.route", route)))
		defer span.End()
		c.Request = c.Request.WithContext(ctx)
		c.Next()
		status := c.Writer.Status()
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
}

// pollSpan wraps one authenticated RFC 8936 poll of stream id in a span: the acknowledgements
// and errors it carried, the SETs answered, how long it was held.
func (s *Server) pollSpan(c *gin.Context, id string, req *secevent.PollRequest) func(resp secevent.PollResponse) {
	ctx, span := tracing.Start(c.Request.Context(), s.tracer, "ssf.Poll")
	if !span.IsRecording() {
		return func(secevent.PollResponse) { span.End() }
	}
	c.Request = c.Request.WithContext(ctx)
	span.SetAttributes(attribute.String("tokengate.ssf.stream_id", id), attribute.Int("tokengate.ssf.acks", len(req.Ack)),
		attribute.Int("tokengate.ssf.set_errs", len(req.SETErrs)), attribute.Bool("tokengate.ssf.return_immediately", req.ReturnImmediately))
	return func(resp secevent.PollResponse) {
		span.SetAttributes(attribute.Int("tokengate.ssf.sets", len(resp.Sets)), attribute.Bool("tokengate.ssf.more_available", resp.MoreAvailable))
		span.End()
	}
}
