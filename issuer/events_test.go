package issuer_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/store"
	"github.com/tokengate/tokengate/store/bolt"
)

type failingRecorder struct{}

func (failingRecorder) RecordRevocation(context.Context, store.Event) (store.Event, error) {
	return store.Event{}, store.ErrUnavailable
}

func (failingRecorder) RecordNewRevocation(context.Context, store.Event) (store.Event, bool, error) {
	return store.Event{}, false, store.ErrUnavailable
}

func newIssuer(t *testing.T) (*issuer.Issuer, *bolt.Store) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	is, err := issuer.New(issuer.Config{Issuer: "https://tg.test", TTL: 30 * time.Second, RecheckAfter: time.Minute,
		MaxUpstreamLifetime: time.Hour}, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return is, st
}

// TestRecord_EveryRevocationAppendsOneEvent: with an event recorder, each recorded revocation is
// stored with exactly one event, in order, and OnEvent sees it after the commit.
func TestRecord_EveryRevocationAppendsOneEvent(t *testing.T) {
	ctx := context.Background()
	is, st := newIssuer(t)
	is.Events = st
	var seen []store.Event
	is.OnEvent = func(e store.Event) {
		if _, err := st.SessionRevocation(ctx, "sid-1"); e.Revocation.SID == "sid-1" && err != nil {
			t.Errorf("OnEvent ran before the revocation was visible: %v", err)
		}
		seen = append(seen, e)
	}
	if _, err := is.RevokeSession(ctx, "sid-1", "admin:ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := is.RevokeSubject(ctx, "alice", "admin:ops"); err != nil {
		t.Fatal(err)
	}
	evs, err := st.Events(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || len(seen) != 2 {
		t.Fatalf("events in log %d, seen by OnEvent %d, want 2 and 2", len(evs), len(seen))
	}
	for i, want := range []struct{ sid, sub string }{{"sid-1", ""}, {"", "alice"}} {
		e := evs[i]
		if e.Seq != uint64(i+1) || e.Revocation.SID != want.sid || e.Revocation.Sub != want.sub ||
			e.Revocation.Reason != "admin:ops" || e.ID == "" || e.ID != seen[i].ID {
			t.Errorf("event %d = %+v (OnEvent saw %+v)", i, e, seen[i])
		}
	}
	if _, err := st.SubjectRevocation(ctx, "alice"); err != nil {
		t.Errorf("subject revocation not stored: %v", err)
	}
}

// TestRecord_FailedEventWriteIsUnavailable: if the revocation and its event cannot be stored,
// the caller gets temporarily_unavailable and no hook runs.
func TestRecord_FailedEventWriteIsUnavailable(t *testing.T) {
	is, _ := newIssuer(t)
	is.Events = failingRecorder{}
	is.OnEvent = func(store.Event) { t.Error("OnEvent called for a failed write") }
	is.OnRevoke = func(store.Revocation) { t.Error("OnRevoke called for a failed write") }
	_, err := is.RevokeSession(context.Background(), "sid-1", "admin:ops")
	var oe *issuer.Error
	if !errors.As(err, &oe) || oe.Code != issuer.CodeTemporarilyUnavailable {
		t.Errorf("RevokeSession with a failing recorder = %v, want temporarily_unavailable", err)
	}
}
