package issuer

import (
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// boundedCache is the one lifecycle of the issuer's in-memory caches (introspection answers,
// unsealed grants, recheck schedule): an otter cache holding at most max entries (W-TinyLFU
// picks what to evict), each entry carrying the time after which it is useless. Lookups
// ignore expired entries, and otter removes them proactively. Nothing a cache holds is the
// only record of a refusal that must outlive an eviction: callers treat a missing entry at
// least as strictly as a present one (see the Bounded memory section of docs/architecture.md).
// It is safe for concurrent use.
type boundedCache[K comparable, V any] struct {
	c         *otter.Cache[K, timed[V]]
	now       func() time.Time
	evictions atomic.Uint64
}

// timed is a cached value and its expiry (Unix nanoseconds by the issuer's clock).
type timed[V any] struct {
	v       V
	expires int64
}

// newBoundedCache returns an empty cache of at most max entries (max ≥ 1) on the clock now.
func newBoundedCache[K comparable, V any](max int, now func() time.Time) *boundedCache[K, V] {
	b := &boundedCache[K, V]{now: now}
	b.c = otter.Must(&otter.Options[K, timed[V]]{
		MaximumSize: max,
		// otter keeps its own clock: the entry is dropped once the time left by the issuer's
		// clock has passed; lookups compare with the issuer's clock.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[K, timed[V]]) time.Duration {
			return time.Duration(e.Value.expires - b.now().UnixNano())
		}),
		OnAtomicDeletion: func(e otter.DeletionEvent[K, timed[V]]) {
			if e.Cause == otter.CauseOverflow {
				b.evictions.Add(1)
			}
		},
	})
	return b
}

// get returns the value for k unless it is missing or expired at now.
func (c *boundedCache[K, V]) get(k K, now time.Time) (V, bool) {
	e, ok := c.c.GetIfPresent(k)
	if !ok || now.UnixNano() >= e.expires {
		var zero V
		return zero, false
	}
	return e.v, true
}

// put stores v under k until expires (nothing when expires is not after now).
func (c *boundedCache[K, V]) put(k K, v V, expires, now time.Time) {
	if !now.Before(expires) {
		return
	}
	c.c.Set(k, timed[V]{v: v, expires: expires.UnixNano()})
}

// update replaces the entry for k with what f returns, atomically: f gets the current value
// (ok false when there is none or it expired) and returns the new value, its expiry and whether
// to store it.
func (c *boundedCache[K, V]) update(k K, now time.Time, f func(old V, ok bool) (v V, expires time.Time, store bool)) {
	c.c.Compute(k, func(old timed[V], found bool) (timed[V], otter.ComputeOp) {
		v, expires, store := f(old.v, found && now.UnixNano() < old.expires)
		if !store || !now.Before(expires) {
			return old, otter.CancelOp
		}
		return timed[V]{v: v, expires: expires.UnixNano()}, otter.WriteOp
	})
}

// forget removes the entry for k.
func (c *boundedCache[K, V]) forget(k K) { c.c.Invalidate(k) }

// len reports the number of entries, expired ones not yet removed included.
func (c *boundedCache[K, V]) len() int { return c.c.EstimatedSize() }

// evicted reports how many entries the bound has evicted.
func (c *boundedCache[K, V]) evicted() uint64 { return c.evictions.Load() }

// settle runs the cache's pending maintenance (evictions included) now; for tests.
func (c *boundedCache[K, V]) settle() { c.c.CleanUp() }
