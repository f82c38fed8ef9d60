package issuer

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokengate/tokengate/upstream"
)

// introspectionCache remembers introspection answers by SHA-256 of the token until the token
// expires, and shares one upstream call among concurrent identical requests.
type introspectionCache struct {
	now    func() time.Time
	flight singleflight.Group

	mu      sync.Mutex
	entries map[[32]byte]cachedIntrospection
	sweep   time.Time
}

type cachedIntrospection struct {
	// token is what the local verification of the token said; an entry exists only for a
	// token that passed it.
	token     upstream.AccessToken
	result    upstream.Introspection
	fetchedAt time.Time
	expires   time.Time
}

func newIntrospectionCache(now func() time.Time) *introspectionCache {
	return &introspectionCache{now: now, entries: map[[32]byte]cachedIntrospection{}}
}

// peek returns the unexpired entry for key (the digest of the token), if any: the same bytes
// verified and introspected before, so neither needs doing again until the token's exp.
func (c *introspectionCache) peek(key [32]byte) (cachedIntrospection, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	return e, ok && c.now().Before(e.expires)
}

// get returns the cached answer for token (whose digest is key) or calls fetch once, caching
// the answer until expires. Errors are not cached. fetchedAt is when the answer came from the
// provider; hit reports that this caller caused no upstream call (a cached answer, or one
// shared with a concurrent caller).
func (c *introspectionCache) get(ctx context.Context, key [32]byte, token string, at upstream.AccessToken,
	fetch func(context.Context, string) (upstream.Introspection, error)) (res upstream.Introspection, fetchedAt time.Time, hit bool, err error) {
	expires := at.Expiry
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.result, e.fetchedAt, true, nil
	}
	v, err, shared := c.flight.Do(string(key[:]), func() (any, error) {
		// The upstream call must not be cancelled by the first caller leaving.
		r, err := fetch(context.WithoutCancel(ctx), token)
		if err != nil {
			return nil, err
		}
		e := cachedIntrospection{token: at, result: r, fetchedAt: c.now(), expires: expires}
		c.put(key, e)
		return e, nil
	})
	if err != nil {
		return upstream.Introspection{}, time.Time{}, false, err
	}
	e = v.(cachedIntrospection)
	return e.result, e.fetchedAt, shared, nil
}

func (c *introspectionCache) put(key [32]byte, e cachedIntrospection) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[key] = e
	if now.Sub(c.sweep) > time.Minute {
		c.sweep = now
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
	}
}

// markInactive records that the provider now calls the token with digest key inactive: later
// exchanges and renewals of it are refused without asking again. The entry lasts until the
// token's exp (expires), or the existing entry's.
func (c *introspectionCache) markInactive(key [32]byte, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	e.result = upstream.Introspection{Active: false}
	e.fetchedAt = c.now()
	if e.expires.IsZero() {
		e.expires = expires
	}
	c.entries[key] = e
}

// Len reports the number of cached answers (for metrics and tests).
func (c *introspectionCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
