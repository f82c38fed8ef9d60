package etcd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokengate/tokengate/internal/store"
)

// The event log lives outside the watched data/ range, so replicas do not index it: events/seq
// holds the newest Seq ever given out (decimal), events/log/<Seq as 20 digits> each event as
// JSON (the fixed width makes etcd's key order the Seq order), streams/<id> the stream
// documents.

var (
	_ store.EventLog      = (*Store)(nil)
	_ store.ReceiverState = (*Store)(nil)
)

// maxTxnOps is etcd's default limit of operations in one transaction.
const maxTxnOps = 128

// trimBatchSize bounds the events TrimEvents reads and deletes per round trip.
const trimBatchSize = 100

func (s *Store) seqKey() string             { return s.cfg.Prefix + "events/seq" }
func (s *Store) eventsPrefix() string       { return s.cfg.Prefix + "events/log/" }
func (s *Store) eventKey(seq uint64) string { return fmt.Sprintf("%s%020d", s.eventsPrefix(), seq) }
func (s *Store) streamsPrefix() string      { return s.cfg.Prefix + "streams/" }

// RecordRevocation records e.Revocation and appends e to the event log in one etcd
// transaction: the revocation's and the counter's revisions are compared, the merged
// revocation, the counter and the event are written together. On a conflict it merges and
// numbers again.
func (s *Store) RecordRevocation(ctx context.Context, e store.Event) (store.Event, error) {
	if e.Claim != (store.Claim{}) {
		return store.Event{}, fmt.Errorf("etcd: record revocation: %w", store.ErrClaimNeedsNew)
	}
	e, _, err := s.record(ctx, "record revocation", e, false)
	return e, err
}

// RecordNewRevocation is RecordRevocation unless a stored revocation covers e.Revocation. The
// covering record is the one the transaction's revision compare is made against, so the check
// and the write are atomic across replicas. A claim (e.Claim.JTI) is one more key in the same
// transaction, compared at the revision its expired predecessor was read (0: absent).
func (s *Store) RecordNewRevocation(ctx context.Context, e store.Event) (store.Event, store.Outcome, error) {
	return s.record(ctx, "record new revocation", e, true)
}

func (s *Store) record(ctx context.Context, op string, e store.Event, onlyNew bool) (store.Event, store.Outcome, error) {
	if err := e.Check(); err != nil {
		return store.Event{}, 0, fmt.Errorf("etcd: %s: %w", op, err)
	}
	r := e.Revocation
	if err := s.usable(ctx, op); err != nil {
		return store.Event{}, 0, err
	}
	if e.KeyRevoked != "" {
		e, err := s.appendEvent(ctx, op, e, nil)
		if err != nil {
			return store.Event{}, 0, err
		}
		return e, store.Recorded, nil
	}
	k, id, merge := kindSubject, r.Sub, store.MergeSubject
	if r.SID != "" {
		k, id, merge = kindSession, r.SID, store.MergeSession
	}
	key := s.key(k, id)
	claim := e.Claim.JTI != ""
	var (
		claimKey, claimVal string
		claimMod           int64
	)
	if claim {
		if ent, ok := s.idx.get(kindJTI, e.Claim.JTI); ok {
			if ent.rev.Expires.After(time.Now()) {
				return store.Event{}, store.Replayed, nil // a replay: claims are only ever extended
			}
			claimMod = ent.mod
		}
		v, err := json.Marshal(jtiRecord{Expires: e.Claim.Expires})
		if err != nil {
			return store.Event{}, 0, fmt.Errorf("etcd: %s: %w", op, err)
		}
		claimKey, claimVal = s.key(kindJTI, e.Claim.JTI), string(v)
	}
	// One appender per process; etcd serialises processes through the counter's revision.
	s.eventsMu.Lock()
	defer s.eventsMu.Unlock()

	var (
		old       *store.Revocation
		mod       int64
		seq, cmod int64
	)
	if ent, ok := s.idx.get(k, id); ok {
		old, mod = &ent.rev, ent.mod
	}
	rctx, cancel := s.rpc(ctx)
	resp, err := s.cli.Get(rctx, s.seqKey())
	cancel()
	if err != nil {
		return store.Event{}, 0, s.failed(ctx, op, err)
	}
	if len(resp.Kvs) > 0 {
		if seq, err = strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64); err != nil {
			return store.Event{}, 0, fmt.Errorf("etcd: %s: decode event counter: %w", op, err)
		}
		cmod = resp.Kvs[0].ModRevision
	}
	leaseRetried := false
	for range maxAttempts {
		covered := onlyNew && old != nil && store.Covers(*old, r)
		if covered && !claim {
			return store.Event{}, store.Covered, nil
		}
		var (
			conds  = []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", mod)}
			puts   []clientv3.Op
			next   = r
			leased []clientv3.LeaseID
		)
		if !covered {
			if old != nil {
				next = merge(*old, r)
			}
			val, err := json.Marshal(next)
			if err != nil {
				return store.Event{}, 0, fmt.Errorf("etcd: %s: %w", op, err)
			}
			e.Seq = uint64(seq + 1)
			ev, err := json.Marshal(e)
			if err != nil {
				return store.Event{}, 0, fmt.Errorf("etcd: %s: %w", op, err)
			}
			lease, err := s.leaseFor(ctx, next.Expires)
			if err != nil {
				return store.Event{}, 0, s.failed(ctx, op, err)
			}
			leased = append(leased, lease)
			conds = append(conds, clientv3.Compare(clientv3.ModRevision(s.seqKey()), "=", cmod))
			puts = append(puts, clientv3.OpPut(key, string(val), clientv3.WithLease(lease)),
				clientv3.OpPut(s.seqKey(), strconv.FormatInt(seq+1, 10)),
				clientv3.OpPut(s.eventKey(e.Seq), string(ev)))
		}
		if claim {
			lease, err := s.leaseFor(ctx, e.Claim.Expires)
			if err != nil {
				return store.Event{}, 0, s.failed(ctx, op, err)
			}
			leased = append(leased, lease)
			conds = append(conds, clientv3.Compare(clientv3.ModRevision(claimKey), "=", claimMod))
			puts = append(puts, clientv3.OpPut(claimKey, claimVal, clientv3.WithLease(lease)))
		}
		rctx, cancel := s.rpc(ctx)
		tx, err := s.cli.Txn(rctx).If(conds...).Then(puts...).
			Else(clientv3.OpGet(key), clientv3.OpGet(s.seqKey()), clientv3.OpGet(claimKeyOr(claimKey, key))).
			Commit()
		cancel()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && !leaseRetried {
			leaseRetried = true // a cached lease revoked behind our back: grant others
			for _, l := range leased {
				s.dropLease(l)
			}
			continue
		}
		if err != nil {
			return store.Event{}, 0, s.failed(ctx, op, err)
		}
		if tx.Succeeded {
			if claim {
				s.idx.put(kindJTI, e.Claim.JTI, entry{rev: store.Revocation{Expires: e.Claim.Expires}, mod: tx.Header.Revision})
			}
			if covered {
				return store.Event{}, store.Covered, nil
			}
			s.idx.put(k, id, entry{rev: next, mod: tx.Header.Revision})
			return e, store.Recorded, nil
		}
		old, mod = nil, 0
		if kvs := tx.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			cur, err := decode(k, kvs[0].Value, kvs[0].ModRevision)
			if err != nil {
				return store.Event{}, 0, fmt.Errorf("etcd: %s: decode %q: %w", op, id, err)
			}
			old, mod = &cur.rev, cur.mod
		}
		seq, cmod = 0, 0
		if kvs := tx.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
			if seq, err = strconv.ParseInt(string(kvs[0].Value), 10, 64); err != nil {
				return store.Event{}, 0, fmt.Errorf("etcd: %s: decode event counter: %w", op, err)
			}
			cmod = kvs[0].ModRevision
		}
		if claim {
			claimMod = 0
			if kvs := tx.Responses[2].GetResponseRange().Kvs; len(kvs) > 0 {
				cur, err := decode(kindJTI, kvs[0].Value, kvs[0].ModRevision)
				if err != nil {
					return store.Event{}, 0, fmt.Errorf("etcd: %s: decode %q: %w", op, e.Claim.JTI, err)
				}
				s.idx.put(kindJTI, e.Claim.JTI, cur)
				if cur.rev.Expires.After(time.Now()) {
					return store.Event{}, store.Replayed, nil // claimed meanwhile: a replay
				}
				claimMod = cur.mod
			}
		}
	}
	return store.Event{}, 0, fmt.Errorf("etcd: %s: %w: gave up after %d conflicting writes", op, store.ErrUnavailable, maxAttempts)
}

// claimKeyOr is claimKey, or key when there is no claim (an Else read with no use).
func claimKeyOr(claimKey, key string) string {
	if claimKey == "" {
		return key
	}
	return claimKey
}

// RecordKeyRevocation runs update on the key document like UpdateKeys and appends the key
// event e in one etcd transaction that compares both the document's and the counter's
// revisions; on a conflict it reads both again and calls update again. If update fails,
// nothing is written.
func (s *Store) RecordKeyRevocation(ctx context.Context, e store.Event, update func(current []byte) ([]byte, error)) (store.Event, error) {
	const op = "record key revocation"
	if err := e.Check(); err != nil {
		return store.Event{}, fmt.Errorf("etcd: %s: %w", op, err)
	}
	if e.KeyRevoked == "" {
		return store.Event{}, fmt.Errorf("etcd: %s: not a key event", op)
	}
	if err := s.reachable(ctx, op); err != nil {
		return store.Event{}, err
	}
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	return s.appendEvent(ctx, op, e, update)
}

// appendEvent appends an event that records no revocation (a key event): the counter's
// revision is compared, the counter and the event written together; on a conflict it numbers
// again. With update, the key document is read and written in the same transaction too (its
// revision compared), and update runs again on a conflict; if it fails nothing is written.
func (s *Store) appendEvent(ctx context.Context, op string, e store.Event, update func(current []byte) ([]byte, error)) (store.Event, error) {
	s.eventsMu.Lock()
	defer s.eventsMu.Unlock()
	var seq, cmod int64
	rctx, cancel := s.rpc(ctx)
	resp, err := s.cli.Get(rctx, s.seqKey())
	cancel()
	for range maxAttempts {
		if err != nil {
			return store.Event{}, s.failed(ctx, op, err)
		}
		seq, cmod = 0, 0
		if len(resp.Kvs) > 0 {
			if seq, err = strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64); err != nil {
				return store.Event{}, fmt.Errorf("etcd: %s: decode event counter: %w", op, err)
			}
			cmod = resp.Kvs[0].ModRevision
		}
		e.Seq = uint64(seq + 1)
		ev, err := json.Marshal(e)
		if err != nil {
			return store.Event{}, fmt.Errorf("etcd: %s: %w", op, err)
		}
		conds := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.seqKey()), "=", cmod)}
		puts := []clientv3.Op{clientv3.OpPut(s.seqKey(), strconv.FormatInt(seq+1, 10)), clientv3.OpPut(s.eventKey(e.Seq), string(ev))}
		if update != nil {
			kv, err := s.getKeys(ctx)
			if err != nil {
				return store.Event{}, s.failed(ctx, op, err)
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
				return store.Event{}, fmt.Errorf("etcd: %s: %w", op, err)
			}
			if next == nil {
				next = []byte{}
			}
			conds = append(conds, clientv3.Compare(clientv3.ModRevision(s.keysKey), "=", mod))
			puts = append(puts, clientv3.OpPut(s.keysKey, string(next)))
		}
		rctx, cancel := s.rpc(ctx)
		tx, err := s.cli.Txn(rctx).If(conds...).Then(puts...).Else(clientv3.OpGet(s.seqKey())).Commit()
		cancel()
		if err != nil {
			return store.Event{}, s.failed(ctx, op, err)
		}
		if tx.Succeeded {
			return e, nil // watchEvents wakes the held polls, as for any append
		}
		resp = (*clientv3.GetResponse)(tx.Responses[0].GetResponseRange())
	}
	return store.Event{}, fmt.Errorf("etcd: %s: %w: gave up after %d conflicting writes", op, store.ErrUnavailable, maxAttempts)
}

// Events returns up to limit events with Seq > after, in Seq order: one range read.
func (s *Store) Events(ctx context.Context, after uint64, limit int) ([]store.Event, error) {
	const op = "events"
	if err := s.reachable(ctx, op); err != nil {
		return nil, err
	}
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, nil
	}
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.eventKey(after+1),
		clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.eventsPrefix())), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return nil, s.failed(ctx, op, err)
	}
	out := make([]store.Event, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var e store.Event
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, fmt.Errorf("etcd: %s: decode %s: %w", op, kv.Key, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// LastEventSeq returns the counter: the newest Seq ever given out, 0 when none.
func (s *Store) LastEventSeq(ctx context.Context) (uint64, error) {
	const op = "last event seq"
	if err := s.reachable(ctx, op); err != nil {
		return 0, err
	}
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.seqKey())
	if err != nil {
		return 0, s.failed(ctx, op, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	seq, err := strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("etcd: %s: decode: %w", op, err)
	}
	return seq, nil
}

// TrimEvents deletes events older than before, reading from the oldest and stopping at the
// first newer one, trimBatchSize at a time. It counts only what it deleted itself.
func (s *Store) TrimEvents(ctx context.Context, before time.Time) (int, error) {
	const op = "trim events"
	if err := s.reachable(ctx, op); err != nil {
		return 0, err
	}
	end := clientv3.GetPrefixRangeEnd(s.eventsPrefix())
	total := 0
	for {
		rctx, cancel := s.rpc(ctx)
		resp, err := s.cli.Get(rctx, s.eventsPrefix(), clientv3.WithRange(end), clientv3.WithLimit(trimBatchSize))
		cancel()
		if err != nil {
			return total, s.failed(ctx, op, err)
		}
		var ops []clientv3.Op
		for _, kv := range resp.Kvs {
			var e struct {
				Time time.Time `json:"time"`
			}
			if err := json.Unmarshal(kv.Value, &e); err != nil {
				return total, fmt.Errorf("etcd: %s: decode %s: %w", op, kv.Key, err)
			}
			if !e.Time.Before(before) {
				break
			}
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		}
		if len(ops) == 0 {
			return total, nil
		}
		rctx, cancel = s.rpc(ctx)
		tx, err := s.cli.Txn(rctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			return total, s.failed(ctx, op, err)
		}
		for _, r := range tx.Responses {
			total += int(r.GetResponseDeleteRange().Deleted)
		}
		if len(ops) < len(resp.Kvs) || !resp.More {
			return total, nil
		}
	}
}

// Streams returns copies of every stream document.
func (s *Store) Streams(ctx context.Context) (map[string][]byte, error) {
	const op = "streams"
	if err := s.reachable(ctx, op); err != nil {
		return nil, err
	}
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.streamsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, s.failed(ctx, op, err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[string(kv.Key[len(s.streamsPrefix()):])] = bytes.Clone(kv.Value)
	}
	return out, nil
}

// PutStreams stores the documents in one transaction (at most 128, etcd's limit).
func (s *Store) PutStreams(ctx context.Context, docs map[string][]byte) error {
	const op = "put streams"
	for id := range docs {
		if id == "" {
			return errors.New("etcd: put streams: empty stream id")
		}
	}
	if len(docs) > maxTxnOps {
		return fmt.Errorf("etcd: put streams: %d documents, at most %d per call", len(docs), maxTxnOps)
	}
	if err := s.reachable(ctx, op); err != nil {
		return err
	}
	ops := make([]clientv3.Op, 0, len(docs))
	for id, doc := range docs {
		ops = append(ops, clientv3.OpPut(s.streamsPrefix()+id, string(doc)))
	}
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	if _, err := s.cli.Txn(rctx).Then(ops...).Commit(); err != nil {
		return s.failed(ctx, op, err)
	}
	return nil
}

// UpdateStreams replaces the documents of stored streams and skips the rest: one transaction
// when every id is stored (each put guarded by its key existing), else one per document.
func (s *Store) UpdateStreams(ctx context.Context, docs map[string][]byte) ([]string, error) {
	const op = "update streams"
	if len(docs) > maxTxnOps {
		return nil, fmt.Errorf("etcd: update streams: %d documents, at most %d per call", len(docs), maxTxnOps)
	}
	if err := s.reachable(ctx, op); err != nil {
		return nil, err
	}
	var cmps []clientv3.Cmp
	var puts []clientv3.Op
	for id, doc := range docs {
		k := s.streamsPrefix() + id
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), ">", 0))
		puts = append(puts, clientv3.OpPut(k, string(doc)))
	}
	rctx, cancel := s.rpc(ctx)
	tx, err := s.cli.Txn(rctx).If(cmps...).Then(puts...).Commit()
	cancel()
	if err != nil {
		return nil, s.failed(ctx, op, err)
	}
	if tx.Succeeded {
		return nil, nil
	}
	var skipped []string
	for id, doc := range docs {
		k := s.streamsPrefix() + id
		rctx, cancel := s.rpc(ctx)
		tx, err := s.cli.Txn(rctx).If(clientv3.Compare(clientv3.CreateRevision(k), ">", 0)).Then(clientv3.OpPut(k, string(doc))).Commit()
		cancel()
		if err != nil {
			return nil, s.failed(ctx, op, err)
		}
		if !tx.Succeeded {
			skipped = append(skipped, id)
		}
	}
	return skipped, nil
}

// DeleteStream removes a stream document; an unknown id is not an error.
func (s *Store) DeleteStream(ctx context.Context, id string) error {
	const op = "delete stream"
	if err := s.reachable(ctx, op); err != nil {
		return err
	}
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	if _, err := s.cli.Delete(rctx, s.streamsPrefix()+id); err != nil {
		return s.failed(ctx, op, err)
	}
	return nil
}

// EventsChanged receives a value (coalesced) whenever any process may have appended to the event
// log, so SSF polls held on this replica wake at once for a logout recorded on another
// (ssf.EventsNotifier).
func (s *Store) EventsChanged() <-chan struct{} { return s.eventsChanged }

func (s *Store) notifyEvents() {
	select {
	case s.eventsChanged <- struct{}{}:
	default:
	}
}

// watchEvents watches the event counter until the store closes. After a broken watch it
// notifies once, since appends may have happened while it was down.
func (s *Store) watchEvents() {
	defer s.wg.Done()
	for s.ctx.Err() == nil {
		for resp := range s.cli.Watch(clientv3.WithRequireLeader(s.ctx), s.seqKey()) {
			if resp.Err() != nil {
				break
			}
			if len(resp.Events) > 0 {
				s.notifyEvents()
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(time.Second):
		}
		s.notifyEvents()
	}
}

func (s *Store) receiverStreamKey() string { return s.cfg.Prefix + "receiver/stream" }

// ReceiverStream returns a copy of the receiver's stream document (a linearizable read).
func (s *Store) ReceiverStream(ctx context.Context) ([]byte, error) {
	const op = "receiver stream"
	if err := s.reachable(ctx, op); err != nil {
		return nil, err
	}
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.receiverStreamKey())
	if err != nil {
		return nil, s.failed(ctx, op, err)
	}
	if len(resp.Kvs) == 0 || len(resp.Kvs[0].Value) == 0 {
		return nil, fmt.Errorf("etcd: %s: %w", op, store.ErrNotFound)
	}
	return bytes.Clone(resp.Kvs[0].Value), nil
}

// PutReceiverStream replaces (or, when doc is empty, deletes) the receiver's stream document.
func (s *Store) PutReceiverStream(ctx context.Context, doc []byte) error {
	const op = "put receiver stream"
	if err := s.reachable(ctx, op); err != nil {
		return err
	}
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	var err error
	if len(doc) == 0 {
		_, err = s.cli.Delete(rctx, s.receiverStreamKey())
	} else {
		_, err = s.cli.Put(rctx, s.receiverStreamKey(), string(doc))
	}
	if err != nil {
		return s.failed(ctx, op, err)
	}
	return nil
}
