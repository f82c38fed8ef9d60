// Package bolt is a store.Store backend on a single bbolt file, for one tokengate process.
//
// Layout: one bucket per record kind (sessions, subjects, jtis) keyed by id with JSON values,
// a keys bucket holding the opaque key document, and an expiry index bucket whose keys are
// big-endian expiry unix nanoseconds, a kind byte and the id. Lookups are a single Get; GC
// range-scans only the expired prefix of the index. Every write is one bbolt transaction,
// fsynced on commit unless Options.NoSync is set.
//
// Lookups ignore the clock: an expired revocation is returned until GC removes it. A jti claim
// (RecordNewRevocation) treats one whose expiry is not after time.Now as free.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/tokengate/tokengate/internal/store"
)

// DefaultLockTimeout is how long Open waits for the file lock when Options.LockTimeout is zero.
const DefaultLockTimeout = time.Second

// ErrLocked is returned (wrapped) by Open when another process holds the database file.
var ErrLocked = errors.New("file is locked by another tokengate process")

// Options tunes Open. The zero value is the durable default.
type Options struct {
	// LockTimeout bounds how long Open waits for the exclusive file lock; zero means
	// DefaultLockTimeout.
	LockTimeout time.Duration
	// NoSync skips fsync on commit. A crash may then lose acknowledged writes: tests and
	// benchmarks only.
	NoSync bool
	// Mode is the permission of a newly created file; zero means 0600.
	Mode os.FileMode
}

// Store is a store.Store on a bbolt file. It is safe for concurrent use.
type Store struct {
	db *bbolt.DB
}

var _ store.Store = (*Store)(nil)

var (
	bucketMeta     = []byte("meta")
	bucketSessions = []byte("sessions")
	bucketSubjects = []byte("subjects")
	bucketJTIs     = []byte("jtis")
	bucketKeys     = []byte("keys")
	bucketExpiry   = []byte("expiry")

	keyVersion  = []byte("version")
	keyDocument = []byte("document")

	schemaVersion = []byte("1")
)

// Kind bytes in expiry index keys.
const (
	kindSession byte = 's'
	kindSubject byte = 'u'
	kindJTI     byte = 'j'
)

// gcBatchSize bounds the records GC deletes per transaction, so a large backlog neither holds the
// writer lock for long nor ignores cancellation.
const gcBatchSize = 1000

var (
	errSessionNotFound = fmt.Errorf("bolt: session revocation: %w", store.ErrNotFound)
	errSubjectNotFound = fmt.Errorf("bolt: subject revocation: %w", store.ErrNotFound)
	errKeysNotFound    = fmt.Errorf("bolt: keys: %w", store.ErrNotFound)
)

// Open opens or creates the database at path. It fails with an error wrapping ErrLocked if
// another process holds the file for longer than opts.LockTimeout.
func Open(path string, opts Options) (*Store, error) {
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	mode := opts.Mode
	if mode == 0 {
		mode = 0o600
	}
	bopts := *bbolt.DefaultOptions
	bopts.Timeout = timeout
	bopts.NoSync = opts.NoSync
	db, err := bbolt.Open(path, mode, &bopts)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("bolt: open %s: %w (gave up after %s)", path, ErrLocked, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	if err := db.Update(initSchema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

func initSchema(tx *bbolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	switch v := meta.Get(keyVersion); {
	case v == nil:
		if err := meta.Put(keyVersion, schemaVersion); err != nil {
			return err
		}
	case !bytes.Equal(v, schemaVersion):
		return fmt.Errorf("schema version %q, this build reads %q", v, schemaVersion)
	}
	for _, name := range [][]byte{bucketSessions, bucketSubjects, bucketJTIs, bucketKeys, bucketExpiry} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	// Record counts are kept in meta so Stats never walks the data. A file written before the
	// counters existed is counted once, here.
	for _, k := range []byte{kindSession, kindSubject, kindJTI} {
		if meta.Get(countKey(k)) == nil {
			n := tx.Bucket(kindBucket(k)).Stats().KeyN
			if err := meta.Put(countKey(k), binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
				return err
			}
		}
	}
	return nil
}

// countKey is the meta key holding the number of records of a kind.
func countKey(kind byte) []byte { return []byte{'n', kind} }

// kindBucket is the bucket of a kind's records.
func kindBucket(kind byte) []byte {
	switch kind {
	case kindSession:
		return bucketSessions
	case kindSubject:
		return bucketSubjects
	default:
		return bucketJTIs
	}
}

// addCount adjusts a kind's record count in the same transaction as the change.
func addCount(tx *bbolt.Tx, kind byte, delta int64) error {
	meta := tx.Bucket(bucketMeta)
	var n int64
	if v := meta.Get(countKey(kind)); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	n += delta
	if n < 0 {
		n = 0
	}
	return meta.Put(countKey(kind), binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// Close releases the file and its lock. Later calls fail with store.ErrUnavailable; closing
// again is a no-op.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close: %w", err)
	}
	return nil
}

// putRevocation stores r under id, merged with any existing record (merge(old, r)), and moves
// its index entry.
func putRevocation(tx *bbolt.Tx, bucket []byte, kind byte, id string, r store.Revocation, merge func(old, r store.Revocation) store.Revocation) error {
	b, idx := tx.Bucket(bucket), tx.Bucket(bucketExpiry)
	v := b.Get([]byte(id))
	if v == nil {
		if err := addCount(tx, kind, 1); err != nil {
			return err
		}
	} else {
		var old store.Revocation
		if err := json.Unmarshal(v, &old); err != nil {
			return fmt.Errorf("decode %q: %w", id, err)
		}
		r = merge(old, r)
		if err := idx.Delete(indexKey(old.Expires, kind, id)); err != nil {
			return err
		}
	}
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := b.Put([]byte(id), v); err != nil {
		return err
	}
	return idx.Put(indexKey(r.Expires, kind, id), []byte{})
}

// SessionRevocation returns the session logout for sid, or an error wrapping store.ErrNotFound.
func (s *Store) SessionRevocation(ctx context.Context, sid string) (store.Revocation, error) {
	return s.revocation(ctx, "session revocation", bucketSessions, sid, errSessionNotFound)
}

// SubjectRevocation returns the subject-wide logout for sub, or an error wrapping
// store.ErrNotFound.
func (s *Store) SubjectRevocation(ctx context.Context, sub string) (store.Revocation, error) {
	return s.revocation(ctx, "subject revocation", bucketSubjects, sub, errSubjectNotFound)
}

func (s *Store) revocation(ctx context.Context, op string, bucket []byte, id string, notFound error) (store.Revocation, error) {
	if id == "" {
		return store.Revocation{}, fmt.Errorf("bolt: %s: empty id", op)
	}
	var (
		r     store.Revocation
		found bool
	)
	err := s.view(ctx, op, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucket).Get([]byte(id))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &r)
	})
	switch {
	case err != nil:
		return store.Revocation{}, err
	case !found:
		return store.Revocation{}, notFound
	}
	return r, nil
}

// jtiRecord is the stored value of a jti claim.
type jtiRecord struct {
	Expires time.Time `json:"expires"`
}

// claimJTI claims jti until expires inside tx; false (nothing written) when a claim that has
// not expired holds it.
func claimJTI(tx *bbolt.Tx, jti string, expires time.Time) (bool, error) {
	b, idx := tx.Bucket(bucketJTIs), tx.Bucket(bucketExpiry)
	v := b.Get([]byte(jti))
	if v == nil {
		if err := addCount(tx, kindJTI, 1); err != nil {
			return false, err
		}
	} else {
		var old jtiRecord
		if err := json.Unmarshal(v, &old); err != nil {
			return false, fmt.Errorf("decode %q: %w", jti, err)
		}
		if old.Expires.After(time.Now()) {
			return false, nil
		}
		if err := idx.Delete(indexKey(old.Expires, kindJTI, jti)); err != nil {
			return false, err
		}
	}
	v, err := json.Marshal(jtiRecord{Expires: expires})
	if err != nil {
		return false, err
	}
	if err := b.Put([]byte(jti), v); err != nil {
		return false, err
	}
	return true, idx.Put(indexKey(expires, kindJTI, jti), []byte{})
}

// Keys returns a copy of the key document, or an error wrapping store.ErrNotFound.
func (s *Store) Keys(ctx context.Context) ([]byte, error) {
	var doc []byte
	err := s.view(ctx, "keys", func(tx *bbolt.Tx) error {
		doc = bytes.Clone(tx.Bucket(bucketKeys).Get(keyDocument))
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case doc == nil:
		return nil, errKeysNotFound
	}
	return doc, nil
}

// UpdateKeys passes a copy of the key document (nil when none) to update and stores what it
// returns, in one write transaction; bbolt's single writer serialises concurrent callers. If
// update fails, nothing is written and its error is returned wrapped.
func (s *Store) UpdateKeys(ctx context.Context, update func(current []byte) ([]byte, error)) error {
	return s.update(ctx, "update keys", func(tx *bbolt.Tx) error { return putKeys(tx, update) })
}

// putKeys runs update on the key document inside tx and stores what it returns.
func putKeys(tx *bbolt.Tx, update func(current []byte) ([]byte, error)) error {
	b := tx.Bucket(bucketKeys)
	next, err := update(bytes.Clone(b.Get(keyDocument)))
	if err != nil {
		return err
	}
	if next == nil {
		next = []byte{}
	}
	return b.Put(keyDocument, next)
}

// GC deletes revocations and jti claims whose Expires is before now and reports how many. It
// walks only the expired prefix of the expiry index, in transactions of at most gcBatchSize
// records, and stops between batches if ctx is done (returning the count so far).
func (s *Store) GC(ctx context.Context, now time.Time) (int, error) {
	limit := expiryNanos(now)
	total := 0
	for {
		var (
			removed int
			more    bool
		)
		err := s.update(ctx, "gc", func(tx *bbolt.Tx) error {
			var err error
			removed, more, err = gcBatch(tx, limit)
			return err
		})
		if err != nil {
			return total, err
		}
		total += removed
		if !more {
			return total, nil
		}
	}
}

// gcBatch deletes up to gcBatchSize records whose index expiry is below limit. more reports
// that the batch was full, so expired entries may remain.
func gcBatch(tx *bbolt.Tx, limit uint64) (removed int, more bool, err error) {
	idx := tx.Bucket(bucketExpiry)
	var expired [][]byte
	c := idx.Cursor()
	for k, _ := c.First(); k != nil && len(expired) < gcBatchSize; k, _ = c.Next() {
		if len(k) < 9 || binary.BigEndian.Uint64(k) >= limit {
			break
		}
		expired = append(expired, bytes.Clone(k))
	}
	for _, k := range expired {
		ok, err := deleteIndexed(tx, k)
		if err != nil {
			return 0, false, err
		}
		if ok {
			removed++
		}
		if err := idx.Delete(k); err != nil {
			return 0, false, err
		}
	}
	return removed, len(expired) == gcBatchSize, nil
}

// deleteIndexed deletes the record an expiry index key points at, if the record still carries
// that expiry. It reports whether a record was deleted.
func deleteIndexed(tx *bbolt.Tx, k []byte) (bool, error) {
	var bucket []byte
	switch k[8] {
	case kindSession:
		bucket = bucketSessions
	case kindSubject:
		bucket = bucketSubjects
	case kindJTI:
		bucket = bucketJTIs
	default:
		return false, nil
	}
	id := k[9:]
	b := tx.Bucket(bucket)
	v := b.Get(id)
	if v == nil {
		return false, nil
	}
	var rec struct {
		Expires time.Time `json:"expires"`
	}
	if err := json.Unmarshal(v, &rec); err != nil {
		return false, fmt.Errorf("decode %q: %w", id, err)
	}
	if expiryNanos(rec.Expires) != binary.BigEndian.Uint64(k) {
		return false, nil // stale index entry; the record lives on under its current expiry
	}
	if err := b.Delete(id); err != nil {
		return false, err
	}
	return true, addCount(tx, k[8], -1)
}

// Stats counts the stored records, expired or not.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	var st store.Stats
	err := s.view(ctx, "stats", func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		count := func(kind byte) int {
			if v := meta.Get(countKey(kind)); len(v) == 8 {
				return int(binary.BigEndian.Uint64(v))
			}
			return 0
		}
		st.Sessions, st.Subjects, st.JTIs = count(kindSession), count(kindSubject), count(kindJTI)
		return nil
	})
	return st, err
}

func (s *Store) update(ctx context.Context, op string, fn func(*bbolt.Tx) error) error {
	return s.run(ctx, op, s.db.Update, fn)
}

func (s *Store) view(ctx context.Context, op string, fn func(*bbolt.Tx) error) error {
	return s.run(ctx, op, s.db.View, fn)
}

// run checks ctx, runs fn in a transaction and wraps errors: those from fn as they are, those
// from bbolt itself (closed database, failed commit or sync) as store.ErrUnavailable.
func (s *Store) run(ctx context.Context, op string, txn func(func(*bbolt.Tx) error) error, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	var inner error
	err := txn(func(tx *bbolt.Tx) error {
		inner = fn(tx)
		return inner
	})
	switch {
	case err == nil:
		return nil
	case inner != nil:
		return fmt.Errorf("bolt: %s: %w", op, err)
	default:
		return fmt.Errorf("bolt: %s: %w: %w", op, store.ErrUnavailable, err)
	}
}

// indexKey is the expiry index key of a record: big-endian expiry nanos, kind, id.
func indexKey(expires time.Time, kind byte, id string) []byte {
	k := make([]byte, 9+len(id))
	binary.BigEndian.PutUint64(k, expiryNanos(expires))
	k[8] = kind
	copy(k[9:], id)
	return k
}

var (
	minExpiry = time.Unix(0, 0)
	maxExpiry = time.Unix(0, math.MaxInt64)
)

// expiryNanos maps t to unix nanoseconds, clamped to [1970, 2262] where UnixNano is defined.
func expiryNanos(t time.Time) uint64 {
	switch {
	case t.Before(minExpiry):
		return 0
	case t.After(maxExpiry):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}
