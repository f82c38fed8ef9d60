package issuer

import (
	"sync"
	"time"
)

// sweepEvery is how often a write into an expiringMap also removes its expired entries.
const sweepEvery = time.Minute

// expiringMap is the one lifecycle of the issuer's in-memory caches (introspection answers,
// unsealed grants, recheck schedule): every entry carries the time after which it is useless;
// lookups ignore expired entries; a write removes the expired ones, at most once per
// sweepEvery; with a bound, a write of a new key into a full map first evicts an arbitrary
// entry. Nothing outside the map sweeps it. It is safe for concurrent use.
type expiringMap[K comparable, V any] struct {
	max int // 0: unbounded

	mu    sync.RWMutex
	m     map[K]expiringEntry[V]
	swept time.Time
}

type expiringEntry[V any] struct {
	v       V
	expires time.Time
}

// newExpiringMap returns an empty map holding at most max entries (0: no bound).
func newExpiringMap[K comparable, V any](max int) *expiringMap[K, V] {
	return &expiringMap[K, V]{max: max, m: map[K]expiringEntry[V]{}}
}

// get returns the value for k unless it is missing or expired at now.
func (c *expiringMap[K, V]) get(k K, now time.Time) (V, bool) {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// put stores v under k until expires (nothing when expires is not after now).
func (c *expiringMap[K, V]) put(k K, v V, expires, now time.Time) {
	c.update(k, now, func(V, bool) (V, time.Time, bool) { return v, expires, true })
}

// update replaces the entry for k with what f returns, atomically: f gets the current value
// (ok false when there is none or it expired) and returns the new value, its expiry and whether
// to store it.
func (c *expiringMap[K, V]) update(k K, now time.Time, f func(old V, ok bool) (v V, expires time.Time, store bool)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.m[k]
	v, expires, store := f(old.v, ok && now.Before(old.expires))
	if !store || !now.Before(expires) {
		return
	}
	if now.Sub(c.swept) >= sweepEvery {
		c.swept = now
		for key, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, key)
			}
		}
	}
	if _, present := c.m[k]; !present && c.max > 0 && len(c.m) >= c.max {
		for key := range c.m { // evict an arbitrary entry
			delete(c.m, key)
			break
		}
	}
	c.m[k] = expiringEntry[V]{v: v, expires: expires}
}

// len reports the number of entries, expired ones not yet swept included.
func (c *expiringMap[K, V]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
