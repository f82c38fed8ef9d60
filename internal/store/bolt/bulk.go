package bolt

import (
	"context"
	"errors"

	"go.etcd.io/bbolt"

	"github.com/tokengate/tokengate/internal/store"
)

// RevokeSessions records many session logouts in one durable transaction, each merged as
// RecordRevocation merges a session logout, without events. It is no part of the store
// contract: it exists to load large stores quickly (benchmarks, imports); the serving path
// records one logout per call, with its event.
func (s *Store) RevokeSessions(ctx context.Context, rs []store.Revocation) error {
	for _, r := range rs {
		if r.SID == "" {
			return errors.New("bolt: revoke sessions: empty sid")
		}
	}
	return s.update(ctx, "revoke sessions", func(tx *bbolt.Tx) error {
		for _, r := range rs {
			if err := putSession(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
}
