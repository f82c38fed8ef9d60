package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store"
)

// writeChecks are the conformance tests of the writes that carry more than a revocation, run by
// Run: RecordNewRevocation with a Claim (the jti of the Security Event Token or back-channel
// logout token that carried the logout) and RecordKeyRevocation (the key document and the key event). They pin that each is
// one transaction: what fails, or is refused, leaves neither part behind.
var writeChecks = []check[store.Store]{
	{"ClaimAndRecordAreOneWrite", testClaimWithRecord},
	{"ClaimedJTIReplayWritesNothing", testClaimReplayWritesNothing},
	{"CoveredRevocationStillClaims", testClaimCovered},
	{"FailedClaimedWriteLeavesNeither", testClaimFailedLeavesNeither},
	{"ExpiredClaimIsClaimedAgainWithTheRecord", testClaimExpiredAgain},
	{"ConcurrentClaimsOneRecord", testClaimConcurrent},
	{"BackchannelLogoutClaimIsOneWrite", testClaimBackchannel},
	{"RecordRevocationRefusesAClaim", testRecordRevocationRefusesClaim},
	{"KeyRevocationWritesDocumentAndEvent", testKeyRevocationBoth},
	{"FailedKeyRevocationLeavesNeither", testKeyRevocationFailedLeavesNeither},
}

// claimed returns e with a claim of jti for an hour.
func claimed(e store.Event, jti string) store.Event {
	e.Claim = store.Claim{JTI: jti, Expires: e.Time.Add(time.Hour)}
	return e
}

func recordNew(t *testing.T, s store.Store, e store.Event, want store.Outcome) store.Event {
	t.Helper()
	got, o, err := s.RecordNewRevocation(context.Background(), e)
	mustNil(t, err)
	if o != want {
		t.Fatalf("RecordNewRevocation(%s, claim %q) = %v, want %v", e.ID, e.Claim.JTI, o, want)
	}
	if (o == store.Recorded) != (got.Seq != 0) {
		t.Fatalf("RecordNewRevocation(%s) = %v with event Seq %d", e.ID, o, got.Seq)
	}
	return got
}

func testClaimWithRecord(t *testing.T, s store.Store) {
	now := clock()
	got := recordNew(t, s, claimed(event("sid-1", "alice", now), "set-1"), store.Recorded)
	if got.Seq != 1 {
		t.Errorf("event Seq = %d, want 1", got.Seq)
	}
	rev, err := s.SessionRevocation(context.Background(), "sid-1")
	mustNil(t, err)
	checkRevocation(t, rev, event("sid-1", "alice", now).Revocation)
	mustClaim(t, s, "set-1", now.Add(time.Hour), false) // claimed by the record
	evs := checkSeqs(t, s, 0, 10, 1)
	if len(evs) == 1 && evs[0].Claim != (store.Claim{}) {
		t.Errorf("Events returned the claim %+v; it is not part of the log", evs[0].Claim)
	}
}

func testClaimReplayWritesNothing(t *testing.T, s store.Store) {
	now := clock()
	recordNew(t, s, claimed(event("sid-1", "alice", now), "set-1"), store.Recorded)
	// The same jti again, carrying a logout that is not on record: refused as a replay, and
	// nothing of it is written.
	recordNew(t, s, claimed(event("sid-2", "bob", now), "set-1"), store.Replayed)
	recordNew(t, s, claimed(event("", "bob", now), "set-1"), store.Replayed)
	checkNotFound(t, "session of the replayed jti", func() error { _, err := s.SessionRevocation(context.Background(), "sid-2"); return err })
	checkNotFound(t, "subject of the replayed jti", func() error { _, err := s.SubjectRevocation(context.Background(), "bob"); return err })
	checkSeqs(t, s, 0, 10, 1)
	checkStats(t, s, store.Stats{Sessions: 1, JTIs: 1})
}

func testClaimCovered(t *testing.T, s store.Store) {
	now := clock()
	recordNew(t, s, event("sid-1", "alice", now), store.Recorded) // the other channel was first
	recordNew(t, s, claimed(event("sid-1", "alice", now.Add(time.Second)), "set-1"), store.Covered)
	mustClaim(t, s, "set-1", now.Add(time.Hour), false) // claimed although nothing new was recorded
	checkSeqs(t, s, 0, 10, 1)
	// Delivered again: a replay, still nothing written.
	recordNew(t, s, claimed(event("sid-1", "alice", now.Add(2*time.Second)), "set-1"), store.Replayed)
	checkSeqs(t, s, 0, 10, 1)
}

func testClaimFailedLeavesNeither(t *testing.T, s store.Store) {
	now := clock()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.RecordNewRevocation(cancelled, claimed(event("sid-1", "alice", now), "set-1")); !errors.Is(err, context.Canceled) {
		t.Errorf("RecordNewRevocation with a cancelled context = %v, want context.Canceled", err)
	}
	bad := claimed(event("", "", now), "set-2") // names neither sid nor sub
	if _, _, err := s.RecordNewRevocation(context.Background(), bad); err == nil {
		t.Error("RecordNewRevocation of an invalid event with a claim succeeded")
	}
	noID := claimed(event("sid-3", "alice", now), "set-3")
	noID.ID = ""
	if _, _, err := s.RecordNewRevocation(context.Background(), noID); err == nil {
		t.Error("RecordNewRevocation of an event without ID succeeded")
	}
	checkNotFound(t, "session of the failed write", func() error { _, err := s.SessionRevocation(context.Background(), "sid-1"); return err })
	checkNotFound(t, "session of the event without ID", func() error { _, err := s.SessionRevocation(context.Background(), "sid-3"); return err })
	checkSeqs(t, s, 0, 10)
	checkStats(t, s, store.Stats{})
	// None of the jtis was claimed: the SET comes again and is recorded then.
	recordNew(t, s, claimed(event("sid-1", "alice", now), "set-1"), store.Recorded)
	mustClaim(t, s, "set-2", now.Add(time.Hour), true)
	mustClaim(t, s, "set-3", now.Add(time.Hour), true)
}

func testClaimExpiredAgain(t *testing.T, s store.Store) {
	now := clock()
	first := event("sid-1", "alice", now)
	first.Claim = store.Claim{JTI: "set-1", Expires: now.Add(-time.Second)} // expired as written
	recordNew(t, s, first, store.Recorded)
	recordNew(t, s, claimed(event("sid-2", "alice", now), "set-1"), store.Recorded)
	recordNew(t, s, claimed(event("sid-3", "alice", now), "set-1"), store.Replayed)
	checkSeqs(t, s, 0, 10, 1, 2)
}

func testClaimConcurrent(t *testing.T, s store.Store) {
	now := clock()
	const n = 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		recorded int
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, o, err := s.RecordNewRevocation(context.Background(), claimed(event(fmt.Sprint("sid-", i), "alice", now), "set-1"))
			if err != nil {
				t.Errorf("RecordNewRevocation %d: %v", i, err)
			} else if o != store.Recorded && o != store.Replayed {
				t.Errorf("RecordNewRevocation %d = %v, want recorded or replayed", i, o)
			}
			if o == store.Recorded {
				mu.Lock()
				recorded++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if recorded != 1 {
		t.Fatalf("%d writes claiming one jti recorded, want 1", recorded)
	}
	checkSeqs(t, s, 0, 10, 1)
	checkStats(t, s, store.Stats{Sessions: 1, JTIs: 1})
}

// testClaimBackchannel pins the write of a back-channel logout as the issuer makes it: a
// subject-wide or session logout with the logout token's jti, one transaction whose Outcome
// tells a replay (nothing written) from a logout the other channel recorded first (only the
// claim written). A write that fails leaves neither the claim nor the logout.
func testClaimBackchannel(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	logout := func(sid, sub, jti string, at time.Time) store.Event {
		e := event(sid, sub, at)
		e.Claim = store.Claim{JTI: jti, Expires: now.Add(5 * time.Minute)}
		return e
	}
	// A write that fails (a context cancelled, as a store past its write timeout) leaves neither.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, o, err := s.RecordNewRevocation(cancelled, logout("", "carol", "lt-1", now)); err == nil || o != 0 {
		t.Fatalf("RecordNewRevocation with a cancelled context = %v, %v; want an error", o, err)
	}
	checkNotFound(t, "subject of the failed write", func() error { _, err := s.SubjectRevocation(ctx, "carol"); return err })
	checkStats(t, s, store.Stats{})
	checkSeqs(t, s, 0, 10)

	// Its retry records both; the same token again is a replay and writes nothing, whatever
	// logout it carries.
	recordNew(t, s, logout("", "carol", "lt-1", now), store.Recorded)
	recordNew(t, s, logout("", "carol", "lt-1", now), store.Replayed)
	recordNew(t, s, logout("", "carol", "lt-1", now.Add(time.Minute)), store.Replayed) // not even a later logout
	recordNew(t, s, logout("sid-dave", "dave", "lt-1", now), store.Replayed)
	checkNotFound(t, "session of the replayed token", func() error { _, err := s.SessionRevocation(ctx, "sid-dave"); return err })
	got, err := s.SubjectRevocation(ctx, "carol")
	mustNil(t, err)
	if !got.At.Equal(now) {
		t.Errorf("carol's At = %v, want %v (the replay wrote nothing)", got.At, now)
	}
	checkStats(t, s, store.Stats{Subjects: 1, JTIs: 1})
	checkSeqs(t, s, 0, 10, 1)

	// A logout another channel recorded first: its token's jti is claimed, no event appended.
	recordNew(t, s, event("sid-erin", "erin", now), store.Recorded) // Keycloak's Shared Signals stream
	recordNew(t, s, logout("sid-erin", "erin", "lt-2", now.Add(time.Second)), store.Covered)
	recordNew(t, s, logout("sid-erin", "erin", "lt-2", now.Add(time.Second)), store.Replayed)
	recordNew(t, s, logout("", "carol", "lt-3", now.Add(-time.Second)), store.Covered) // an older subject-wide one
	checkStats(t, s, store.Stats{Sessions: 1, Subjects: 1, JTIs: 3})
	checkSeqs(t, s, 0, 10, 1, 2)
}

func testRecordRevocationRefusesClaim(t *testing.T, s store.Store) {
	now := clock()
	if _, err := s.RecordRevocation(context.Background(), claimed(event("sid-1", "alice", now), "set-1")); !errors.Is(err, store.ErrClaimNeedsNew) {
		t.Errorf("RecordRevocation with a claim = %v, want store.ErrClaimNeedsNew", err)
	}
	checkSeqs(t, s, 0, 10)
	mustClaim(t, s, "set-1", now.Add(time.Hour), true)
}

func keyEvent(kid string, at time.Time) store.Event {
	return store.Event{ID: "key-" + kid + fmt.Sprint("-", at.UnixNano()), Time: at, KeyRevoked: kid}
}

func testKeyRevocationBoth(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	mustNil(t, s.UpdateKeys(ctx, func([]byte) ([]byte, error) { return []byte("doc-1"), nil }))
	mustEvent(t, s, event("sid-1", "alice", now))
	got, err := s.RecordKeyRevocation(ctx, keyEvent("k1", now), func(cur []byte) ([]byte, error) {
		if string(cur) != "doc-1" {
			t.Errorf("RecordKeyRevocation: current = %q, want doc-1", cur)
		}
		return []byte("doc-2"), nil
	})
	mustNil(t, err)
	if got.Seq != 2 || got.KeyRevoked != "k1" {
		t.Errorf("RecordKeyRevocation = %+v, want Seq 2 for k1", got)
	}
	checkKeys(t, s, "doc-2")
	evs := checkSeqs(t, s, 0, 10, 1, 2)
	if len(evs) == 2 && (evs[1].KeyRevoked != "k1" || evs[1].Revocation != (store.Revocation{})) {
		t.Errorf("key event = %+v", evs[1])
	}
	if _, err := s.RecordKeyRevocation(ctx, event("sid-2", "alice", now), func(cur []byte) ([]byte, error) {
		t.Error("update ran for an event that is not a key event")
		return cur, nil
	}); err == nil {
		t.Error("RecordKeyRevocation of a logout event succeeded")
	}
	checkKeys(t, s, "doc-2")
	checkSeqs(t, s, 0, 10, 1, 2)
}

func testKeyRevocationFailedLeavesNeither(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	mustNil(t, s.UpdateKeys(ctx, func([]byte) ([]byte, error) { return []byte("doc-1"), nil }))
	boom := errors.New("no such key")
	if _, err := s.RecordKeyRevocation(ctx, keyEvent("k1", now), func([]byte) ([]byte, error) { return []byte("half"), boom }); !errors.Is(err, boom) {
		t.Fatalf("RecordKeyRevocation with a failing update = %v, want it to wrap the update's error", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.RecordKeyRevocation(cancelled, keyEvent("k2", now), func([]byte) ([]byte, error) { return []byte("half"), nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("RecordKeyRevocation with a cancelled context = %v, want context.Canceled", err)
	}
	checkKeys(t, s, "doc-1")
	checkSeqs(t, s, 0, 10)
	checkLastSeq(t, s, 0)
}
