package keys_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/keys"
)

// commitFails is a store whose key revocation runs the manager's update and then fails to
// commit (a full disk, etcd without quorum): the store's transaction is rolled back.
type commitFails struct {
	keys.Store
	fail bool
}

var errCommit = fmt.Errorf("commit: %w", store.ErrUnavailable)

func (c *commitFails) RecordKeyRevocation(ctx context.Context, e store.Event, update func([]byte) ([]byte, error)) (store.Event, error) {
	if !c.fail {
		return c.Store.RecordKeyRevocation(ctx, e, update)
	}
	return c.Store.RecordKeyRevocation(ctx, e, func(cur []byte) ([]byte, error) {
		if _, err := update(cur); err != nil {
			return nil, err
		}
		return nil, errCommit
	})
}

// TestRevokeKey_OneWriteWithItsAnnouncement: revoking a key writes the key document and the
// key event in one transaction. A write that fails leaves the keys as they were — in the store
// and as served — with no event; an unknown kid writes nothing; a key revoked before is
// announced again without another change.
func TestRevokeKey_OneWriteWithItsAnnouncement(t *testing.T) {
	ctx := context.Background()
	ck := &clock{t: time.Now()}
	bs := openStore(t, filepath.Join(t.TempDir(), "db"))
	t.Cleanup(func() { _ = bs.Close() })
	st := &commitFails{Store: bs}
	m, err := keys.Open(ctx, st, config(ck))
	if err != nil {
		t.Fatal(err)
	}
	active := m.ActiveKeyID()
	before, err := bs.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jwks := m.JWKSJSON()

	st.fail = true
	if _, err := m.RevokeKey(ctx, active); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("RevokeKey with a failing store = %v, want it to wrap store.ErrUnavailable", err)
	}
	if after, _ := bs.Keys(ctx); !bytes.Equal(after, before) {
		t.Error("a failed revocation changed the stored key document")
	}
	if m.ActiveKeyID() != active || !bytes.Equal(m.JWKSJSON(), jwks) {
		t.Error("a failed revocation changed the keys served")
	}
	if seq, _ := bs.LastEventSeq(ctx); seq != 0 {
		t.Errorf("a failed revocation appended events (last seq %d)", seq)
	}

	st.fail = false
	if _, err := m.RevokeKey(ctx, "no-such-kid"); !errors.Is(err, keys.ErrNoKey) {
		t.Fatalf("RevokeKey of an unknown kid = %v, want keys.ErrNoKey", err)
	}
	if seq, _ := bs.LastEventSeq(ctx); seq != 0 {
		t.Errorf("an unknown kid appended events (last seq %d)", seq)
	}

	ch, err := m.RevokeKey(ctx, active)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Event.Seq != 1 || ch.Event.KeyRevoked != active || ch.Activated == "" {
		t.Fatalf("RevokeKey = %+v, want the active key replaced and its key event Seq 1", ch)
	}
	if strings.Contains(string(m.JWKSJSON()), active) {
		t.Error("the revoked key is still published")
	}
	evs, err := bs.Events(ctx, 0, 10)
	if err != nil || len(evs) != 1 || evs[0].KeyRevoked != active {
		t.Fatalf("events = %+v, %v; want the one key event", evs, err)
	}

	again, err := m.RevokeKey(ctx, active)
	if err != nil || !again.Empty() || again.Event.Seq != 2 || again.Event.KeyRevoked != active {
		t.Fatalf("RevokeKey of a revoked key = %+v, %v; want no change, announced again (Seq 2)", again, err)
	}
}
