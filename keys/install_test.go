package keys_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/keys"
)

// slowFirstCommit is a store whose first key update commits and then answers only after a
// second update has returned: the manager sees two of its own writes answered out of order
// (two admins rotating at once on a loaded machine).
type slowFirstCommit struct {
	keys.Store
	calls     atomic.Int32
	committed chan struct{} // closed once the first update has committed
	release   chan struct{} // closed by the test to let the first update answer
}

func (s *slowFirstCommit) UpdateKeys(ctx context.Context, update func([]byte) ([]byte, error)) error {
	n := s.calls.Add(1)
	err := s.Store.UpdateKeys(ctx, update)
	if n == 2 {
		close(s.committed)
		<-s.release
	}
	return err
}

// A write answered after a newer one (or after a reload that read a newer document) must not
// put the older key document back: the replica would sign with a retired key, or with a key
// revoked in between, and serve a JWKS without the newest next key until the next change.
func TestWritesAnsweredOutOfOrderNeverInstallAnOlderDocument(t *testing.T) {
	ck := &clock{t: time.Unix(1_800_000_000, 0)}
	bs := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer bs.Close()
	st := &slowFirstCommit{Store: bs, committed: make(chan struct{}), release: make(chan struct{})}
	m, err := keys.Open(context.Background(), st, config(ck)) // call 1: the first start writes
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan keys.Change)
	go func() {
		ch, err := m.Rotate(context.Background(), true) // call 2: committed, answered late
		if err != nil {
			t.Error(err)
		}
		first <- ch
	}()
	<-st.committed
	second, err := m.Rotate(context.Background(), true) // call 3: newer, answered at once
	if err != nil {
		t.Fatal(err)
	}
	close(st.release)
	older := <-first
	if older.Activated == second.Activated {
		t.Fatalf("both rotations activated %s", older.Activated)
	}
	if got := m.ActiveKeyID(); got != second.Activated {
		t.Errorf("after the older write answered last, the manager signs with %s, want %s (the newest document's)", got, second.Activated)
	}
	if !inJWKS(m, second.Published) {
		t.Errorf("the newest next key %s is not in the JWKS served", second.Published)
	}
	// A reload that reads the same (newest) document changes nothing.
	if err := m.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := m.ActiveKeyID(); got != second.Activated {
		t.Errorf("after a reload, active %s, want %s", got, second.Activated)
	}
}
