package issuer

import (
	"context"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokengate/tokengate/internal/upstream"
)

// introspectionCache remembers introspection answers by SHA-256 of the token until the token
// expires (a boundedCache: an entry lives no longer than its token), and shares one upstream
// call among concurrent identical requests (singleflight holds a key only while its call is in
// flight: it is bounded by the requests being served, not by sessions).
type introspectionCache struct {
	now     func() time.Time
	flight  singleflight.Group
	entries *boundedCache[[32]byte, cachedIntrospection]
}

type cachedIntrospection struct {
	// token is what the local verification of the token said; an entry exists only for a
	// token that passed it.
	token     upstream.AccessToken
	result    upstream.Introspection
	fetchedAt time.Time
}

func newIntrospectionCache(max int, now func() time.Time) *introspectionCache {
	return &introspectionCache{now: now, entries: newBoundedCache[[32]byte, cachedIntrospection](max, now)}
}

// peek returns the unexpired entry for key (the digest of the token), if any: the same bytes
// verified and introspected before, so neither needs doing again until the token's exp.
func (c *introspectionCache) peek(key [32]byte) (cachedIntrospection, bool) {
	return c.entries.get(key, c.now())
}

// get returns the cached answer for token (whose digest is key) or calls fetch once, caching
// the answer until the token's exp. Errors are not cached. fetchedAt is when the answer came from the
// provider; hit reports that this caller caused no upstream call (a cached answer, or one
// shared with a concurrent caller).
func (c *introspectionCache) get(ctx context.Context, key [32]byte, token string, at upstream.AccessToken,
	fetch func(context.Context, string) (upstream.Introspection, error)) (res upstream.Introspection, fetchedAt time.Time, hit bool, err error) {
	if e, ok := c.entries.get(key, c.now()); ok {
		return e.result, e.fetchedAt, true, nil
	}
	v, err, shared := c.flight.Do(string(key[:]), func() (any, error) {
		// The upstream call must not be cancelled by the first caller leaving.
		r, err := fetch(context.WithoutCancel(ctx), token)
		if err != nil {
			return nil, err
		}
		now := c.now()
		e := cachedIntrospection{token: at, result: r, fetchedAt: now}
		c.entries.put(key, e, at.Expiry, now)
		return e, nil
	})
	if err != nil {
		return upstream.Introspection{}, time.Time{}, false, err
	}
	e := v.(cachedIntrospection)
	return e.result, e.fetchedAt, shared, nil
}

// markInactive records that the provider now calls the token with digest key inactive: later
// exchanges and renewals of it are refused without asking again, until the token's exp
// (expires).
func (c *introspectionCache) markInactive(key [32]byte, expires time.Time) {
	now := c.now()
	c.entries.update(key, now, func(old cachedIntrospection, _ bool) (cachedIntrospection, time.Time, bool) {
		old.result = upstream.Introspection{Active: false}
		old.fetchedAt = now
		return old, expires, true
	})
}
