package issuer_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/keys"
	"github.com/tokengate/tokengate/store"
	"github.com/tokengate/tokengate/store/bolt"
	"github.com/tokengate/tokengate/upstream"
)

// flakyStore fails the next revocation write when failNext is set, after the jti was claimed.
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

func TestRecordLogout_RetryAfterAFailedRecordIsAcceptedReplayIsNot(t *testing.T) {
	realm := kctest.New(t)
	b, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	st := &flakyStore{Store: b}
	km, err := keys.Open(context.Background(), b, keys.Config{})
	if err != nil {
		t.Fatal(err)
	}
	up := upstream.New(upstream.Config{Issuer: realm.Issuer(), ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret})
	is, err := issuer.New(issuer.Config{Issuer: "https://tg.test", TTL: 30 * time.Second, RecheckAfter: time.Minute,
		MaxUpstreamLifetime: time.Hour, LogoutAudiences: []string{kctest.LogoutAudience}, UpstreamClientID: kctest.ClientID}, st, km, up, nil)
	if err != nil {
		t.Fatal(err)
	}
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
