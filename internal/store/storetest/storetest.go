// Package storetest is the conformance suite every store.Store backend must pass, its event log
// included.
//
// A backend's tests call Run with a constructor for fresh, empty stores, and RunDurable with a
// constructor that reopens a store at a given location. The suite pins these choices where the
// store.Store contract leaves room:
//
//   - Lookups do not consult the clock: a revocation whose Expires has passed is still returned
//     until GC removes it. Callers compare Expires themselves if they care; an expired
//     revocation can no longer stop a live token, so returning it is harmless.
//   - A jti claim (RecordNewRevocation with a Claim) does consult the clock: a claim whose
//     expiry is not after now may be claimed again, whether or not GC has run.
//   - GC removes records whose Expires is strictly before the given time.
//   - Empty SIDs, subjects and jtis are rejected with an error and nothing is stored.
//   - A call with an already cancelled context fails with an error wrapping the context's
//     error and writes nothing.
//   - Every call after Close fails with an error wrapping store.ErrUnavailable. A second Close
//     must not panic; its error is not checked.
//   - Times round-trip exactly (compared with time.Time.Equal).
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store"
)

// Run runs the conformance suite. open must return a fresh, empty store for the given test; Run
// closes it when the test ends (open may register its own cleanups, e.g. t.TempDir). Subtests
// run in parallel, each on its own store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	runCases(t, open, []check[store.Store]{
		{"RevokeSessionThenLookup", testRevokeSessionThenLookup},
		{"RevokeSubjectThenLookup", testRevokeSubjectThenLookup},
		{"UnknownIsNotFound", testUnknownIsNotFound},
		{"RevokeAgainMerges", testRevokeAgainMerges},
		{"ClaimJTIOnceThenReplay", testClaimJTIOnceThenReplay},
		{"ClaimJTIExpiredIsClaimableAgain", testClaimJTIExpiredIsClaimableAgain},
		{"ClaimJTIConcurrentOneWinner", testClaimJTIConcurrentOneWinner},
		{"UpdateKeysSeesPreviousDocument", testUpdateKeysSeesPreviousDocument},
		{"UpdateKeysErrorWritesNothing", testUpdateKeysErrorWritesNothing},
		{"KeysAreCopies", testKeysAreCopies},
		{"UpdateKeysConcurrentSerialised", testUpdateKeysConcurrentSerialised},
		{"GCRemovesOnlyExpired", testGCRemovesOnlyExpired},
		{"GCFollowsLatestExpiry", testGCFollowsLatestExpiry},
		{"ExpiredVisibleUntilGC", testExpiredVisibleUntilGC},
		{"StatsCountsRecords", testStatsCountsRecords},
		{"EmptyIDsRejected", testEmptyIDsRejected},
		{"CancelledContext", testCancelledContext},
		{"ClosedIsUnavailable", testClosedIsUnavailable},
	})
	runCases(t, open, eventLogChecks)
	runCases(t, open, writeChecks)
}

// check is one conformance test, run on a fresh store of type S.
type check[S any] struct {
	name string
	run  func(t *testing.T, s S)
}

// runCases runs every check as a parallel subtest on its own store from open, closed when the
// subtest ends.
func runCases[S interface{ Close() error }](t *testing.T, open func(t *testing.T) S, checks []check[S]) {
	t.Helper()
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			c.run(t, s)
		})
	}
}

// RunDurable checks that committed data survives Close and a reopen. open must return a store
// backed by loc: two calls with the same loc (the first store closed in between) see the same
// data. loc is a fresh directory from t.TempDir(); a backend without files may use it as a
// unique namespace (for example a key prefix). RunDurable closes every store it opens.
func RunDurable(t *testing.T, open func(t *testing.T, loc string) store.Store) {
	t.Helper()
	eventLogDurable(t, open)
	t.Run("SurvivesReopen", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		now := clock()
		loc := t.TempDir()

		s := open(t, loc)
		sess := store.Revocation{SID: "sid-1", Sub: "alice", At: now, Expires: now.Add(time.Hour), Reason: "backchannel"}
		subj := store.Revocation{Sub: "bob", At: now, Expires: now.Add(time.Hour), Reason: "admin"}
		stale := store.Revocation{SID: "sid-stale", At: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)}
		mustNil(t, Revoke(ctx, s, sess))
		mustNil(t, Revoke(ctx, s, stale))
		mustNil(t, Revoke(ctx, s, subj))
		mustClaim(t, s, "jti-1", now.Add(time.Hour), true)
		mustNil(t, s.UpdateKeys(ctx, func([]byte) ([]byte, error) { return []byte("doc-1"), nil }))
		mustNil(t, s.Close())

		s = open(t, loc)
		t.Cleanup(func() { _ = s.Close() })
		got, err := s.SessionRevocation(ctx, "sid-1")
		mustNil(t, err)
		checkRevocation(t, got, sess)
		got, err = s.SubjectRevocation(ctx, "bob")
		mustNil(t, err)
		checkRevocation(t, got, subj)
		mustClaim(t, s, "jti-1", now.Add(time.Hour), false)
		checkKeys(t, s, "doc-1")
		checkStats(t, s, store.Stats{Sessions: 2, Subjects: 2, JTIs: 1}) // ClaimJTI's subject too

		// The expiry bookkeeping survives too: GC finds the stale record after the reopen.
		checkGC(t, s, now, 1)
		checkNotFound(t, "stale session", func() error { _, err := s.SessionRevocation(ctx, "sid-stale"); return err })
		mustNil(t, s.UpdateKeys(ctx, func(cur []byte) ([]byte, error) {
			if string(cur) != "doc-1" {
				t.Errorf("UpdateKeys after reopen: current = %q, want %q", cur, "doc-1")
			}
			return []byte("doc-2"), nil
		}))
		checkKeys(t, s, "doc-2")
	})
}

// clock returns the current time without a monotonic reading, as a store returns it.
func clock() time.Time { return time.Now().UTC().Round(0) }

func testRevokeSessionThenLookup(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	want := store.Revocation{SID: "sid-1", Sub: "alice", At: now, Expires: now.Add(time.Hour), Reason: "backchannel"}
	mustNil(t, Revoke(ctx, s, want))
	got, err := s.SessionRevocation(ctx, "sid-1")
	mustNil(t, err)
	checkRevocation(t, got, want)
	// A session revocation is not a subject-wide one.
	checkNotFound(t, "subject of revoked session", func() error { _, err := s.SubjectRevocation(ctx, "alice"); return err })
	checkNotFound(t, "other session", func() error { _, err := s.SessionRevocation(ctx, "sid-2"); return err })
}

func testRevokeSubjectThenLookup(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	want := store.Revocation{Sub: "alice", At: now, Expires: now.Add(time.Hour), Reason: "admin"}
	mustNil(t, Revoke(ctx, s, want))
	got, err := s.SubjectRevocation(ctx, "alice")
	mustNil(t, err)
	checkRevocation(t, got, want)
	checkNotFound(t, "session named like the subject", func() error { _, err := s.SessionRevocation(ctx, "alice"); return err })
	checkNotFound(t, "other subject", func() error { _, err := s.SubjectRevocation(ctx, "bob"); return err })
}

func testUnknownIsNotFound(t *testing.T, s store.Store) {
	ctx := context.Background()
	checkStats(t, s, store.Stats{})
	for name, call := range map[string]func() error{
		"session": func() error { _, err := s.SessionRevocation(ctx, "nope"); return err },
		"subject": func() error { _, err := s.SubjectRevocation(ctx, "nope"); return err },
		"keys":    func() error { _, err := s.Keys(ctx); return err },
	} {
		t.Run(name, func(t *testing.T) { checkNotFound(t, name, call) })
	}
}

func testRevokeAgainMerges(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := clock()
	type kind struct {
		revoke func(context.Context, store.Revocation) error
		lookup func(context.Context, string) (store.Revocation, error)
		rev    func(id string, at, exp time.Time) store.Revocation
	}
	rec := func(ctx context.Context, r store.Revocation) error { return Revoke(ctx, s, r) }
	session := kind{rec, s.SessionRevocation, func(id string, at, exp time.Time) store.Revocation {
		return store.Revocation{SID: id, Sub: "alice", At: at, Expires: exp, Reason: "backchannel"}
	}}
	subject := kind{rec, s.SubjectRevocation, func(id string, at, exp time.Time) store.Revocation {
		return store.Revocation{Sub: id, At: at, Expires: exp, Reason: "admin"}
	}}
	m := time.Minute
	tests := []struct {
		name             string
		kind             kind
		firstAt, firstEx time.Duration
		againAt, againEx time.Duration
		wantAt, wantEx   time.Duration
	}{
		{"session/later logout keeps earliest At and extends Expires", session, 0, 60 * m, 10 * m, 120 * m, 0, 120 * m},
		{"session/earlier logout moves At back and keeps latest Expires", session, 0, 120 * m, -10 * m, 60 * m, -10 * m, 120 * m},
		{"session/same logout is idempotent", session, 0, 60 * m, 0, 60 * m, 0, 60 * m},
		{"subject/later logout moves At forward and extends Expires", subject, 0, 60 * m, 10 * m, 120 * m, 10 * m, 120 * m},
		{"subject/earlier logout keeps latest At and latest Expires", subject, 0, 120 * m, -10 * m, 60 * m, 0, 120 * m},
		{"subject/later logout with shorter Expires keeps latest Expires", subject, 0, 120 * m, 10 * m, 60 * m, 10 * m, 120 * m},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("id-%d", i)
			mustNil(t, tc.kind.revoke(ctx, tc.kind.rev(id, t0.Add(tc.firstAt), t0.Add(tc.firstEx))))
			mustNil(t, tc.kind.revoke(ctx, tc.kind.rev(id, t0.Add(tc.againAt), t0.Add(tc.againEx))))
			got, err := tc.kind.lookup(ctx, id)
			mustNil(t, err)
			if !got.At.Equal(t0.Add(tc.wantAt)) || !got.Expires.Equal(t0.Add(tc.wantEx)) {
				t.Errorf("after two revocations: At=t0%+v Expires=t0%+v, want At=t0%+v Expires=t0%+v",
					got.At.Sub(t0), got.Expires.Sub(t0), tc.wantAt, tc.wantEx)
			}
		})
	}
	// Each id is stored once however often it is revoked.
	checkStats(t, s, store.Stats{Sessions: 3, Subjects: 3})
}

func testClaimJTIOnceThenReplay(t *testing.T, s store.Store) {
	exp := clock().Add(time.Hour)
	mustClaim(t, s, "jti-1", exp, true)
	mustClaim(t, s, "jti-1", exp, false)
	mustClaim(t, s, "jti-1", exp.Add(time.Hour), false)
	mustClaim(t, s, "jti-2", exp, true)
	checkStats(t, s, store.Stats{Subjects: 1, JTIs: 2}) // and ClaimJTI's subject
}

func testClaimJTIExpiredIsClaimableAgain(t *testing.T, s store.Store) {
	now := clock()
	t.Run("expires in the past", func(t *testing.T) {
		mustClaim(t, s, "jti-past", now.Add(-time.Minute), true)
		mustClaim(t, s, "jti-past", now.Add(time.Hour), true) // the first claim had already expired
		mustClaim(t, s, "jti-past", now.Add(time.Hour), false)
	})
	t.Run("after GC", func(t *testing.T) {
		mustClaim(t, s, "jti-gc", now.Add(time.Minute), true)
		mustClaim(t, s, "jti-gc", now.Add(time.Minute), false)
		checkGC(t, s, now.Add(2*time.Minute), 1) // jti-past now runs until now+1h
		mustClaim(t, s, "jti-gc", now.Add(time.Hour), true)
		mustClaim(t, s, "jti-gc", now.Add(time.Hour), false)
	})
}

func testClaimJTIConcurrentOneWinner(t *testing.T, s store.Store) {
	const n = 20
	exp := clock().Add(time.Hour)
	var (
		mu   sync.Mutex
		wins int
		wg   sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			ok, err := ClaimJTI(context.Background(), s, "jti-race", exp)
			if err != nil {
				t.Errorf("ClaimJTI: %v", err)
				return
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d of %d concurrent claims of one jti succeeded, want exactly 1", wins, n)
	}
}

func testUpdateKeysSeesPreviousDocument(t *testing.T, s store.Store) {
	ctx := context.Background()
	steps := []struct{ wantCurrent, write string }{
		{"", "doc-1"}, // "" stands for nil: no document yet
		{"doc-1", "doc-2"},
		{"doc-2", "doc-3"},
	}
	for i, step := range steps {
		mustNil(t, s.UpdateKeys(ctx, func(cur []byte) ([]byte, error) {
			if i == 0 && cur != nil {
				t.Errorf("first UpdateKeys: current = %q, want nil", cur)
			}
			if string(cur) != step.wantCurrent {
				t.Errorf("UpdateKeys step %d: current = %q, want %q", i, cur, step.wantCurrent)
			}
			return []byte(step.write), nil
		}))
		checkKeys(t, s, step.write)
	}
}

func testUpdateKeysErrorWritesNothing(t *testing.T, s store.Store) {
	ctx := context.Background()
	boom := errors.New("boom")
	failing := func([]byte) ([]byte, error) { return []byte("must not be written"), boom }

	err := s.UpdateKeys(ctx, failing)
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateKeys with failing update (no document) = %v, want it to wrap the update's error", err)
	}
	checkNotFound(t, "keys after failed first update", func() error { _, err := s.Keys(ctx); return err })

	mustNil(t, s.UpdateKeys(ctx, func([]byte) ([]byte, error) { return []byte("doc-1"), nil }))
	if err := s.UpdateKeys(ctx, failing); !errors.Is(err, boom) {
		t.Fatalf("UpdateKeys with failing update = %v, want it to wrap the update's error", err)
	}
	checkKeys(t, s, "doc-1")
}

func testKeysAreCopies(t *testing.T, s store.Store) {
	ctx := context.Background()
	// Large enough that a backend cannot keep it inline in some small structure.
	orig := bytes.Repeat([]byte("doc-"), 4<<10)
	mustNil(t, s.UpdateKeys(ctx, func([]byte) ([]byte, error) { return bytes.Clone(orig), nil }))
	doc, err := s.Keys(ctx)
	mustNil(t, err)
	doc[0] = 'X'
	checkKeys(t, s, string(orig))

	// update may scribble on current and return it.
	mustNil(t, s.UpdateKeys(ctx, func(cur []byte) ([]byte, error) {
		cur[0] = 'D'
		return cur, nil
	}))
	orig[0] = 'D'
	checkKeys(t, s, string(orig))
}

func testUpdateKeysConcurrentSerialised(t *testing.T, s store.Store) {
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := s.UpdateKeys(context.Background(), func(cur []byte) ([]byte, error) {
				return append(bytes.Clone(cur), byte('a'+i)), nil
			})
			if err != nil {
				t.Errorf("UpdateKeys %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	doc, err := s.Keys(context.Background())
	mustNil(t, err)
	if len(doc) != n {
		t.Fatalf("after %d concurrent appends the document is %q (%d bytes): updates were lost", n, doc, len(doc))
	}
	for i := range n {
		if bytes.Count(doc, []byte{byte('a' + i)}) != 1 {
			t.Errorf("document %q does not hold append %d exactly once", doc, i)
		}
	}
}

func testGCRemovesOnlyExpired(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	gcAt := now.Add(time.Hour) // records expiring before gcAt are garbage
	type record struct {
		name    string
		kind    string // "session", "subject", "jti"
		expires time.Time
		removed bool
	}
	records := []record{
		{"session-expired", "session", now.Add(30 * time.Minute), true},
		{"session-at-boundary", "session", gcAt, false},
		{"session-live", "session", now.Add(2 * time.Hour), false},
		{"subject-expired", "subject", now.Add(30 * time.Minute), true},
		{"subject-live", "subject", now.Add(2 * time.Hour), false},
		{"jti-expired", "jti", now.Add(30 * time.Minute), true},
		{"jti-live", "jti", now.Add(2 * time.Hour), false},
	}
	wantRemoved := 0
	for _, r := range records {
		switch r.kind {
		case "session":
			mustNil(t, Revoke(ctx, s, store.Revocation{SID: r.name, At: now, Expires: r.expires}))
		case "subject":
			mustNil(t, Revoke(ctx, s, store.Revocation{Sub: r.name, At: now, Expires: r.expires}))
		case "jti":
			mustClaim(t, s, r.name, r.expires, true)
		}
		if r.removed {
			wantRemoved++
		}
	}
	checkStats(t, s, store.Stats{Sessions: 3, Subjects: 3, JTIs: 2}) // ClaimJTI's subject too
	checkGC(t, s, gcAt, wantRemoved)
	checkGC(t, s, gcAt, 0)
	checkStats(t, s, store.Stats{Sessions: 2, Subjects: 2, JTIs: 1})

	for _, r := range records {
		t.Run(r.name, func(t *testing.T) {
			var err error
			switch r.kind {
			case "session":
				_, err = s.SessionRevocation(ctx, r.name)
			case "subject":
				_, err = s.SubjectRevocation(ctx, r.name)
			case "jti":
				// Still unexpired by the real clock, so only GC can have freed it.
				var ok bool
				ok, err = ClaimJTI(ctx, s, r.name, r.expires)
				if err == nil && ok != r.removed {
					t.Errorf("ClaimJTI after GC = %v, want %v", ok, r.removed)
				}
				return
			}
			switch {
			case r.removed && !errors.Is(err, store.ErrNotFound):
				t.Errorf("lookup after GC = %v, want ErrNotFound", err)
			case !r.removed && err != nil:
				t.Errorf("lookup after GC = %v, want the record kept", err)
			}
		})
	}
}

func testGCFollowsLatestExpiry(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	// Each record is written with one expiry and then with another; the latest one counts.
	mustNil(t, Revoke(ctx, s, store.Revocation{SID: "extended", At: past, Expires: past}))
	mustNil(t, Revoke(ctx, s, store.Revocation{SID: "extended", At: past, Expires: future}))
	mustNil(t, Revoke(ctx, s, store.Revocation{SID: "not-shortened", At: past, Expires: future}))
	mustNil(t, Revoke(ctx, s, store.Revocation{SID: "not-shortened", At: past, Expires: past}))
	mustNil(t, Revoke(ctx, s, store.Revocation{Sub: "extended", At: past, Expires: past}))
	mustNil(t, Revoke(ctx, s, store.Revocation{Sub: "extended", At: now, Expires: future}))
	mustClaim(t, s, "reclaimed", past, true)
	mustClaim(t, s, "reclaimed", future, true)

	checkGC(t, s, now, 0)
	for _, sid := range []string{"extended", "not-shortened"} {
		got, err := s.SessionRevocation(ctx, sid)
		mustNil(t, err)
		if !got.Expires.Equal(future) {
			t.Errorf("session %s Expires = %v, want %v", sid, got.Expires, future)
		}
	}
	if _, err := s.SubjectRevocation(ctx, "extended"); err != nil {
		t.Errorf("subject removed by GC despite extended expiry: %v", err)
	}
	mustClaim(t, s, "reclaimed", future, false)
	checkStats(t, s, store.Stats{Sessions: 2, Subjects: 2, JTIs: 1}) // ClaimJTI's subject too
}

func testExpiredVisibleUntilGC(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	sess := store.Revocation{SID: "sid-old", Sub: "alice", At: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)}
	subj := store.Revocation{Sub: "alice", At: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)}
	mustNil(t, Revoke(ctx, s, sess))
	mustNil(t, Revoke(ctx, s, subj))

	got, err := s.SessionRevocation(ctx, "sid-old")
	mustNil(t, err)
	checkRevocation(t, got, sess)
	got, err = s.SubjectRevocation(ctx, "alice")
	mustNil(t, err)
	checkRevocation(t, got, subj)
	checkStats(t, s, store.Stats{Sessions: 1, Subjects: 1})

	checkGC(t, s, now, 2)
	checkNotFound(t, "session after GC", func() error { _, err := s.SessionRevocation(ctx, "sid-old"); return err })
	checkNotFound(t, "subject after GC", func() error { _, err := s.SubjectRevocation(ctx, "alice"); return err })
}

func testStatsCountsRecords(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	checkStats(t, s, store.Stats{})
	for i := range 3 {
		mustNil(t, Revoke(ctx, s, store.Revocation{SID: fmt.Sprint("sid-", i), At: now, Expires: now.Add(time.Hour)}))
	}
	for i := range 2 {
		mustNil(t, Revoke(ctx, s, store.Revocation{Sub: fmt.Sprint("sub-", i), At: now, Expires: now.Add(time.Hour)}))
	}
	for i := range 4 {
		mustClaim(t, s, fmt.Sprint("jti-", i), now.Add(time.Hour), true)
	}
	mustClaim(t, s, "jti-0", now.Add(time.Hour), false)
	mustNil(t, s.UpdateKeys(ctx, func([]byte) ([]byte, error) { return []byte("doc"), nil }))
	checkStats(t, s, store.Stats{Sessions: 3, Subjects: 3, JTIs: 4}) // ClaimJTI's subject too
}

func testEmptyIDsRejected(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := clock()
	for name, call := range map[string]func() error{
		"claim of an empty jti": func() error {
			e := event("", "alice", now)
			e.Claim = store.Claim{Expires: now.Add(time.Hour)}
			_, o, err := s.RecordNewRevocation(ctx, e)
			if o != 0 {
				t.Errorf("RecordNewRevocation claiming \"\" = %v, want it to fail", o)
			}
			return err
		},
		"SessionRevocation empty": func() error { _, err := s.SessionRevocation(ctx, ""); return err },
		"SubjectRevocation empty": func() error { _, err := s.SubjectRevocation(ctx, ""); return err },
	} {
		t.Run(name, func(t *testing.T) {
			if err := call(); err == nil {
				t.Errorf("%s: got nil error, want one", name)
			}
		})
	}
	checkStats(t, s, store.Stats{})
}

func testCancelledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	now := clock()
	rev := store.Revocation{SID: "sid-1", Sub: "alice", At: now, Expires: now.Add(time.Hour)}
	for name, call := range allCalls(ctx, s, rev, now) {
		t.Run(name, func(t *testing.T) {
			if err := call(t); !errors.Is(err, context.Canceled) {
				t.Errorf("%s with cancelled context = %v, want an error wrapping context.Canceled", name, err)
			}
		})
	}
	checkStats(t, s, store.Stats{})
	checkNotFound(t, "keys after cancelled UpdateKeys", func() error { _, err := s.Keys(context.Background()); return err })
}

func testClosedIsUnavailable(t *testing.T, s store.Store) {
	now := clock()
	rev := store.Revocation{SID: "sid-1", Sub: "alice", At: now, Expires: now.Add(time.Hour)}
	mustNil(t, Revoke(context.Background(), s, rev))
	mustNil(t, s.Close())
	for name, call := range allCalls(context.Background(), s, rev, now) {
		t.Run(name, func(t *testing.T) {
			if err := call(t); !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s after Close = %v, want an error wrapping store.ErrUnavailable", name, err)
			}
		})
	}
}

// allCalls returns one call of every context-taking method, for the failure-mode tests.
// UpdateKeys' update function fails the test if it runs.
func allCalls(ctx context.Context, s store.Store, rev store.Revocation, now time.Time) map[string]func(t *testing.T) error {
	return map[string]func(t *testing.T) error{
		"SessionRevocation": func(*testing.T) error { _, err := s.SessionRevocation(ctx, rev.SID); return err },
		"SubjectRevocation": func(*testing.T) error { _, err := s.SubjectRevocation(ctx, rev.Sub); return err },
		"ClaimJTI": func(t *testing.T) error {
			ok, err := ClaimJTI(ctx, s, "jti-1", now.Add(time.Hour))
			if ok {
				t.Errorf("ClaimJTI reported a successful claim")
			}
			return err
		},
		"Keys": func(*testing.T) error { _, err := s.Keys(ctx); return err },
		"UpdateKeys": func(t *testing.T) error {
			return s.UpdateKeys(ctx, func([]byte) ([]byte, error) {
				t.Errorf("UpdateKeys ran its update function")
				return []byte("doc"), nil
			})
		},
		"GC":    func(*testing.T) error { _, err := s.GC(ctx, now.Add(24*time.Hour)); return err },
		"Stats": func(*testing.T) error { _, err := s.Stats(ctx); return err },
	}
}

// Revoke records r — a session logout when r.SID is set, else a subject-wide one — the way
// tokengate records every logout, through the event log (RecordRevocation, with a fresh event):
// the store has no other writer of revocations. Backends' own tests use it too.
func Revoke(ctx context.Context, s store.Store, r store.Revocation) error {
	e := event(r.SID, r.Sub, r.At)
	e.Revocation = r
	_, err := s.RecordRevocation(ctx, e)
	return err
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// claimCarrier is the subject whose logout ClaimJTI claims with.
const claimCarrier = "storetest-claims"

// claimSeq makes ClaimJTI's event ids unique.
var claimSeq atomic.Uint64

// ClaimJTI claims jti until expires for a test, the one way a store claims a jti: with a logout,
// in one RecordNewRevocation. The logout is a subject-wide one of "storetest-claims" as of the
// Unix epoch, kept for a year: the first claim records it (one subject and one event in the
// store), every later claim is covered by it. It reports false, writing nothing, for a jti
// claimed before whose claim has not expired.
func ClaimJTI(ctx context.Context, s store.EventLog, jti string, expires time.Time) (bool, error) {
	now := time.Now().UTC()
	e := store.Event{
		ID: fmt.Sprintf("storetest-claim-%d-%d", now.UnixNano(), claimSeq.Add(1)), Time: now,
		Revocation: store.Revocation{Sub: claimCarrier, At: time.Unix(0, 0).UTC(), Expires: now.AddDate(1, 0, 0), Reason: "storetest"},
		Claim:      store.Claim{JTI: jti, Expires: expires},
	}
	_, o, err := s.RecordNewRevocation(ctx, e)
	if err != nil {
		return false, err
	}
	return o != store.Replayed, nil
}

func mustClaim(t *testing.T, s store.Store, jti string, exp time.Time, want bool) {
	t.Helper()
	ok, err := ClaimJTI(context.Background(), s, jti, exp)
	mustNil(t, err)
	if ok != want {
		t.Fatalf("ClaimJTI(%q) = %v, want %v", jti, ok, want)
	}
}

func checkNotFound(t *testing.T, what string, call func() error) {
	t.Helper()
	if err := call(); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: got %v, want an error wrapping store.ErrNotFound", what, err)
	}
}

func checkRevocation(t *testing.T, got, want store.Revocation) {
	t.Helper()
	if got.SID != want.SID || got.Sub != want.Sub || got.Reason != want.Reason ||
		!got.At.Equal(want.At) || !got.Expires.Equal(want.Expires) {
		t.Errorf("revocation = %+v, want %+v", got, want)
	}
}

func checkKeys(t *testing.T, s store.Store, want string) {
	t.Helper()
	got, err := s.Keys(context.Background())
	mustNil(t, err)
	if string(got) != want {
		t.Errorf("Keys = %q, want %q", got, want)
	}
}

func checkStats(t *testing.T, s store.Store, want store.Stats) {
	t.Helper()
	got, err := s.Stats(context.Background())
	mustNil(t, err)
	if got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func checkGC(t *testing.T, s store.Store, now time.Time, want int) {
	t.Helper()
	n, err := s.GC(context.Background(), now)
	mustNil(t, err)
	if n != want {
		t.Errorf("GC removed %d records, want %d", n, want)
	}
}
