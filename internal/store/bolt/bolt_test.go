package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/store/storetest"
)

func openTemp(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "tokengate.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, Options{}) })
}

func TestDurable(t *testing.T) {
	storetest.RunDurable(t, func(t *testing.T, dir string) store.Store {
		s, err := Open(filepath.Join(dir, "tokengate.db"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokengate.db")
	first, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	second, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		_ = second.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "locked by another tokengate process") {
		t.Errorf("second Open = %v, want ErrLocked naming the other tokengate process", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("second Open error %q does not name the file", err)
	}
	if elapsed > time.Second {
		t.Errorf("second Open took %s with a 100ms lock timeout", elapsed)
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after the holder closed: %v", err)
	}
	_ = again.Close()
}

// TestExpiryIndexMatchesRecords checks the index holds exactly one entry per record through
// re-revocations, reclaims and GC, so GC never needs to scan the record buckets.
func TestExpiryIndexMatchesRecords(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, Options{NoSync: true})
	t.Cleanup(func() { _ = s.Close() })
	now := time.Now()
	for i := range 5 {
		exp := now.Add(time.Duration(i-2) * time.Hour)
		must(t, storetest.Revoke(ctx, s, store.Revocation{SID: "sid", At: now, Expires: exp}))
		must(t, storetest.Revoke(ctx, s, store.Revocation{Sub: "sub", At: now.Add(time.Duration(i) * time.Minute), Expires: exp}))
		if _, err := storetest.ClaimJTI(ctx, s, fmt.Sprint("jti-", i%2), exp); err != nil {
			t.Fatal(err)
		}
		checkIndex(t, s)
	}
	if _, err := s.GC(ctx, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, s)
}

// TestGCBatches checks GC keeps going past one batch and counts every record.
func TestGCBatches(t *testing.T) {
	s := openTemp(t, Options{NoSync: true})
	t.Cleanup(func() { _ = s.Close() })
	now := time.Now()
	const n = 2*gcBatchSize + 7
	load(t, s, n, func(i int) store.Revocation {
		return store.Revocation{SID: fmt.Sprint("sid-", i), At: now, Expires: now.Add(-time.Duration(i+1) * time.Second)}
	})
	got, err := s.GC(context.Background(), now)
	if err != nil || got != n {
		t.Fatalf("GC = %d, %v; want %d, nil", got, err, n)
	}
	checkIndex(t, s)
}

func checkIndex(t *testing.T, s *Store) {
	t.Helper()
	st, err := s.Stats(context.Background())
	must(t, err)
	var entries int
	must(t, s.db.View(func(tx *bbolt.Tx) error {
		entries = tx.Bucket(bucketExpiry).Stats().KeyN
		return nil
	}))
	if records := st.Sessions + st.Subjects + st.JTIs; entries != records {
		t.Errorf("expiry index has %d entries for %d records", entries, records)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// load writes n session revocations in one transaction, through the same code path as
// RecordRevocation (putSession), without events.
func load(t testing.TB, s *Store, n int, rev func(i int) store.Revocation) {
	t.Helper()
	must(t, s.db.Update(func(tx *bbolt.Tx) error {
		for i := range n {
			r := rev(i)
			err := putRevocation(tx, bucketSessions, kindSession, r.SID, r, func(_, r store.Revocation) store.Revocation { return r })
			if err != nil {
				return err
			}
		}
		return nil
	}))
}

func BenchmarkSessionRevocation(b *testing.B) {
	const n = 100_000
	s := openTemp(b, Options{})
	b.Cleanup(func() { _ = s.Close() })
	now := time.Now()
	load(b, s, n, func(i int) store.Revocation {
		return store.Revocation{SID: fmt.Sprintf("sid-%08d", i), Sub: "alice", At: now, Expires: now.Add(time.Hour), Reason: "backchannel"}
	})
	ctx := context.Background()
	sids := make([]string, 1024)
	for i := range sids {
		sids[i] = fmt.Sprintf("sid-%08d", (i*7919)%n)
	}

	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.SessionRevocation(ctx, sids[i%len(sids)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.SessionRevocation(ctx, "sid-unknown"); !errors.Is(err, store.ErrNotFound) {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel-hit", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := s.SessionRevocation(ctx, sids[i%len(sids)]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}

// BenchmarkRevokeSession records a session logout the way tokengate does, through the event
// log: the revocation and its event in one transaction.
func BenchmarkRevokeSession(b *testing.B) {
	s := openTemp(b, Options{}) // durable: fsync on every commit
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := store.Revocation{SID: fmt.Sprint("sid-", i), Sub: "alice", At: now, Expires: now.Add(time.Hour), Reason: "backchannel"}
		if err := storetest.Revoke(ctx, s, r); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
