package ssf_test

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/ssf"
	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// sharedLog is a bolt store that says other processes share it (as etcd does), so two
// transmitters on it behave like two replicas.
type sharedLog struct{ *bolt.Store }

var never = make(chan struct{})

func (sharedLog) EventsChanged() <-chan struct{} { return never }

var receiver = ssf.ReceiverConfig{ID: "orders", Audience: "orders-api", SecretSHA256: sha256.Sum256([]byte("receiver-secret"))}

// replica starts another transmitter on f's store, marked shared, with the receiver credential.
func (f *fixture) replica() *ssf.Transmitter {
	f.t.Helper()
	cfg := f.cfg
	cfg.Receivers = []ssf.ReceiverConfig{receiver}
	cfg.Logger = slog.New(slog.DiscardHandler)
	tx, err := ssf.New(context.Background(), cfg, sharedLog{f.st}, f.km)
	if err != nil {
		f.t.Fatal(err)
	}
	return tx
}

// TestReplicas_StreamsAndAcknowledgementsAreShared: a stream a receiver creates at replica A
// is polled at replica B at once; what was acknowledged at B is not delivered again at A; a
// stream deleted at A answers 401 at B, and B's pending acknowledgements do not bring it back.
func TestReplicas_StreamsAndAcknowledgementsAreShared(t *testing.T) {
	f := newFixture(t)
	a, b := f.replica(), f.replica()
	ctx := context.Background()
	sc, err := a.CreateReceiverStream(ctx, receiver.ID, "process 1")
	if err != nil {
		t.Fatal(err)
	}
	id := sc.StreamID
	if err := b.Authenticate(context.Background(), id, "receiver-secret"); err != nil {
		t.Fatalf("stream created at A, authenticated at B: %v", err)
	}
	f.tx = a
	e1 := f.record("sid-1", "alice", "backchannel")
	b.Notify(e1)
	resp, err := b.Poll(ctx, id, secevent.PollRequest{ReturnImmediately: true}, 0)
	if err != nil || len(resp.Sets) != 1 {
		t.Fatalf("poll at B: %v %v", resp, err)
	}
	var jti string
	for j := range resp.Sets {
		jti = j
	}
	if _, err := b.Poll(ctx, id, secevent.PollRequest{Ack: []string{jti}, MaxEvents: intp(0)}, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	f.ck.Advance(time.Second) // past the on-demand merge interval
	if err := a.Authenticate(context.Background(), "no-such-stream", "x"); err == nil {
		t.Fatal("unknown stream authenticated")
	} // (this merged the stored streams at A)
	if resp, err := a.Poll(ctx, id, secevent.PollRequest{ReturnImmediately: true}, 0); err != nil || len(resp.Sets) != 0 {
		t.Fatalf("poll at A after the acknowledgement at B: %d SETs (%v), want none", len(resp.Sets), err)
	}

	// Delete at A; B learns it, and B's own pending acknowledgements do not resurrect it.
	e2 := f.record("sid-2", "alice", "backchannel")
	b.Notify(e2)
	resp, _ = b.Poll(ctx, id, secevent.PollRequest{ReturnImmediately: true}, 0)
	for j := range resp.Sets {
		jti = j
	}
	if _, err := b.Poll(ctx, id, secevent.PollRequest{Ack: []string{jti}, MaxEvents: intp(0)}, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteReceiverStream(ctx, receiver.ID, id); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	docs, err := f.st.Streams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := docs[id]; ok {
		t.Fatal("B's acknowledgements brought back the stream deleted at A")
	}
	f.ck.Advance(time.Second)
	if err := b.Authenticate(context.Background(), id, "receiver-secret"); err == nil {
		t.Fatal("stream deleted at A still authenticates at B")
	}
	if _, err := b.Poll(ctx, id, secevent.PollRequest{ReturnImmediately: true}, 0); err == nil {
		t.Fatal("poll of a deleted stream answered at B")
	}
}

// TestReplicas_InactivityIsJudgedOnEveryReplicasPolls: a receiver stream polled only at
// replica A is not expired by replica B.
func TestReplicas_InactivityIsJudgedOnEveryReplicasPolls(t *testing.T) {
	f := newFixture(t)
	f.cfg.InactivityTimeout = time.Minute
	a, b := f.replica(), f.replica()
	ctx := context.Background()
	sc, err := a.CreateReceiverStream(ctx, receiver.ID, "process 1")
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		f.ck.Advance(30 * time.Second)
		if _, err := a.Poll(ctx, sc.StreamID, secevent.PollRequest{ReturnImmediately: true}, 0); err != nil {
			t.Fatal(err)
		}
		if err := a.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		b.ExpireInactive(ctx)
	}
	if err := b.Authenticate(context.Background(), sc.StreamID, "receiver-secret"); err != nil {
		t.Fatalf("a stream polled every 30s at A was expired by B: %v", err)
	}
}

// countingLog is a sharedLog that counts reads of the stored streams.
type countingLog struct {
	sharedLog
	reads *atomic.Int64
}

func (c countingLog) Streams(ctx context.Context) (map[string][]byte, error) {
	c.reads.Add(1)
	return c.sharedLog.Streams(ctx)
}

// TestReplicas_HeldStreamsOnlyReadsNoStoredStreams: a credential checked under HeldStreamsOnly
// (a source whose failures spent the SSF endpoints' limit) costs no read of the stored streams,
// whatever stream id it names; the streams this replica holds still authenticate. Without it,
// an unknown stream id merges the stored streams, so a stream created at another replica a
// moment ago authenticates.
func TestReplicas_HeldStreamsOnlyReadsNoStoredStreams(t *testing.T) {
	f := newFixture(t)
	a := f.replica()
	var reads atomic.Int64
	cfg := f.cfg
	cfg.Receivers = []ssf.ReceiverConfig{receiver}
	cfg.Logger = slog.New(slog.DiscardHandler)
	b, err := ssf.New(context.Background(), cfg, countingLog{sharedLog{f.st}, &reads}, f.km)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	held, err := b.CreateReceiverStream(ctx, receiver.ID, "held at B")
	if err != nil {
		t.Fatal(err)
	}
	other, err := a.CreateReceiverStream(ctx, receiver.ID, "created at A")
	if err != nil {
		t.Fatal(err)
	}
	spent := ssf.HeldStreamsOnly(ctx)
	before := reads.Load()
	for i := range 100 {
		f.ck.Advance(time.Second)
		if err := b.Authenticate(spent, "guess-"+strconv.Itoa(i), "x"); err == nil {
			t.Fatal("a guessed stream id authenticated")
		}
		if _, err := b.StreamsFor(spent, "guess"); err == nil {
			t.Fatal("a guessed credential listed streams")
		}
	}
	if n := reads.Load() - before; n != 0 {
		t.Fatalf("200 guesses under HeldStreamsOnly read the stored streams %d times, want 0", n)
	}
	if err := b.Authenticate(spent, held.StreamID, "receiver-secret"); err != nil {
		t.Fatalf("a stream held at B, under HeldStreamsOnly: %v", err)
	}
	if err := b.Authenticate(spent, other.StreamID, "receiver-secret"); err == nil {
		t.Fatal("a stream B has not merged yet authenticated under HeldStreamsOnly")
	}
	if err := b.Authenticate(ctx, other.StreamID, "receiver-secret"); err != nil || reads.Load() == before {
		t.Fatalf("a stream created at A, at B without HeldStreamsOnly: %v (reads %d)", err, reads.Load()-before)
	}
}
