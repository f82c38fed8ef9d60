package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tokengate/tokengate/internal/store"
)

// The event log lives in two more buckets, created on first write (older files have neither;
// a missing bucket reads as empty): events, keyed by the big-endian Seq with the JSON event as
// value, whose bucket sequence (NextSequence) is the durable Seq counter; and streams, keyed
// by stream id with opaque documents.
var (
	bucketEvents  = []byte("events")
	bucketStreams = []byte("streams")
)

var (
	_ store.EventLog      = (*Store)(nil)
	_ store.ReceiverState = (*Store)(nil)
)

// receiverStreamKey holds the Shared Signals receiver's stream document in the meta bucket.
var receiverStreamKey = []byte("receiver-stream")

// trimBatchSize bounds the events TrimEvents deletes per transaction.
const trimBatchSize = 1000

// RecordRevocation records e.Revocation and appends e to the event log in the same bbolt
// transaction (one fsync), so an acknowledged logout always has its event.
func (s *Store) RecordRevocation(ctx context.Context, e store.Event) (store.Event, error) {
	if e.Claim != (store.Claim{}) {
		return store.Event{}, fmt.Errorf("bolt: record revocation: %w", store.ErrClaimNeedsNew)
	}
	e, _, err := s.record(ctx, "record revocation", e, false)
	return e, err
}

// RecordNewRevocation is RecordRevocation unless a stored revocation covers e.Revocation; the
// check, the claim of e.Claim.JTI (when set) and the write are one write transaction.
func (s *Store) RecordNewRevocation(ctx context.Context, e store.Event) (store.Event, store.Outcome, error) {
	return s.record(ctx, "record new revocation", e, true)
}

// RecordKeyRevocation runs update on the key document like UpdateKeys and appends the key event
// e, in one bbolt transaction: if update fails, nothing is written.
func (s *Store) RecordKeyRevocation(ctx context.Context, e store.Event, update func(current []byte) ([]byte, error)) (store.Event, error) {
	const op = "record key revocation"
	if err := e.Check(); err != nil {
		return store.Event{}, fmt.Errorf("bolt: %s: %w", op, err)
	}
	if e.KeyRevoked == "" {
		return store.Event{}, fmt.Errorf("bolt: %s: not a key event", op)
	}
	err := s.update(ctx, op, func(tx *bbolt.Tx) error {
		if err := putKeys(tx, update); err != nil {
			return err
		}
		return appendEvent(tx, &e)
	})
	if err != nil {
		return store.Event{}, err
	}
	return e, nil
}

func (s *Store) record(ctx context.Context, op string, e store.Event, onlyNew bool) (store.Event, store.Outcome, error) {
	if err := e.Check(); err != nil {
		return store.Event{}, 0, fmt.Errorf("bolt: %s: %w", op, err)
	}
	r := e.Revocation
	var got store.Outcome
	err := s.update(ctx, op, func(tx *bbolt.Tx) error {
		got = 0
		if e.Claim.JTI != "" {
			fresh, err := claimJTI(tx, e.Claim.JTI, e.Claim.Expires)
			if err != nil {
				return err
			}
			if !fresh {
				got = store.Replayed
				return nil // a replay writes nothing
			}
		}
		bucket, id := bucketSubjects, r.Sub
		if r.SID != "" {
			bucket, id = bucketSessions, r.SID
		}
		if v := tx.Bucket(bucket).Get([]byte(id)); onlyNew && e.KeyRevoked == "" && v != nil {
			var old store.Revocation
			if err := json.Unmarshal(v, &old); err != nil {
				return fmt.Errorf("decode %q: %w", id, err)
			}
			if store.Covers(old, r) {
				got = store.Covered
				return nil // the claim, if any, is kept
			}
		}
		var err error
		switch {
		case e.KeyRevoked != "": // a key event records no revocation
		case r.SID != "":
			err = putSession(tx, r)
		default:
			err = putSubject(tx, r)
		}
		if err != nil {
			return err
		}
		if err := appendEvent(tx, &e); err != nil {
			return err
		}
		got = store.Recorded
		return nil
	})
	switch {
	case err != nil:
		return store.Event{}, 0, err
	case got != store.Recorded:
		return store.Event{}, got, nil
	}
	return e, got, nil
}

// appendEvent numbers e and appends it to the event log inside tx.
func appendEvent(tx *bbolt.Tx, e *store.Event) error {
	b, err := tx.CreateBucketIfNotExists(bucketEvents)
	if err != nil {
		return err
	}
	if e.Seq, err = b.NextSequence(); err != nil {
		return err
	}
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return b.Put(seqKey(e.Seq), v)
}

// Events returns up to limit events with Seq > after, in Seq order: one cursor seek.
func (s *Store) Events(ctx context.Context, after uint64, limit int) ([]store.Event, error) {
	var out []store.Event
	err := s.view(ctx, "events", func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil || limit <= 0 || after == ^uint64(0) {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var e store.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// LastEventSeq returns the events bucket's sequence: the newest Seq ever given out.
func (s *Store) LastEventSeq(ctx context.Context) (uint64, error) {
	var seq uint64
	err := s.view(ctx, "last event seq", func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketEvents); b != nil {
			seq = b.Sequence()
		}
		return nil
	})
	return seq, err
}

// TrimEvents deletes events older than before, walking from the oldest and stopping at the
// first newer one, in transactions of at most trimBatchSize events.
func (s *Store) TrimEvents(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		n, more := 0, false
		err := s.update(ctx, "trim events", func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketEvents)
			if b == nil {
				return nil
			}
			var old [][]byte
			c := b.Cursor()
			for k, v := c.First(); k != nil && len(old) < trimBatchSize; k, v = c.Next() {
				var e struct {
					Time time.Time `json:"time"`
				}
				if err := json.Unmarshal(v, &e); err != nil {
					return fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(k), err)
				}
				if !e.Time.Before(before) {
					break
				}
				old = append(old, bytes.Clone(k))
			}
			for _, k := range old {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			n, more = len(old), len(old) == trimBatchSize
			return nil
		})
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// Streams returns copies of every stream document.
func (s *Store) Streams(ctx context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.view(ctx, "streams", func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketStreams)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PutStreams stores the documents in one transaction.
func (s *Store) PutStreams(ctx context.Context, docs map[string][]byte) error {
	for id := range docs {
		if id == "" {
			return errors.New("bolt: put streams: empty stream id")
		}
	}
	return s.update(ctx, "put streams", func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketStreams)
		if err != nil {
			return err
		}
		for id, doc := range docs {
			if doc == nil {
				doc = []byte{}
			}
			if err := b.Put([]byte(id), bytes.Clone(doc)); err != nil {
				return err
			}
		}
		return nil
	})
}

// UpdateStreams replaces the documents of stored streams in one transaction and skips the rest.
func (s *Store) UpdateStreams(ctx context.Context, docs map[string][]byte) ([]string, error) {
	var skipped []string
	err := s.update(ctx, "update streams", func(tx *bbolt.Tx) error {
		skipped = skipped[:0]
		b := tx.Bucket(bucketStreams)
		for id, doc := range docs {
			if b == nil || id == "" || b.Get([]byte(id)) == nil {
				skipped = append(skipped, id)
				continue
			}
			if doc == nil {
				doc = []byte{}
			}
			if err := b.Put([]byte(id), bytes.Clone(doc)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return skipped, nil
}

// DeleteStream removes a stream document.
func (s *Store) DeleteStream(ctx context.Context, id string) error {
	return s.update(ctx, "delete stream", func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketStreams); b != nil {
			return b.Delete([]byte(id))
		}
		return nil
	})
}

// ReceiverStream returns a copy of the receiver's stream document (meta bucket).
func (s *Store) ReceiverStream(ctx context.Context) ([]byte, error) {
	var doc []byte
	err := s.view(ctx, "receiver stream", func(tx *bbolt.Tx) error {
		doc = bytes.Clone(tx.Bucket(bucketMeta).Get(receiverStreamKey))
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case len(doc) == 0:
		return nil, fmt.Errorf("bolt: receiver stream: %w", store.ErrNotFound)
	}
	return doc, nil
}

// PutReceiverStream replaces (or, when doc is empty, deletes) the receiver's stream document.
func (s *Store) PutReceiverStream(ctx context.Context, doc []byte) error {
	return s.update(ctx, "put receiver stream", func(tx *bbolt.Tx) error {
		if len(doc) == 0 {
			return tx.Bucket(bucketMeta).Delete(receiverStreamKey)
		}
		return tx.Bucket(bucketMeta).Put(receiverStreamKey, bytes.Clone(doc))
	})
}

// putSession is RevokeSession's write, for use inside a transaction.
func putSession(tx *bbolt.Tx, r store.Revocation) error {
	return putRevocation(tx, bucketSessions, kindSession, r.SID, r, store.MergeSession)
}

// putSubject is RevokeSubject's write, for use inside a transaction.
func putSubject(tx *bbolt.Tx, r store.Revocation) error {
	return putRevocation(tx, bucketSubjects, kindSubject, r.Sub, r, store.MergeSubject)
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}
