package bolt

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/store/storetest"
)

// walked counts the records by visiting every page, as Stats did before it kept counters.
func walked(t *testing.T, s *Store) store.Stats {
	t.Helper()
	var st store.Stats
	if err := s.db.View(func(tx *bbolt.Tx) error {
		st.Sessions = tx.Bucket(bucketSessions).Stats().KeyN
		st.Subjects = tx.Bucket(bucketSubjects).Stats().KeyN
		st.JTIs = tx.Bucket(bucketJTIs).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestStats_CountersMatchAFullWalk(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	check := func(step string) {
		t.Helper()
		got, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := walked(t, s); got != want {
			t.Fatalf("%s: Stats %+v, full walk %+v", step, got, want)
		}
	}
	for i := 0; i < 600; i++ {
		id := fmt.Sprint(rng.IntN(120)) // repeats: new and existing records alike
		exp := now.Add(time.Duration(rng.IntN(120)-60) * time.Minute)
		var err error
		switch rng.IntN(4) {
		case 0:
			err = storetest.Revoke(ctx, s, store.Revocation{SID: "s" + id, At: now, Expires: exp})
		case 1:
			err = storetest.Revoke(ctx, s, store.Revocation{Sub: "u" + id, At: now, Expires: exp})
		case 2:
			_, err = storetest.ClaimJTI(ctx, s, "j"+id, exp) // expired claims are reclaimed in place
		case 3:
			err = s.RevokeSessions(ctx, []store.Revocation{{SID: "s" + id, At: now, Expires: exp}, {SID: "b" + id, At: now, Expires: exp}})
		}
		if err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			check(fmt.Sprintf("after %d writes", i+1))
			if _, err := s.GC(ctx, now); err != nil {
				t.Fatal(err)
			}
			check(fmt.Sprintf("after GC at %d", i+1))
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check("after reopen")
	if st, _ := s.Stats(ctx); st.Sessions == 0 || st.Subjects == 0 || st.JTIs == 0 {
		t.Errorf("the test wrote too little to mean anything: %+v", st)
	}
}
