// Package jwksfetch is the one rule by which tokengate's key sets fetch a JSON Web Key Set
// (RFC 7517) again for a token whose key they do not hold: both Keycloak's JWKS as the gateway
// holds it (internal/upstream/jwks) and tokengate's JWKS as a service's verifier holds it.
//
// The rule: a token whose kid (RFC 7515 §4.1.4) names a key in hand is checked with that key
// only, and a bad signature is refused without a fetch (a fetch cannot change what a kid
// names): Verify. A token whose kid is not in hand (or that has no kid and no key in hand
// verifies it) starts a fetch only when the last such fetch started at least the interval
// ago; a fetch in flight is shared by everyone who needs it; and a token whose kid is still
// unknown after that fetch is refused: Gate. So a flood of forged tokens costs the key set's
// publisher one fetch per interval, and a key rotation is picked up by the first token of the
// new key that arrives an interval or more after the last such fetch.
//
// The package imports go-jose and the standard library only, so any module may import it.
package jwksfetch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// DefaultInterval is the least time between two fetches for unknown kids.
const DefaultInterval = 5 * time.Second

// Algorithms are the JWS algorithms (RFC 7518 §3.1, RFC 8037 §3.1) a published key set can
// verify: asymmetric only, never none or HS*. Callers that pin a narrower list check it first.
var Algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// ErrBadSignature: the key the token's kid names does not verify its signature (Verify).
var ErrBadSignature = errors.New("failed to verify signature with the key its kid names")

// Verify checks jws with the keys its kid names (every key when kid is empty) and returns the
// payload. named is false when no such key is in keys, or, without a kid, when none verifies
// it: only then may a fetch help. With named true, err is ErrBadSignature when the named key
// does not verify it.
func Verify(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, named bool, err error) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		named = true
		if p, err := jws.Verify(&keys[i]); err == nil {
			return p, true, nil
		}
	}
	if kid == "" || !named {
		return nil, false, nil
	}
	return nil, true, ErrBadSignature
}

// Gate bounds the fetches made for unknown kids: at most one starts per Interval, and one in
// flight is shared. The zero Gate uses DefaultInterval and time.Now; a Gate must not be copied
// after first use.
type Gate struct {
	// Interval is the least time between the starts of two fetches (DefaultInterval when zero
	// or less).
	Interval time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu      sync.Mutex
	started time.Time     // when the last fetch started
	done    chan struct{} // closed when that fetch has ended; nil before the first
	err     error         // that fetch's error, once it ended
}

// Fetch returns once there is a fetch the caller may count on: one started now when the last
// started at least the interval ago, else the one in flight. fetch runs in its own goroutine,
// not tied to ctx (others may wait for it), and stores the keys itself; it is given no context,
// so it bounds itself. fetched is false when there is neither (the last fetch ended within the
// interval): err is then that fetch's error, and the keys in hand are all there is. A ctx that
// ends first returns ctx.Err().
func (g *Gate) Fetch(ctx context.Context, fetch func() error) (fetched bool, err error) {
	g.mu.Lock()
	done, inflight := g.done, false
	if done != nil {
		select {
		case <-done:
		default:
			inflight = true
		}
	}
	switch now := g.now(); {
	case inflight: // shared, however long ago it started
	case done == nil || now.Sub(g.started) >= g.interval():
		done = make(chan struct{})
		g.done, g.started, g.err = done, now, nil
		go func() {
			err := fetch()
			g.mu.Lock()
			g.err = err
			g.mu.Unlock()
			close(done)
		}()
	default:
		err = g.err
		g.mu.Unlock()
		return false, err
	}
	g.mu.Unlock()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-done:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return true, g.err
}

func (g *Gate) now() time.Time {
	if g.Now == nil {
		return time.Now()
	}
	return g.Now()
}

func (g *Gate) interval() time.Duration {
	if g.Interval <= 0 {
		return DefaultInterval
	}
	return g.Interval
}
