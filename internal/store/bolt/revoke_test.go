package bolt

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/tokengate/tokengate/internal/store"
)

var revokeSeq atomic.Int64

// revoke records r — a session logout when r.SID is set, else a subject-wide one — through the
// event log with a fresh event: the store has no other writer of revocations.
func revoke(ctx context.Context, s *Store, r store.Revocation) error {
	id := fmt.Sprint("test-revoke-", revokeSeq.Add(1))
	_, err := s.RecordRevocation(ctx, store.Event{ID: id, Time: r.At, Revocation: r})
	return err
}
