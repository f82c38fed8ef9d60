package issuer_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/issuer"
)

// flakyStore fails the next revocation write when failNext is set: nothing of it is written,
// neither the revocation nor the claim of its jti.
type flakyStore struct {
	*bolt.Store
	failNext atomic.Bool
}

func (f *flakyStore) RecordRevocation(ctx context.Context, e store.Event) (store.Event, error) {
	if f.failNext.CompareAndSwap(true, false) {
		return store.Event{}, store.ErrUnavailable
	}
	return f.Store.RecordRevocation(ctx, e)
}

func (f *flakyStore) RecordNewRevocation(ctx context.Context, e store.Event) (store.Event, store.Outcome, error) {
	if f.failNext.CompareAndSwap(true, false) {
		return store.Event{}, 0, store.ErrUnavailable
	}
	return f.Store.RecordNewRevocation(ctx, e)
}

func TestRecordLogout_RetryAfterAFailedRecordIsAcceptedReplayIsNot(t *testing.T) {
	st := &flakyStore{}
	f := newFixture(t, onStore(func(b *bolt.Store) issuer.Store { st.Store = b; return st }))
	realm, is := f.realm, f.is
	cases := []struct{ name, sub, sid string }{
		{"session logout", "mia", "sid-flaky"},
		{"subject-wide logout", "noah", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lt := realm.LogoutToken(c.sub, c.sid)
			st.failNext.Store(true)
			var oe *issuer.Error
			if _, err := is.RecordLogout(context.Background(), lt); !errors.As(err, &oe) || oe.Code != issuer.CodeTemporarilyUnavailable {
				t.Fatalf("first delivery with a failing store: %v", err)
			}
			if _, err := is.RecordLogout(context.Background(), lt); err != nil {
				t.Fatalf("the retry of a logout that was not recorded must be accepted: %v", err)
			}
			if _, err := is.RecordLogout(context.Background(), lt); !errors.As(err, &oe) || oe.Code != issuer.CodeInvalidRequest {
				t.Fatalf("a replay of a recorded logout must be refused: %v", err)
			}
		})
	}
}

// TestRecordLogout_RetryOfALogoutTheStreamRecordedMeanwhileIsRelayed: a logout whose first
// write fails leaves nothing behind, neither the logout nor its token's jti. If Keycloak's
// Shared Signals stream records the same logout before the token comes again, the retry is not
// a replay: it is answered 200 and its token relayed (nothing new for the feed), and its jti is
// claimed then, so a replay afterwards is refused. (Before, the failed delivery had claimed the
// jti in a write of its own, and the retry, finding the logout on record, was refused as a
// replay: 400 to a logout that was never acknowledged, and the token not relayed.)
func TestRecordLogout_RetryOfALogoutTheStreamRecordedMeanwhileIsRelayed(t *testing.T) {
	cases := []struct{ name, sub, sid, reason string }{
		{"session logout", "mia", "sid-both", "ssf:session-revoked"},
		{"subject-wide logout", "noah", "", "ssf:credential-change"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			st := &flakyStore{}
			f := newFixture(t, onStore(func(b *bolt.Store) issuer.Store { st.Store = b; return st }))
			lt := f.realm.LogoutToken(c.sub, c.sid)
			st.failNext.Store(true)
			_, err := f.is.RecordLogout(ctx, lt)
			wantCode(t, "first delivery with a failing store", err, issuer.CodeTemporarilyUnavailable)

			f.clock.Advance(time.Second)
			if ok, err := f.is.RecordUpstreamLogout(ctx, store.Revocation{SID: c.sid, Sub: c.sub, At: f.clock.Now(), Reason: c.reason}); err != nil || !ok {
				t.Fatalf("RecordUpstreamLogout = %v, %v", ok, err)
			}
			if _, err := f.is.RecordLogout(ctx, lt); err != nil {
				t.Fatalf("the retry of a logout the stream recorded meanwhile = %v, want it accepted", err)
			}
			_, err = f.is.RecordLogout(ctx, lt)
			wantCode(t, "a replay afterwards", err, issuer.CodeInvalidRequest)

			evs, _ := f.pub.snapshot()
			if len(evs) != 1 || evs[0].Revocation.Reason != c.reason {
				t.Errorf("published %+v, want the stream's logout only", evs)
			}
			f.pub.mu.Lock()
			already := append([]string(nil), f.pub.already...)
			f.pub.mu.Unlock()
			if len(already) != 1 || already[0] != lt {
				t.Errorf("relayed %d tokens as already recorded, want the retried one once", len(already))
			}
		})
	}
}

// TestRecordLogout_PublishesOnlyVerifiedRecordedLogouts: the publisher gets a back-channel
// logout (its event and the raw logout token, for the relay) once it is verified and durably
// recorded; an empty, invalid or replayed token is refused and publishes nothing.
func TestRecordLogout_PublishesOnlyVerifiedRecordedLogouts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.pub.check = func(e store.Event) {
		if _, err := f.store.SessionRevocation(ctx, "sid-relay"); err != nil {
			t.Errorf("published before the logout was recorded: %v", err)
		}
	}
	lt := f.realm.LogoutToken("rita", "sid-relay")
	if _, err := f.is.RecordLogout(ctx, lt); err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string]string{
		"replayed": lt,
		"tampered": lt[:len(lt)-4] + "AAAA",
		"empty":    "",
		"junk":     "junk",
	} {
		_, err := f.is.RecordLogout(ctx, raw)
		wantCode(t, name, err, issuer.CodeInvalidRequest)
	}
	evs, tokens := f.pub.snapshot()
	if len(evs) != 1 || tokens[0] != lt || evs[0].Revocation.SID != "sid-relay" || evs[0].Seq != 1 {
		t.Errorf("published %d events (%+v), want exactly the one verified logout with its token", len(evs), evs)
	}
}

// TestLogout_BothChannelsAreOneRevocationAndOneEvent: a logout Keycloak delivers by back-channel
// logout and on its Shared Signals stream, in either order, is recorded once with one event.
func TestLogout_BothChannelsAreOneRevocationAndOneEvent(t *testing.T) {
	cases := []struct {
		name      string
		sid, sub  string
		ssfFirst  bool
		wantFirst string
	}{
		{"session, back-channel first", "sid-bc", "mia", false, "backchannel"},
		{"session, stream first", "sid-ssf", "mia", true, "ssf:session-revoked"},
		{"subject, stream first", "", "noah", true, "ssf:credential-change"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			realm, is, b := f.realm, f.is, f.store
			reason := "ssf:session-revoked"
			if c.sid == "" {
				reason = "ssf:credential-change"
			}
			// A user-level signal carries the event's time; the logout token is issued after it.
			at := time.Now().Add(-time.Second)
			signal := func(want bool) {
				t.Helper()
				got, err := is.RecordUpstreamLogout(ctx, store.Revocation{SID: c.sid, Sub: c.sub, At: at, Reason: reason})
				if err != nil || got != want {
					t.Fatalf("RecordUpstreamLogout = %v, %v; want %v", got, err, want)
				}
			}
			backchannel := func() {
				t.Helper()
				if _, err := is.RecordLogout(ctx, realm.LogoutToken(c.sub, c.sid)); err != nil {
					t.Fatalf("RecordLogout: %v", err)
				}
			}
			if c.ssfFirst {
				signal(true)
				if c.sid != "" {
					backchannel()
				}
			} else {
				backchannel()
				signal(false)
			}
			signal(false) // and Keycloak's redelivery of an unacknowledged SET
			evs, err := b.Events(ctx, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 || evs[0].Revocation.Reason != c.wantFirst {
				t.Fatalf("events = %+v, want one from %s", evs, c.wantFirst)
			}
			// Every Recorded call carries an event in the log; a logout found already on record
			// is told through AlreadyRecorded, its token relayed all the same.
			published, tokens := f.pub.snapshot()
			events, relayed := len(published), 0
			f.pub.mu.Lock()
			for _, tok := range append(tokens, f.pub.already...) {
				if tok != "" {
					relayed++
				}
			}
			f.pub.mu.Unlock()
			for _, e := range published {
				if e.Seq == 0 {
					t.Errorf("Recorded with an event not in the log: %+v", e)
				}
			}
			if c.sid != "" && relayed != 1 {
				t.Errorf("logout token relayed %d times, want 1 (the BFF still needs it)", relayed)
			}
			if events != 1 {
				t.Errorf("events published %d, want 1", events)
			}
		})
	}
}
