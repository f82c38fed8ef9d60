package app_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tokengate/tokengate/cmd/internal/app"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/store/bolt"
)

// keyCommitFails is a store whose key revocations, while fail is set, run the key manager's
// update and then fail to commit: the transaction is rolled back, as on a full disk.
type keyCommitFails struct {
	store.Store
	fail atomic.Bool
}

func (k *keyCommitFails) RecordKeyRevocation(ctx context.Context, e store.Event, update func([]byte) ([]byte, error)) (store.Event, error) {
	if !k.fail.Load() {
		return k.Store.RecordKeyRevocation(ctx, e, update)
	}
	return k.Store.RecordKeyRevocation(ctx, e, func(cur []byte) ([]byte, error) {
		if _, err := update(cur); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("commit: %w", store.ErrUnavailable)
	})
}

// TestAdmin_KeyRevokeThatCannotBeStoredChangesNothing: POST /admin/keys/{kid}/revoke is one
// store write — the key leaves the JWKS and its announcement joins the event log together. When
// the store cannot commit it the answer is the admin API's 503 error, the key still signs and
// is still published, and nothing is announced; the same call once the store recovers revokes
// and announces it.
func TestAdmin_KeyRevokeThatCannotBeStoredChangesNothing(t *testing.T) {
	bs, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	st := &keyCommitFails{Store: bs}
	s := newStackOpts(t, stackOptions{appOptions: []app.Option{app.WithStore(st)}})
	srv, _ := newAdmin(t, s)
	ctx := context.Background()
	active := s.keys.ActiveKeyID()
	jwks := string(s.keys.JWKSJSON())
	seq, err := bs.LastEventSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}

	st.fail.Store(true)
	r := adminCall(t, srv, "POST", "/admin/keys/"+active+"/revoke", adminToken, "", "")
	if r.Status != 503 || r.str("error") != "unavailable" || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("revoke with a failing store: %d %s, want 503 unavailable", r.Status, r.Raw)
	}
	if s.keys.ActiveKeyID() != active || string(s.keys.JWKSJSON()) != jwks {
		t.Fatal("a revocation that could not be stored changed the keys")
	}
	if got, _ := bs.LastEventSeq(ctx); got != seq {
		t.Fatalf("a revocation that could not be stored appended events: last seq %d → %d", seq, got)
	}
	if got := s.mustExchange("u", "sid-key-kept"); got.Status != 200 {
		t.Fatal("signing stopped")
	}

	st.fail.Store(false)
	r = adminCall(t, srv, "POST", "/admin/keys/"+active+"/revoke", adminToken, "", "")
	if r.Status != 200 || s.keys.ActiveKeyID() == active || strings.Contains(string(s.keys.JWKSJSON()), active) {
		t.Fatalf("revoke after the store recovered: %d %s", r.Status, r.Raw)
	}
	evs, err := bs.Events(ctx, seq, 10)
	if err != nil || len(evs) != 1 || evs[0].KeyRevoked != active {
		t.Fatalf("events after the revocation = %+v, %v; want its one key event", evs, err)
	}
	// Revoked before: announced again, nothing else changes.
	if r := adminCall(t, srv, "POST", "/admin/keys/"+active+"/revoke", adminToken, "", ""); r.Status != 200 {
		t.Fatalf("revoking a revoked key: %d %s", r.Status, r.Raw)
	}
	if got, _ := bs.LastEventSeq(ctx); got != seq+2 {
		t.Errorf("revoking a revoked key: last seq %d, want %d (announced again)", got, seq+2)
	}
}
