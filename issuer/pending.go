package issuer

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/internal/store"
)

// DefaultMaxPending bounds the revocations held in memory while the store cannot write them.
const DefaultMaxPending = 65_536

// DefaultWriteTimeout bounds the store write of one logout (the revocation with the claim of the
// logout token's jti, one transaction): past it the caller gets 503 and the revocation is held
// in memory.
const DefaultWriteTimeout = time.Second

// ErrNotWritable is returned (wrapped) by Writable while revocations wait to be written.
var ErrNotWritable = errors.New("issuer: revocations are waiting for the store to accept writes")

// pendingRevocations are logouts the store could not write (disk full, etcd without quorum, a
// write past WriteTimeout). Each was answered 503, never acknowledged; it is refused at this
// process at once (checkRevoked consults it before the store) and written when the store
// accepts writes again (FlushPending). Entries are keyed by session or subject and merged with
// the store's rules, so a logout delivered again while waiting is one entry.
type pendingRevocations struct {
	max   int
	count atomic.Int64

	mu    sync.Mutex
	byKey map[string]*pendingEntry
	seq   uint64
}

// pendingEntry is one revocation waiting to be written.
type pendingEntry struct {
	r     store.Revocation
	token string      // the back-channel logout token behind r, relayed once r is written
	claim store.Claim // the claim of token's jti, written with r
	since time.Time   // when it was first held
	ver   uint64      // changes whenever r is merged with a newer delivery
}

func newPending(max int) *pendingRevocations {
	return &pendingRevocations{max: max, byKey: map[string]*pendingEntry{}}
}

// pendingKey is the entry key of r: its session, or its subject for a subject-wide logout.
func pendingKey(r store.Revocation) string {
	if r.SID != "" {
		return "s:" + r.SID
	}
	return "u:" + r.Sub
}

// hold adds r (merged with a held revocation of the same key), with the back-channel logout
// token behind it and the claim of its jti, if any: an entry keeps those of its latest delivery.
// It reports false, holding nothing, when the bound is reached.
func (p *pendingRevocations) hold(r store.Revocation, token string, c store.Claim, now time.Time) bool {
	k := pendingKey(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	if e, ok := p.byKey[k]; ok {
		if r.SID != "" {
			e.r = store.MergeSession(e.r, r)
		} else {
			e.r = store.MergeSubject(e.r, r)
		}
		if token != "" {
			e.token, e.claim = token, c
		}
		e.ver = p.seq
		return true
	}
	if len(p.byKey) >= p.max {
		return false
	}
	p.byKey[k] = &pendingEntry{r: r, token: token, claim: c, since: now, ver: p.seq}
	p.count.Store(int64(len(p.byKey)))
	return true
}

// session reports whether a logout of session sid is held.
func (p *pendingRevocations) session(sid string) bool {
	if p.count.Load() == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.byKey["s:"+sid]
	return ok
}

// subject returns the held subject-wide logout of sub, if any.
func (p *pendingRevocations) subject(sub string) (store.Revocation, bool) {
	if p.count.Load() == 0 {
		return store.Revocation{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.byKey["u:"+sub]
	if !ok {
		return store.Revocation{}, false
	}
	return e.r, true
}

// written drops the entry of r's key if the stored revocation w covers it.
func (p *pendingRevocations) written(w store.Revocation) {
	if p.count.Load() == 0 {
		return
	}
	k := pendingKey(w)
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.byKey[k]; ok && store.Covers(w, e.r) {
		delete(p.byKey, k)
		p.count.Store(int64(len(p.byKey)))
	}
}

// snapshot returns the held entries, oldest first.
func (p *pendingRevocations) snapshot() []pendingEntry {
	p.mu.Lock()
	out := make([]pendingEntry, 0, len(p.byKey))
	for _, e := range p.byKey {
		out = append(out, *e)
	}
	p.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].since.Before(out[b].since) })
	return out
}

// done drops e once written, unless a newer delivery was merged into it meanwhile (that one
// is written at the next flush).
func (p *pendingRevocations) done(e pendingEntry) {
	k := pendingKey(e.r)
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, ok := p.byKey[k]; ok && cur.ver == e.ver {
		delete(p.byKey, k)
		p.count.Store(int64(len(p.byKey)))
	}
}

// holdUnwritten keeps r, which the store failed to write (err), in memory: refused here at once,
// written by FlushPending, with c, the claim of the jti of the back-channel logout token behind
// it (zero for every other source). The caller answers 503 either way: the logout is not
// acknowledged until it is durable.
func (i *Issuer) holdUnwritten(ctx context.Context, r store.Revocation, token string, c store.Claim, err error) {
	source, _, _ := strings.Cut(r.Reason, ":")
	if !i.pending.hold(r, token, c, i.cfg.Now()) {
		i.cfg.Metrics.Logout(source, "error", "pending_full")
		i.log.ErrorContext(ctx, "revocation could not be written and the pending queue is full: it is not enforced",
			"event", "logout_lost", "reason", r.Reason, "sid", r.SID, "sub", r.Sub, "pending", i.pending.count.Load(),
			"error", err.Error())
		return
	}
	i.cfg.Metrics.Logout(source, "pending", "")
	i.log.ErrorContext(ctx, "revocation could not be written: refused at this process, written when the store accepts writes",
		"event", "logout_pending", "reason", r.Reason, "sid", r.SID, "sub", r.Sub, "pending", i.pending.count.Load(),
		"error", err.Error())
}

// PendingWrites reports how many revocations wait in memory for the store to accept writes.
func (i *Issuer) PendingWrites() int { return int(i.pending.count.Load()) }

// Writable reports an error wrapping ErrNotWritable while revocations wait to be written: the
// store failed a write and has not accepted the retry yet. Readiness fails on it, so a load
// balancer sends traffic to replicas whose store writes.
func (i *Issuer) Writable() error {
	if n := i.pending.count.Load(); n > 0 {
		return ErrNotWritable
	}
	return nil
}

// FlushPending writes the revocations held in memory, oldest first, each with its event (unless
// the store already covers it: a write that timed out may have landed) and, for a back-channel
// logout, the claim of its token's jti in the same transaction, so a replay of that token is
// refused afterwards; then it tells the publisher. It stops at the first failure and reports
// how many remain.
func (i *Issuer) FlushPending(ctx context.Context) (int, error) {
	for _, e := range i.pending.snapshot() {
		ev, o, err := i.flushOne(ctx, e)
		if err != nil {
			return i.PendingWrites(), err
		}
		i.pending.done(e)
		source, _, _ := strings.Cut(e.r.Reason, ":")
		result := "recorded"
		if o != store.Recorded {
			result = "duplicate"
		}
		i.cfg.Metrics.Logout(source, result, "")
		switch {
		case o == store.Recorded:
			i.publish.Recorded(ev, e.token)
		case e.token != "":
			i.publish.AlreadyRecorded(e.token)
		}
		i.log.InfoContext(ctx, "pending revocation written", "event", "logout", "reason", e.r.Reason,
			"sid", e.r.SID, "sub", e.r.Sub, "waited", i.cfg.Now().Sub(e.since).Round(time.Millisecond).String())
	}
	return i.PendingWrites(), nil
}

// flushOne writes the held entry e with its claim. A claim found taken (the token's retry was
// recorded meanwhile, by this process or another) wrote nothing, so e is written again without
// it: a held revocation is always written.
func (i *Issuer) flushOne(ctx context.Context, e pendingEntry) (store.Event, store.Outcome, error) {
	write := func(c store.Claim) (store.Event, store.Outcome, error) {
		wctx, cancel := context.WithTimeout(ctx, i.cfg.WriteTimeout)
		defer cancel()
		return i.store.RecordNewRevocation(wctx, store.Event{ID: newJTI(), Time: i.cfg.Now(), Revocation: e.r, Claim: c})
	}
	ev, o, err := write(e.claim)
	if err == nil && o == store.Replayed {
		ev, o, err = write(store.Claim{})
	}
	return ev, o, err
}

// RunPendingWrites calls FlushPending every interval while revocations wait, until ctx ends.
func (i *Issuer) RunPendingWrites(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if i.PendingWrites() == 0 {
			continue
		}
		if n, err := i.FlushPending(ctx); err != nil && ctx.Err() == nil {
			i.log.WarnContext(ctx, "pending revocations still cannot be written", "event", "store_not_writable",
				"pending", n, "error", err.Error())
		} else if n == 0 {
			i.log.InfoContext(ctx, "every pending revocation is written", "event", "store_writable")
		}
	}
}
