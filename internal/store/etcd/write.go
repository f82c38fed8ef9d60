package etcd

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokengate/tokengate/internal/store"
)

// maxAttempts bounds the optimistic retries of one write under contention.
const maxAttempts = 64

// gcBatchSize is how many deletes GC sends per transaction (etcd allows 128 operations).
const gcBatchSize = 64

var (
	errSessionNotFound = fmt.Errorf("etcd: session revocation: %w", store.ErrNotFound)
	errSubjectNotFound = fmt.Errorf("etcd: subject revocation: %w", store.ErrNotFound)
	errKeysNotFound    = fmt.Errorf("etcd: keys: %w", store.ErrNotFound)
)

// SessionRevocation returns the session logout for sid from the local index, or an error
// wrapping store.ErrNotFound. It fails with store.ErrUnavailable when the index is stale.
func (s *Store) SessionRevocation(ctx context.Context, sid string) (store.Revocation, error) {
	return s.lookup(ctx, "session revocation", kindSession, sid, errSessionNotFound)
}

// SubjectRevocation returns the subject-wide logout for sub from the local index, or an error
// wrapping store.ErrNotFound. It fails with store.ErrUnavailable when the index is stale.
func (s *Store) SubjectRevocation(ctx context.Context, sub string) (store.Revocation, error) {
	return s.lookup(ctx, "subject revocation", kindSubject, sub, errSubjectNotFound)
}

func (s *Store) lookup(ctx context.Context, op string, k kind, id string, notFound error) (store.Revocation, error) {
	if err := s.usable(ctx, op); err != nil {
		return store.Revocation{}, err
	}
	if id == "" {
		return store.Revocation{}, fmt.Errorf("etcd: %s: empty id", op)
	}
	e, ok := s.idx.get(k, id)
	if !ok {
		return store.Revocation{}, notFound
	}
	return e.rev, nil
}

// Keys returns a copy of the key document (a linearizable read), or an error wrapping
// store.ErrNotFound.
func (s *Store) Keys(ctx context.Context) ([]byte, error) {
	const op = "keys"
	if err := s.reachable(ctx, op); err != nil {
		return nil, err
	}
	kv, err := s.getKeys(ctx)
	if err != nil {
		return nil, s.failed(ctx, op, err)
	}
	if kv == nil {
		return nil, errKeysNotFound
	}
	return bytes.Clone(kv.Value), nil
}

func (s *Store) getKeys(ctx context.Context) (*mvccpb.KeyValue, error) {
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.keysKey)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0], nil
}

// UpdateKeys reads the key document, passes a copy (nil when none) to update and writes what
// it returns in a transaction that succeeds only if the document is unchanged since the read;
// on a conflict with another process it reads again and calls update again. If update fails,
// nothing is written and its error is returned wrapped.
func (s *Store) UpdateKeys(ctx context.Context, update func(current []byte) ([]byte, error)) error {
	const op = "update keys"
	if err := s.reachable(ctx, op); err != nil {
		return err
	}
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	pause := newBackoff(5*time.Millisecond, 200*time.Millisecond)
	for range maxAttempts {
		if err := s.reachable(ctx, op); err != nil {
			return err
		}
		kv, err := s.getKeys(ctx)
		if err != nil {
			return s.failed(ctx, op, err)
		}
		var (
			cur []byte
			mod int64
		)
		if kv != nil {
			cur, mod = bytes.Clone(kv.Value), kv.ModRevision
		}
		next, err := update(cur)
		if err != nil {
			return fmt.Errorf("etcd: %s: %w", op, err)
		}
		if next == nil {
			next = []byte{}
		}
		rctx, cancel := s.rpc(ctx)
		resp, err := s.cli.Txn(rctx).
			If(clientv3.Compare(clientv3.ModRevision(s.keysKey), "=", mod)).
			Then(clientv3.OpPut(s.keysKey, string(next))).
			Commit()
		cancel()
		if err != nil {
			return s.failed(ctx, op, err)
		}
		if resp.Succeeded {
			return nil
		}
		pause.sleep(ctx) // another process updated it first
	}
	return fmt.Errorf("etcd: %s: %w: gave up after %d conflicting writes", op, store.ErrUnavailable, maxAttempts)
}

// GC deletes revocations and jti claims whose Expires is before now and reports how many. It
// finds them in the local index and deletes each only if etcd still holds it at the revision
// the index saw, so a record another replica just extended survives. Deletes go in
// transactions of gcBatchSize; a batch that conflicts is retried record by record.
func (s *Store) GC(ctx context.Context, now time.Time) (int, error) {
	const op = "gc"
	if err := s.usable(ctx, op); err != nil {
		return 0, err
	}
	cands := s.idx.expired(now)
	removed := 0
	for len(cands) > 0 {
		n := min(len(cands), gcBatchSize)
		batch := cands[:n]
		cands = cands[n:]
		got, err := s.deleteIf(ctx, batch)
		if err == nil && got < 0 { // conflict: one by one
			got = 0
			for _, c := range batch {
				one, err := s.deleteIf(ctx, []candidate{c})
				if err != nil {
					return removed + got, s.failed(ctx, op, err)
				}
				got += max(one, 0)
			}
		}
		if err != nil {
			return removed, s.failed(ctx, op, err)
		}
		removed += got
	}
	return removed, nil
}

// deleteIf deletes every candidate in one transaction if each is still at its revision. It
// returns how many were deleted, or -1 when a comparison failed and nothing was deleted.
func (s *Store) deleteIf(ctx context.Context, batch []candidate) (int, error) {
	cmps := make([]clientv3.Cmp, len(batch))
	ops := make([]clientv3.Op, len(batch))
	for i, c := range batch {
		key := s.key(c.kind, c.id)
		cmps[i] = clientv3.Compare(clientv3.ModRevision(key), "=", c.mod)
		ops[i] = clientv3.OpDelete(key)
	}
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	resp, err := s.cli.Txn(rctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		return -1, nil
	}
	for _, c := range batch {
		s.idx.remove(c.kind, c.id, resp.Header.Revision, true)
	}
	return len(batch), nil
}

// Stats counts the records in etcd, expired or not, at one revision.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	const op = "stats"
	if err := s.reachable(ctx, op); err != nil {
		return store.Stats{}, err
	}
	count := func(prefix string) clientv3.Op {
		return clientv3.OpGet(prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	}
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	resp, err := s.cli.Txn(rctx).Then(count(s.sessionsPrefix), count(s.subjectsPrefix), count(s.jtisPrefix)).Commit()
	if err != nil {
		return store.Stats{}, s.failed(ctx, op, err)
	}
	n := func(i int) int { return int(resp.Responses[i].GetResponseRange().Count) }
	return store.Stats{Sessions: n(0), Subjects: n(1), JTIs: n(2)}, nil
}

// reachable checks that the store is open and ctx is live; unlike usable it does not require
// a fresh index, for calls that read or write etcd directly.
func (s *Store) reachable(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("etcd: %s: %w: store is closed", op, store.ErrUnavailable)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("etcd: %s: %w", op, err)
	}
	return nil
}
