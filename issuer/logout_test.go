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

func (f *flakyStore) RevokeSession(ctx context.Context, r store.Revocation) error {
	if f.failNext.CompareAndSwap(true, false) {
		return store.ErrUnavailable
	}
	return f.Store.RevokeSession(ctx, r)
}

func (f *flakyStore) RevokeSubject(ctx context.Context, r store.Revocation) error {
	if f.failNext.CompareAndSwap(true, false) {
		return store.ErrUnavailable
	}
	return f.Store.RevokeSubject(ctx, r)
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
		MaxUpstreamLifetime: time.Hour, LogoutAudiences: []string{kctest.LogoutAudience}, UpstreamClientID: kctest.ClientID}, st, km, up)
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
