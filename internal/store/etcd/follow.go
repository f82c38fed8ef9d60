package etcd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// loadPageSize bounds the records fetched per round trip of a full load.
const loadPageSize = 5000

// freshTarget says: once the watch has applied revision rev, the index is fresh as of at.
type freshTarget struct {
	rev int64
	at  int64
}

// load reads every record at one revision R into a new index, which the watch then follows
// from R+1. It runs at Open (initial) and after the watch's revision was compacted away. A
// reload marks the index fresh as of the moment it began (a linearizable read); the initial
// load does not: a replica that just started answers nothing until catchUp has seen its watch
// deliver what etcd held after the load, so it cannot answer from an index that misses a
// logout acknowledged while its watch was being set up.
func (s *Store) load(ctx context.Context, initial bool) error {
	at := s.now()
	var records [numKinds]map[string]entry
	for k := range records {
		records[k] = map[string]entry{}
	}
	end := clientv3.GetPrefixRangeEnd(s.dataPrefix)
	from, rev := s.dataPrefix, int64(0)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		rctx, cancel := s.rpc(ctx)
		resp, err := s.cli.Get(rctx, from, opts...)
		cancel()
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			k, id := s.parse(string(kv.Key))
			if k >= numKinds {
				continue
			}
			e, err := decode(k, kv.Value, kv.ModRevision)
			if err != nil {
				s.log.Error("etcd store: undecodable record skipped", "kind", k.String(), "id", id, "error", err.Error())
				continue
			}
			records[k][id] = e
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	s.idx.replace(records, rev)
	maxInt64(&s.watchRev, rev)
	s.reloads.Add(1)
	if !initial {
		s.markFresh(at)
	}
	s.notifyKeys()
	return nil
}

// beatTTL is the lease of the key a replica writes to prove its watch follows etcd.
const beatTTL = 60

// catchUp runs once after Open's load: lookups and writes fail until it closes caughtUp. It
// writes the replica's heartbeat key under the watched prefix (beat) and waits until the watch,
// which delivers every event from the load's revision on in order, has delivered that write.
// Every logout etcd acknowledged before the write began is then in the index, and the index is
// fresh as of that moment. Until then lookups and writes fail with store.ErrUnavailable (the
// gateway's token endpoint answers 503 with Retry-After, /readyz 503).
func (s *Store) catchUp() {
	defer s.wg.Done()
	defer close(s.caughtUp)
	for s.ctx.Err() == nil {
		at := s.now()
		rev, err := s.beat(s.cfg.RequestTimeout)
		if err != nil {
			s.log.Warn("etcd store: cannot prove the index caught up yet", "error", err.Error())
			sleepCtx(s.ctx, 100*time.Millisecond)
			continue
		}
		s.awaitRevision(rev, at)
		for range 200 {
			if s.Staleness() <= s.cfg.MaxStaleness {
				return
			}
			sleepCtx(s.ctx, 5*time.Millisecond)
		}
	}
}

// beat writes the replica's heartbeat key (under a beatTTL lease it reuses, granting a new one
// once etcd has let it expire) and returns the write's revision. Freshness is proven by the
// watch delivering this write, never by a progress notification: etcd before 3.4.25 and 3.5.8
// (Debian ships 3.4.23) may answer a progress request with a revision the stream has not
// delivered yet (etcd-io/etcd#15220), which would vouch for logouts the index does not hold.
func (s *Store) beat(timeout time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	for try := 0; ; try++ {
		id := clientv3.LeaseID(s.beatLease.Load())
		if id == 0 {
			lease, err := s.cli.Grant(ctx, beatTTL)
			if err != nil {
				return 0, fmt.Errorf("grant: %w", err)
			}
			id = lease.ID
			s.beatLease.Store(int64(id))
		}
		resp, err := s.cli.Put(ctx, s.beatKey, "", clientv3.WithLease(id))
		if err == nil {
			return resp.Header.Revision, nil
		}
		if try == 0 && errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.beatLease.Store(0) // expired (beatTTL) or revoked: grant another
			continue
		}
		return 0, fmt.Errorf("put: %w", err)
	}
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// errCompacted ends a watch whose next revision etcd no longer has.
var errCompacted = errors.New("watch revision compacted")

// follow keeps the index following etcd until Close: it watches from the revision after the
// last one applied, resumes there when the watch ends, and reloads in full only when that
// revision was compacted.
func (s *Store) follow() {
	defer s.wg.Done()
	pause := newBackoff(50*time.Millisecond, 2*time.Second)
	for s.ctx.Err() == nil {
		began := time.Now()
		err := s.watch()
		if s.ctx.Err() != nil {
			return
		}
		if time.Since(began) > 10*time.Second {
			pause.reset() // it had been working: resume promptly
		}
		if errors.Is(err, errCompacted) {
			s.log.Warn("etcd store: watch revision compacted, reloading every record", "after_revision", s.watchRev.Load())
			for s.ctx.Err() == nil {
				if err := s.load(s.ctx, false); err == nil {
					break
				} else {
					s.log.Warn("etcd store: reload failed", "error", err.Error())
				}
				pause.sleep(s.ctx)
			}
			pause.reset()
			continue
		}
		s.log.Warn("etcd store: watch ended, resuming", "from_revision", s.watchRev.Load()+1, "error", err.Error())
		pause.sleep(s.ctx)
	}
}

// watch applies watch responses from the revision after watchRev until the watch fails.
func (s *Store) watch() error {
	// RequireLeader: a member cut off from the cluster's leader ends the watch instead of
	// silently serving nothing; we then resume on another member.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
	defer cancel()
	from := s.watchRev.Load() + 1
	wch := s.cli.Watch(wctx, s.dataPrefix, clientv3.WithPrefix(), clientv3.WithRev(from))
	s.running.Store(&runningWatch{cancel: cancel})
	defer s.running.Store(nil)
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("%w: compacted up to %d", errCompacted, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return errCompacted
			}
			return err
		}
		s.apply(resp)
	}
	if err := wctx.Err(); err != nil {
		return err
	}
	return errors.New("watch channel closed")
}

// apply updates the index with one watch response and advances watchRev.
func (s *Store) apply(resp clientv3.WatchResponse) {
	var last int64
	keys := false
	if len(resp.Events) > 0 {
		s.idx.mu.Lock()
		for _, ev := range resp.Events {
			k, id := s.parse(string(ev.Kv.Key))
			rev := ev.Kv.ModRevision
			last = rev
			switch {
			case k == kindKeys:
				keys = true
			case k >= numKinds:
			case ev.Type == clientv3.EventTypeDelete:
				s.idx.removeLocked(k, id, rev, false)
			default:
				e, err := decode(k, ev.Kv.Value, rev)
				if err != nil {
					s.log.Error("etcd store: undecodable record skipped", "kind", k.String(), "id", id, "error", err.Error())
					continue
				}
				s.idx.putLocked(k, id, e)
			}
		}
		s.idx.mu.Unlock()
	}
	// A progress notification (none is requested, but etcd may send one) advances nothing: on
	// etcd before 3.4.25 / 3.5.8 its revision can be ahead of the events delivered (see beat).
	if last > 0 {
		s.advance(last)
	}
	if keys {
		s.notifyKeys()
	}
}

// advance records that the watch applied every event up to rev, and marks the index fresh as of
// any probe that was waiting for that revision.
func (s *Store) advance(rev int64) {
	maxInt64(&s.watchRev, rev)
	s.idx.pruneTombs(rev)
	s.targetsMu.Lock()
	best := int64(-1)
	keep := s.targets[:0]
	for _, t := range s.targets {
		if t.rev <= rev {
			best = max(best, t.at)
		} else {
			keep = append(keep, t)
		}
	}
	s.targets = keep
	s.targetsMu.Unlock()
	if best >= 0 {
		s.markFresh(best)
	}
}

// runningWatch is the watch follow is reading (its cancel ends it; tests use that).
type runningWatch struct {
	cancel context.CancelFunc
}

// maxTargets bounds the probes waiting for the watch; the oldest are dropped first.
const maxTargets = 16

// awaitRevision marks the index fresh as of at once the watch has applied rev.
func (s *Store) awaitRevision(rev, at int64) {
	s.targetsMu.Lock()
	defer s.targetsMu.Unlock()
	if s.watchRev.Load() >= rev {
		s.markFresh(at)
		return
	}
	if len(s.targets) >= maxTargets {
		s.targets = append(s.targets[:0], s.targets[1:]...)
	}
	s.targets = append(s.targets, freshTarget{rev: rev, at: at})
}

// probe proves freshness every MaxStaleness/4: it writes the heartbeat key (beat), started at
// t; once the watch has delivered that write, every write etcd acknowledged before t is in the
// index, so the index is fresh as of t. On a quiet prefix the heartbeat is the event that
// carries the watch forward.
func (s *Store) probe() {
	defer s.wg.Done()
	select { // the first proof is catchUp's
	case <-s.ctx.Done():
		return
	case <-s.caughtUp:
	}
	t := time.NewTicker(max(s.cfg.MaxStaleness/4, 10*time.Millisecond))
	defer t.Stop()
	// Probes overlap (up to maxProbes): a heartbeat stuck while etcd has no quorum must not
	// delay the one that proves freshness as soon as the quorum is back.
	var inflight atomic.Int32
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if inflight.Load() < maxProbes {
			inflight.Add(1)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer inflight.Add(-1)
				s.probeOnce()
			}()
		}
		if age := s.Staleness(); age > s.cfg.MaxStaleness && !s.stale.Swap(true) {
			s.log.Error("etcd store: no proof of following etcd; refusing lookups and writes until it returns",
				"event", "store_stale", "staleness", age.String(), "max_staleness", s.cfg.MaxStaleness.String(),
				"watch_revision", s.watchRev.Load())
		}
	}
}

// maxProbes bounds the heartbeats in flight at once.
const maxProbes = 4

func (s *Store) probeOnce() {
	at := s.now()
	rev, err := s.beat(s.cfg.MaxStaleness)
	if err != nil {
		return
	}
	s.awaitRevision(rev, at)
}

// markFresh records that the index held every acknowledged write as of at.
func (s *Store) markFresh(at int64) {
	maxInt64(&s.freshAt, at)
	if s.Staleness() <= s.cfg.MaxStaleness && s.stale.Swap(false) {
		s.log.Info("etcd store: following etcd again", "event", "store_fresh", "watch_revision", s.watchRev.Load())
	}
}

func maxInt64(v *atomic.Int64, n int64) {
	for {
		cur := v.Load()
		if n <= cur || v.CompareAndSwap(cur, n) {
			return
		}
	}
}

// backoff is an exponential pause between retries.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(lo, hi time.Duration) *backoff { return &backoff{min: lo, max: hi, cur: lo} }

func (b *backoff) reset() { b.cur = b.min }

func (b *backoff) sleep(ctx context.Context) {
	t := time.NewTimer(b.cur)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	b.cur = min(2*b.cur, b.max)
}

// newToken returns a random identifier for a replica's keys.
func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥1.24)
	return hex.EncodeToString(b[:])
}
