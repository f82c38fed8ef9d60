package issuer_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/issuer"
)

// failingStore fails every revocation write.
type failingStore struct{ *bolt.Store }

func (failingStore) RecordRevocation(context.Context, store.Event) (store.Event, error) {
	return store.Event{}, store.ErrUnavailable
}

// published remembers what an issuer told its Publisher.
type published struct {
	mu     sync.Mutex
	events []store.Event
	tokens []string
	check  func(e store.Event) // runs inside Recorded, when set
	// already are the logout tokens of logouts found already on record (no event).
	already []string
}

func (p *published) Recorded(e store.Event, logoutToken string) {
	if p.check != nil {
		p.check(e)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, e)
	p.tokens = append(p.tokens, logoutToken)
}

func (p *published) AlreadyRecorded(logoutToken string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.already = append(p.already, logoutToken)
}

func (p *published) snapshot() ([]store.Event, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]store.Event(nil), p.events...), append([]string(nil), p.tokens...)
}

func openBolt(t *testing.T) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// TestRecord_EveryRevocationAppendsOneEvent: each recorded revocation is stored with exactly one
// event, in order, and the publisher sees it after the commit.
func TestRecord_EveryRevocationAppendsOneEvent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	st, pub, is := f.store, f.pub, f.is
	pub.check = func(e store.Event) {
		if _, err := st.SessionRevocation(ctx, "sid-1"); e.Revocation.SID == "sid-1" && err != nil {
			t.Errorf("the publisher ran before the revocation was visible: %v", err)
		}
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
	seen, tokens := pub.snapshot()
	if len(evs) != 2 || len(seen) != 2 {
		t.Fatalf("events in log %d, seen by the publisher %d, want 2 and 2", len(evs), len(seen))
	}
	for i, want := range []struct{ sid, sub string }{{"sid-1", ""}, {"", "alice"}} {
		e := evs[i]
		if e.Seq != uint64(i+1) || e.Revocation.SID != want.sid || e.Revocation.Sub != want.sub ||
			e.Revocation.Reason != "admin:ops" || e.ID == "" || e.ID != seen[i].ID || seen[i].Seq != e.Seq {
			t.Errorf("event %d = %+v (the publisher saw %+v)", i, e, seen[i])
		}
		if tokens[i] != "" {
			t.Errorf("an admin revocation was published with a logout token %q", tokens[i])
		}
	}
	if _, err := st.SubjectRevocation(ctx, "alice"); err != nil {
		t.Errorf("subject revocation not stored: %v", err)
	}
}

// TestRecord_FailedEventWriteIsUnavailable: if the revocation and its event cannot be stored,
// the caller gets temporarily_unavailable and nothing is published.
func TestRecord_FailedEventWriteIsUnavailable(t *testing.T) {
	f := newFixture(t, onStore(func(b *bolt.Store) issuer.Store { return failingStore{b} }))
	pub := f.pub
	_, err := f.is.RevokeSession(context.Background(), "sid-1", "admin:ops")
	var oe *issuer.Error
	if !errors.As(err, &oe) || oe.Code != issuer.CodeTemporarilyUnavailable {
		t.Errorf("RevokeSession with a failing store = %v, want temporarily_unavailable", err)
	}
	if evs, _ := pub.snapshot(); len(evs) != 0 {
		t.Errorf("a failed write was published: %+v", evs)
	}
}
