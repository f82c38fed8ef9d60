package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store"
)

// eventLogChecks are the conformance tests of the event log (store.EventLog, part of
// store.Store), run by Run. They pin, beyond the interface comments:
//
//   - Seq starts at 1 and has no gaps when appends do not fail.
//   - RecordRevocation rejects an event whose revocation has neither SID nor Sub (and one
//     whose ID is empty), appending nothing; a key event (KeyRevoked) is appended in Seq
//     order with the others and records no revocation, and one that also carries a
//     revocation is rejected.
//   - Events with after at or beyond the newest Seq, or limit ≤ 0, return no events.
//   - Stream documents are returned as copies; PutStreams with an empty id is rejected.
//   - Cancelled contexts and closed stores fail as in Run.
var eventLogChecks = []check[store.Store]{
	{"RecordRevocationStoresBoth", testRecordStoresBoth},
	{"RecordRevocationMergesLikeRevoke", testRecordMerges},
	{"KeyEventIsOnlyAppended", testKeyEvent},
	{"SeqOrderedFromOne", testSeqOrdered},
	{"EventsAfterAndLimit", testEventsAfterAndLimit},
	{"ConcurrentAppendsGetDistinctSeqs", testConcurrentAppends},
	{"InvalidEventWritesNothing", testInvalidEventWritesNothing},
	{"TrimKeepsSeq", testTrimKeepsSeq},
	{"StreamDocuments", testStreamDocuments},
	{"UpdateStreamsNeverResurrects", testUpdateStreams},
	{"RecordNewRevocationSkipsCovered", testRecordNewSkipsCovered},
	{"ConcurrentRecordNewAppendsOnce", testConcurrentRecordNew},
	{"ReceiverStreamDocument", testReceiverStream},
	{"EventLogCancelledContext", testEventLogCancelled},
	{"EventLogClosedIsUnavailable", testEventLogClosed},
}

// eventLogDurable checks that events, the sequence counter and stream documents survive
// Close and a reopen; open has RunDurable's contract.
func eventLogDurable(t *testing.T, open func(t *testing.T, loc string) store.Store) {
	t.Helper()
	t.Run("EventLogSurvivesReopen", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		now := clock()
		loc := t.TempDir()

		s := open(t, loc)
		for i := range 3 {
			mustEvent(t, s, event(fmt.Sprint("sid-", i), "alice", now.Add(time.Duration(i)*time.Second)))
		}
		mustNil(t, s.PutStreams(ctx, map[string][]byte{"orders": []byte("doc-orders")}))
		mustNil(t, s.PutReceiverStream(ctx, []byte(`{"stream_id":"kc-1"}`)))
		n, err := s.TrimEvents(ctx, now.Add(time.Second)) // removes seq 1
		mustNil(t, err)
		if n != 1 {
			t.Fatalf("TrimEvents removed %d, want 1", n)
		}
		mustNil(t, s.Close())

		s = open(t, loc)
		t.Cleanup(func() { _ = s.Close() })
		checkSeqs(t, s, 0, 100, 2, 3)
		checkLastSeq(t, s, 3)
		got, err := s.Streams(ctx)
		mustNil(t, err)
		if string(got["orders"]) != "doc-orders" || len(got) != 1 {
			t.Errorf("Streams after reopen = %q", got)
		}
		if doc, err := s.ReceiverStream(ctx); err != nil || string(doc) != `{"stream_id":"kc-1"}` {
			t.Errorf("ReceiverStream after reopen = %q, %v", doc, err)
		}
		rev, err := s.SessionRevocation(ctx, "sid-2")
		mustNil(t, err)
		if rev.Sub != "alice" {
			t.Errorf("revocation after reopen = %+v", rev)
		}
		// The counter is durable: trimming everything and reopening never reuses a Seq.
		_, err = s.TrimEvents(ctx, now.Add(time.Hour))
		mustNil(t, err)
		mustNil(t, s.Close())
		s = open(t, loc)
		t.Cleanup(func() { _ = s.Close() })
		checkLastSeq(t, s, 3)
		e := mustEvent(t, s, event("sid-new", "bob", now))
		if e.Seq != 4 {
			t.Errorf("first Seq after trimming all and reopening = %d, want 4", e.Seq)
		}
	})
}

var eventIDs sync.Map

// event returns a session event (subject-wide when sid is empty) with a fresh ID.
func event(sid, sub string, at time.Time) store.Event {
	id := fmt.Sprintf("ev-%s-%s-%d", sid, sub, at.UnixNano())
	for {
		if _, dup := eventIDs.LoadOrStore(id, true); !dup {
			break
		}
		id += "+"
	}
	return store.Event{ID: id, Time: at, Revocation: store.Revocation{
		SID: sid, Sub: sub, At: at, Expires: at.Add(time.Hour), Reason: "backchannel",
	}}
}

func mustEvent(t *testing.T, s store.Store, e store.Event) store.Event {
	t.Helper()
	got, err := s.RecordRevocation(context.Background(), e)
	mustNil(t, err)
	if got.ID != e.ID || !got.Time.Equal(e.Time) || got.Seq == 0 {
		t.Fatalf("RecordRevocation = %+v, want %+v with a Seq", got, e)
	}
	return got
}

func checkSeqs(t *testing.T, s store.Store, after uint64, limit int, want ...uint64) []store.Event {
	t.Helper()
	evs, err := s.Events(context.Background(), after, limit)
	mustNil(t, err)
	var got []uint64
	for _, e := range evs {
		got = append(got, e.Seq)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Events(after %d, limit %d) seqs = %v, want %v", after, limit, got, want)
	}
	return evs
}

func checkLastSeq(t *testing.T, s store.Store, want uint64) {
	t.Helper()
	got, err := s.LastEventSeq(context.Background())
	mustNil(t, err)
	if got != want {
		t.Errorf("LastEventSeq = %d, want %d", got, want)
	}
}

func testRecordStoresBoth(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	sess := mustEvent(t, s, event("sid-1", "alice", now))
	subj := mustEvent(t, s, event("", "bob", now))

	got, err := s.SessionRevocation(ctx, "sid-1")
	mustNil(t, err)
	checkRevocation(t, got, sess.Revocation)
	got, err = s.SubjectRevocation(ctx, "bob")
	mustNil(t, err)
	checkRevocation(t, got, subj.Revocation)
	checkNotFound(t, "subject of a session event", func() error { _, err := s.SubjectRevocation(ctx, "alice"); return err })
	checkStats(t, s, store.Stats{Sessions: 1, Subjects: 1})

	evs := checkSeqs(t, s, 0, 10, 1, 2)
	for i, want := range []store.Event{sess, subj} {
		if len(evs) <= i {
			break
		}
		e := evs[i]
		if e.ID != want.ID || !e.Time.Equal(want.Time) || e.Seq != want.Seq {
			t.Errorf("event %d = %+v, want %+v", i, e, want)
		}
		checkRevocation(t, e.Revocation, want.Revocation)
	}
	// The log keeps each revocation as recorded; GC of revocations leaves events alone.
	checkGC(t, s, now.Add(2*time.Hour), 2)
	checkSeqs(t, s, 0, 10, 1, 2)
}

func testRecordMerges(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := clock()
	first := event("sid-1", "alice", t0)
	mustEvent(t, s, first)
	again := event("sid-1", "alice", t0.Add(time.Minute))
	again.Revocation.Expires = t0.Add(3 * time.Hour)
	mustEvent(t, s, again)
	got, err := s.SessionRevocation(ctx, "sid-1")
	mustNil(t, err)
	if !got.At.Equal(t0) || !got.Expires.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("session recorded twice: At=%v Expires=%v, want the earliest At and latest Expires", got.At, got.Expires)
	}
	// Each recording is its own event, with the revocation as recorded.
	evs := checkSeqs(t, s, 0, 10, 1, 2)
	if len(evs) == 2 && !evs[1].Revocation.At.Equal(t0.Add(time.Minute)) {
		t.Errorf("second event's revocation At = %v, want as recorded", evs[1].Revocation.At)
	}
	// Same for subjects: latest At wins in the record.
	mustEvent(t, s, event("", "bob", t0))
	mustEvent(t, s, event("", "bob", t0.Add(time.Minute)))
	got, err = s.SubjectRevocation(ctx, "bob")
	mustNil(t, err)
	if !got.At.Equal(t0.Add(time.Minute)) {
		t.Errorf("subject recorded twice: At=%v, want the latest", got.At)
	}
	// An earlier-dated logout of the session, recorded later, moves its At back.
	mustNil(t, Revoke(ctx, s, store.Revocation{SID: "sid-1", At: t0.Add(-time.Minute), Expires: t0}))
	got, err = s.SessionRevocation(ctx, "sid-1")
	mustNil(t, err)
	if !got.At.Equal(t0.Add(-time.Minute)) {
		t.Errorf("an earlier-dated logout recorded later did not merge: At=%v", got.At)
	}
	checkLastSeq(t, s, 5)
}

func testSeqOrdered(t *testing.T, s store.Store) {
	now := clock()
	checkLastSeq(t, s, 0)
	checkSeqs(t, s, 0, 10)
	for i := range 5 {
		e := mustEvent(t, s, event(fmt.Sprint("sid-", i), "", now))
		if e.Seq != uint64(i+1) {
			t.Errorf("append %d got Seq %d, want %d", i, e.Seq, i+1)
		}
	}
	checkLastSeq(t, s, 5)
}

func testEventsAfterAndLimit(t *testing.T, s store.Store) {
	now := clock()
	for i := range 10 {
		mustEvent(t, s, event(fmt.Sprint("sid-", i), "alice", now))
	}
	checkSeqs(t, s, 0, 3, 1, 2, 3)
	checkSeqs(t, s, 3, 3, 4, 5, 6)
	checkSeqs(t, s, 8, 100, 9, 10)
	checkSeqs(t, s, 10, 100)
	checkSeqs(t, s, 1000, 100)
	checkSeqs(t, s, 0, 0)
	checkSeqs(t, s, 0, -1)
}

func testConcurrentAppends(t *testing.T, s store.Store) {
	const n = 40
	now := clock()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seqs = map[uint64]string{}
	)
	for i := range n {
		wg.Go(func() {
			e, err := s.RecordRevocation(context.Background(), event(fmt.Sprint("sid-", i), "", now))
			if err != nil {
				t.Errorf("RecordRevocation %d: %v", i, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if other, dup := seqs[e.Seq]; dup {
				t.Errorf("Seq %d given to %s and %s", e.Seq, other, e.ID)
			}
			seqs[e.Seq] = e.ID
		})
	}
	wg.Wait()
	evs, err := s.Events(context.Background(), 0, 2*n)
	mustNil(t, err)
	if len(evs) != n {
		t.Fatalf("%d concurrent appends left %d events", n, len(evs))
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) || seqs[e.Seq] != e.ID {
			t.Errorf("event %d: Seq %d ID %s, appender saw ID %s", i, e.Seq, e.ID, seqs[e.Seq])
		}
	}
}

func testKeyEvent(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	mustEvent(t, s, event("sid-1", "alice", now))
	key := mustEvent(t, s, store.Event{ID: "ev-key-" + fmt.Sprint(now.UnixNano()), Time: now, KeyRevoked: "kid-1"})
	mustEvent(t, s, event("", "bob", now))
	evs := checkSeqs(t, s, 0, 10, 1, 2, 3)
	if len(evs) == 3 && (evs[1].KeyRevoked != "kid-1" || evs[1].ID != key.ID || evs[1].Revocation != (store.Revocation{})) {
		t.Errorf("key event read back as %+v", evs[1])
	}
	checkStats(t, s, store.Stats{Sessions: 1, Subjects: 1})
	both := event("sid-2", "carol", now)
	both.KeyRevoked = "kid-2"
	if _, err := s.RecordRevocation(ctx, both); err == nil {
		t.Error("a key event carrying a revocation was accepted")
	}
	checkLastSeq(t, s, 3)
}

func testInvalidEventWritesNothing(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	noSubject := event("", "", now)
	noID := event("sid-1", "alice", now)
	noID.ID = ""
	for name, e := range map[string]store.Event{"neither sid nor sub": noSubject, "empty id": noID} {
		if _, err := s.RecordRevocation(ctx, e); err == nil {
			t.Errorf("RecordRevocation with %s succeeded", name)
		}
	}
	checkLastSeq(t, s, 0)
	checkSeqs(t, s, 0, 10)
	checkStats(t, s, store.Stats{})
}

func testTrimKeepsSeq(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := clock()
	for i := range 4 {
		mustEvent(t, s, event(fmt.Sprint("sid-", i), "", t0.Add(time.Duration(i)*time.Minute)))
	}
	n, err := s.TrimEvents(ctx, t0.Add(2*time.Minute))
	mustNil(t, err)
	if n != 2 {
		t.Errorf("TrimEvents removed %d, want 2 (strictly before the cutoff)", n)
	}
	checkSeqs(t, s, 0, 10, 3, 4)
	n, err = s.TrimEvents(ctx, t0.Add(2*time.Minute))
	mustNil(t, err)
	if n != 0 {
		t.Errorf("second TrimEvents removed %d, want 0", n)
	}
	// Revocations stay: trimming the log is not GC.
	if _, err := s.SessionRevocation(ctx, "sid-0"); err != nil {
		t.Errorf("TrimEvents removed the revocation: %v", err)
	}
	_, err = s.TrimEvents(ctx, t0.Add(time.Hour))
	mustNil(t, err)
	checkSeqs(t, s, 0, 10)
	checkLastSeq(t, s, 4)
	if e := mustEvent(t, s, event("sid-x", "", t0)); e.Seq != 5 {
		t.Errorf("Seq after trimming everything = %d, want 5", e.Seq)
	}
}

func testStreamDocuments(t *testing.T, s store.Store) {
	ctx := context.Background()
	got, err := s.Streams(ctx)
	mustNil(t, err)
	if len(got) != 0 {
		t.Errorf("Streams of an empty store = %q", got)
	}
	doc := []byte("doc-a")
	mustNil(t, s.PutStreams(ctx, map[string][]byte{"a": doc, "b": []byte("doc-b")}))
	doc[0] = 'X' // the store kept its own copy
	mustNil(t, s.PutStreams(ctx, map[string][]byte{"b": []byte("doc-b2")}))
	got, err = s.Streams(ctx)
	mustNil(t, err)
	if len(got) != 2 || string(got["a"]) != "doc-a" || string(got["b"]) != "doc-b2" {
		t.Errorf("Streams = %q, want a=doc-a b=doc-b2", got)
	}
	got["a"][0] = 'Y'
	again, err := s.Streams(ctx)
	mustNil(t, err)
	if !bytes.Equal(again["a"], []byte("doc-a")) {
		t.Errorf("Streams returned the store's own memory: %q", again["a"])
	}
	mustNil(t, s.DeleteStream(ctx, "a"))
	mustNil(t, s.DeleteStream(ctx, "a"))
	mustNil(t, s.DeleteStream(ctx, "never"))
	got, err = s.Streams(ctx)
	mustNil(t, err)
	if len(got) != 1 || got["a"] != nil {
		t.Errorf("Streams after delete = %q", got)
	}
	if err := s.PutStreams(ctx, map[string][]byte{"": []byte("x")}); err == nil {
		t.Error("PutStreams with an empty id succeeded")
	}
}

// eventLogCalls returns one call of every context-taking EventLog method.
func eventLogCalls(ctx context.Context, s store.Store, now time.Time) map[string]func() error {
	return map[string]func() error{
		"RecordRevocation": func() error { _, err := s.RecordRevocation(ctx, event("sid-1", "alice", now)); return err },
		"Events":           func() error { _, err := s.Events(ctx, 0, 10); return err },
		"LastEventSeq":     func() error { _, err := s.LastEventSeq(ctx); return err },
		"TrimEvents":       func() error { _, err := s.TrimEvents(ctx, now.Add(time.Hour)); return err },
		"Streams":          func() error { _, err := s.Streams(ctx); return err },
		"PutStreams":       func() error { return s.PutStreams(ctx, map[string][]byte{"a": []byte("x")}) },
		"UpdateStreams":    func() error { _, err := s.UpdateStreams(ctx, map[string][]byte{"a": []byte("x")}); return err },
		"DeleteStream":     func() error { return s.DeleteStream(ctx, "a") },
		"RecordNewRevocation": func() error {
			_, _, err := s.RecordNewRevocation(ctx, event("sid-2", "alice", now))
			return err
		},
		"RecordKeyRevocation": func() error {
			_, err := s.RecordKeyRevocation(ctx, keyEvent("k1", now), func(cur []byte) ([]byte, error) { return cur, nil })
			return err
		},
		"ReceiverStream":    func() error { _, err := s.ReceiverStream(ctx); return err },
		"PutReceiverStream": func() error { return s.PutReceiverStream(ctx, []byte("x")) },
	}
}

func testUpdateStreams(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustNil(t, s.PutStreams(ctx, map[string][]byte{"a": []byte("a1"), "b": []byte("b1")}))
	mustNil(t, s.DeleteStream(ctx, "b"))
	skipped, err := s.UpdateStreams(ctx, map[string][]byte{"a": []byte("a2"), "b": []byte("b2"), "c": []byte("c2")})
	mustNil(t, err)
	slices.Sort(skipped)
	if fmt.Sprint(skipped) != "[b c]" {
		t.Errorf("UpdateStreams skipped %v, want [b c]", skipped)
	}
	got, err := s.Streams(ctx)
	mustNil(t, err)
	if len(got) != 1 || string(got["a"]) != "a2" {
		t.Errorf("streams after UpdateStreams = %q, want only a=a2 (a deleted stream stays deleted)", got)
	}
	if skipped, err := s.UpdateStreams(ctx, map[string][]byte{"a": []byte("a3")}); err != nil || len(skipped) != 0 {
		t.Errorf("UpdateStreams of a stored stream: skipped %v, %v", skipped, err)
	}
}

func testEventLogCancelled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for name, call := range eventLogCalls(ctx, s, clock()) {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, context.Canceled) {
				t.Errorf("%s with cancelled context = %v, want an error wrapping context.Canceled", name, err)
			}
		})
	}
	checkLastSeq(t, s, 0)
	checkStats(t, s, store.Stats{})
	got, err := s.Streams(context.Background())
	mustNil(t, err)
	if len(got) != 0 {
		t.Errorf("cancelled PutStreams wrote %q", got)
	}
}

func testEventLogClosed(t *testing.T, s store.Store) {
	now := clock()
	mustEvent(t, s, event("sid-0", "alice", now))
	mustNil(t, s.Close())
	for name, call := range eventLogCalls(context.Background(), s, now) {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s after Close = %v, want an error wrapping store.ErrUnavailable", name, err)
			}
		})
	}
}

// testRecordNewSkipsCovered pins RecordNewRevocation: a session on record, or a subject on
// record as of the same or a later time, is not recorded again and appends no event; a later
// subject-wide logout is.
func testRecordNewSkipsCovered(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	recordNew := func(e store.Event, want bool) {
		t.Helper()
		got, o, err := s.RecordNewRevocation(ctx, e)
		mustNil(t, err)
		ok := o == store.Recorded
		if ok != want || (ok && got.Seq == 0) || (!ok && (got.Seq != 0 || o != store.Covered)) {
			t.Fatalf("RecordNewRevocation(%+v) = %+v, %v; want recorded=%v (else covered)", e.Revocation, got, o, want)
		}
	}
	recordNew(event("sid-1", "alice", now), true)
	recordNew(event("sid-1", "alice", now.Add(time.Second)), false) // the other channel, later
	recordNew(event("sid-1", "", now.Add(-time.Second)), false)     // or earlier: the session is refused already
	recordNew(event("", "bob", now), true)
	recordNew(event("", "bob", now.Add(-time.Minute)), false) // covered by the later At on record
	recordNew(event("", "bob", now), false)
	recordNew(event("", "bob", now.Add(time.Minute)), true) // a later logout refuses more
	checkSeqs(t, s, 0, 10, 1, 2, 3)
	got, err := s.SubjectRevocation(ctx, "bob")
	mustNil(t, err)
	if !got.At.Equal(now.Add(time.Minute)) {
		t.Errorf("bob's At = %v, want %v", got.At, now.Add(time.Minute))
	}
	if _, _, err := s.RecordNewRevocation(ctx, store.Event{ID: "x"}); err == nil {
		t.Error("RecordNewRevocation without sid or sub succeeded")
	}
	checkLastSeq(t, s, 3)
}

// testConcurrentRecordNew checks the check and the write are one transaction: the same logout
// recorded by many callers at once appends exactly one event.
func testConcurrentRecordNew(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, o, err := s.RecordNewRevocation(ctx, event("sid-race", "alice", now))
			if err != nil {
				t.Error(err)
			}
			if o == store.Recorded {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d concurrent RecordNewRevocation calls recorded, want 1", wins)
	}
	checkSeqs(t, s, 0, 10, 1)
}

// testReceiverStream pins the receiver's stream document: not found at first, replaced by Put,
// returned as a copy, deleted by an empty Put.
func testReceiverStream(t *testing.T, s store.Store) {
	ctx := context.Background()
	checkNotFound(t, "receiver stream before any put", func() error { _, err := s.ReceiverStream(ctx); return err })
	doc := []byte(`{"stream_id":"a"}`)
	mustNil(t, s.PutReceiverStream(ctx, doc))
	doc[2] = 'X' // the store must have kept its own copy
	got, err := s.ReceiverStream(ctx)
	mustNil(t, err)
	if string(got) != `{"stream_id":"a"}` {
		t.Fatalf("ReceiverStream = %q", got)
	}
	got[0] = 'Y'
	mustNil(t, s.PutReceiverStream(ctx, []byte(`{"stream_id":"b"}`)))
	if got, err = s.ReceiverStream(ctx); err != nil || string(got) != `{"stream_id":"b"}` {
		t.Fatalf("ReceiverStream after replace = %q, %v", got, err)
	}
	mustNil(t, s.PutReceiverStream(ctx, nil))
	checkNotFound(t, "receiver stream after delete", func() error { _, err := s.ReceiverStream(ctx); return err })
	// It is not a stream of tokengate's own transmitter.
	streams, err := s.Streams(ctx)
	mustNil(t, err)
	if len(streams) != 0 {
		t.Errorf("Streams = %q, want none", streams)
	}
}
