package signals_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/internal/testwait"
	"github.com/tokengate/tokengate/internal/upstream/signals"
)

// spanRecorder is a recorder that notes the span each logout was recorded under.
type spanRecorder struct {
	*recorder
	mu    sync.Mutex
	spans []trace.SpanContext
}

func (r *spanRecorder) RecordUpstreamSET(ctx context.Context, c store.Claim, rev store.Revocation) (bool, error) {
	r.mu.Lock()
	r.spans = append(r.spans, trace.SpanContextFromContext(ctx))
	r.mu.Unlock()
	return r.recorder.RecordUpstreamSET(ctx, c, rev)
}

// TestReceiver_EachPollIsASpan: with a TracerProvider every poll of Keycloak's stream is a
// "signals.poll" span counting the SETs it carried, and the logout a SET carries is recorded
// within that span (the issuer's and the store's spans are its children). The span ends
// before the pause between polls.
func TestReceiver_EachPollIsASpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tx := newTransmitter(t)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	rec := &spanRecorder{recorder: &recorder{st: st}}
	rcv, err := signals.New(signals.Config{
		Issuer: tx.issuer(), ClientID: clientID, ClientSecret: clientSecret,
		PollInterval: time.Second, Logger: slog.New(slog.DiscardHandler), TracerProvider: tp,
	}, st, rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rcv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	testwait.Eventually(t, wait, "the stream is verified", rcv.Verified)
	jti := tx.Enqueue(tx.SET(tx.Stream(), "caep/event-type/session-revoked",
		map[string]any{"event_timestamp": time.Now().Unix(), "initiating_entity": "user"},
		sessionSubject(tx.issuer(), "alice", "sid-traced")))
	testwait.Eventually(t, wait, "the SET is acknowledged", func() bool { acked, _, _ := tx.Outcome(jti); return acked })

	rec.mu.Lock()
	within := rec.spans[len(rec.spans)-1]
	rec.mu.Unlock()
	var poll tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.SpanContext.SpanID() == within.SpanID() {
			poll = s
		}
	}
	if poll.Name != "signals.poll" {
		t.Fatalf("the logout was recorded within span %q (%v), want an ended signals.poll", poll.Name, within)
	}
	var sets int64 = -1
	for _, kv := range poll.Attributes {
		if kv.Key == "tokengate.ssf.sets" {
			sets = kv.Value.AsInt64()
		}
	}
	if sets != 1 {
		t.Errorf("signals.poll tokengate.ssf.sets = %d, want 1", sets)
	}
	for _, s := range exp.GetSpans() {
		if s.Name == "signals.poll" && s.EndTime.Sub(s.StartTime) >= time.Second {
			t.Errorf("a poll span lasted %s: it includes the pause between polls", s.EndTime.Sub(s.StartTime))
		}
	}
}
