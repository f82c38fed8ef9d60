package issuer

import (
	"context"
	"encoding/binary"
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

// cachedIntrospection is what an exchange needs of a token's local verification and its
// introspection answer, packed small: an entry exists per upstream token exchanged within its
// lifetime, so the cache holds one per live session. Its strings travel in one allocation
// (packed); an entry exists only for a token that passed the local verification.
type cachedIntrospection struct {
	packed    string // see pack
	iat, exp  int64  // the token's, Unix nanoseconds
	authTime  int64  // the answer's auth_time
	fetchedAt int64  // when the answer came from the provider, Unix nanoseconds
	active    bool
}

// packIntrospection packs the verification at and the answer r, fetched at fetchedAt. The
// answer keeps only what exchange reads: active, sub, the session (sid or session_state),
// scope, client_id, preferred_username, acr, auth_time and realm roles.
func packIntrospection(at upstream.AccessToken, r upstream.Introspection, fetchedAt time.Time) cachedIntrospection {
	n := 0
	strs := [...]string{at.Subject, at.AuthorizedParty, r.Subject, r.Session(), r.Scope, r.ClientID, r.PreferredUsername, r.ACR}
	for _, x := range strs {
		n += binary.MaxVarintLen32 + len(x)
	}
	for _, x := range at.Audience {
		n += binary.MaxVarintLen32 + len(x)
	}
	for _, x := range r.RealmAccess.Roles {
		n += binary.MaxVarintLen32 + len(x)
	}
	b := make([]byte, 0, n+2*binary.MaxVarintLen32)
	for _, x := range strs {
		b = appendString(b, x)
	}
	b = binary.AppendUvarint(b, uint64(len(at.Audience)))
	for _, x := range at.Audience {
		b = appendString(b, x)
	}
	b = binary.AppendUvarint(b, uint64(len(r.RealmAccess.Roles)))
	for _, x := range r.RealmAccess.Roles {
		b = appendString(b, x)
	}
	return cachedIntrospection{packed: string(b), iat: at.IssuedAt.UnixNano(), exp: at.Expiry.UnixNano(),
		authTime: r.AuthTime, fetchedAt: fetchedAt.UnixNano(), active: r.Active}
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// unpack returns the verification and the answer packIntrospection was given (the answer
// reduced to what it keeps; its strings share the packed one's memory).
func (e cachedIntrospection) unpack() (upstream.AccessToken, upstream.Introspection) {
	s := e.packed
	next := func() string {
		n, k := binary.Uvarint([]byte(s[:min(len(s), binary.MaxVarintLen64)]))
		if k <= 0 || uint64(len(s)-k) < n {
			s = ""
			return ""
		}
		v := s[k : k+int(n)]
		s = s[k+int(n):]
		return v
	}
	list := func() []string {
		n, k := binary.Uvarint([]byte(s[:min(len(s), binary.MaxVarintLen64)]))
		if k <= 0 || n == 0 {
			s = s[max(k, 0):]
			return nil
		}
		s = s[k:]
		out := make([]string, 0, min(n, uint64(len(s))))
		for range n {
			out = append(out, next())
		}
		return out
	}
	at := upstream.AccessToken{Subject: next(), AuthorizedParty: next(),
		IssuedAt: time.Unix(0, e.iat), Expiry: time.Unix(0, e.exp)}
	r := upstream.Introspection{Active: e.active, AuthTime: e.authTime}
	r.Subject, r.SID, r.Scope, r.ClientID, r.PreferredUsername, r.ACR = next(), next(), next(), next(), next(), next()
	at.Audience = list()
	r.RealmAccess.Roles = list()
	return at, r
}

// fetched is when the answer came from the provider.
func (e cachedIntrospection) fetched() time.Time { return time.Unix(0, e.fetchedAt) }

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
		_, r := e.unpack()
		return r, e.fetched(), true, nil
	}
	v, err, shared := c.flight.Do(string(key[:]), func() (any, error) {
		// The upstream call must not be cancelled by the first caller leaving.
		r, err := fetch(context.WithoutCancel(ctx), token)
		if err != nil {
			return nil, err
		}
		now := c.now()
		c.entries.put(key, packIntrospection(at, r, now), at.Expiry, now)
		return fetched{r, now}, nil
	})
	if err != nil {
		return upstream.Introspection{}, time.Time{}, false, err
	}
	f := v.(fetched)
	return f.r, f.at, shared, nil
}

// markInactive records that the provider now calls the token with digest key inactive: later
// exchanges and renewals of it are refused without asking again, until the token's exp
// (expires).
func (c *introspectionCache) markInactive(key [32]byte, expires time.Time) {
	now := c.now()
	c.entries.update(key, now, func(old cachedIntrospection, _ bool) (cachedIntrospection, time.Time, bool) {
		old.active, old.fetchedAt = false, now.UnixNano()
		return old, expires, true
	})
}

// fetched is an answer and when it came, as shared among concurrent callers.
type fetched struct {
	r  upstream.Introspection
	at time.Time
}
