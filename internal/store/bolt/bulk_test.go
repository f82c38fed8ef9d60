package bolt

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store"
)

func TestRevokeSessions_RecordsEachLikeRevokeSession(t *testing.T) {
	s := openTemp(t, Options{NoSync: true})
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	var rs []store.Revocation
	for i := range 100 {
		rs = append(rs, store.Revocation{SID: fmt.Sprint("sid-", i), Sub: "alice", At: now, Expires: now.Add(time.Hour), Reason: "backchannel"})
	}
	if err := s.RevokeSessions(ctx, rs); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		got, err := s.SessionRevocation(ctx, r.SID)
		if err != nil || !got.At.Equal(now) {
			t.Fatalf("%s: %+v %v", r.SID, got, err)
		}
	}
	if st, err := s.Stats(ctx); err != nil || st.Sessions != 100 {
		t.Fatalf("stats %+v %v", st, err)
	}
	if n, err := s.GC(ctx, now.Add(2*time.Hour)); err != nil || n != 100 {
		t.Fatalf("GC removed %d, %v; want 100 (expiry index written)", n, err)
	}
	if err := s.RevokeSessions(ctx, []store.Revocation{{SID: ""}}); err == nil {
		t.Fatal("empty sid accepted")
	}
	if _, err := s.SessionRevocation(ctx, "sid-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after GC: %v", err)
	}
}
