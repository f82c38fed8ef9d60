package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/verifier/jwksfetch"
)

// Key set refresh bounds.
const (
	// DefaultJWKSMaxAge is how long keys are used without refetching when the JWKS answer
	// declares no Cache-Control max-age (tokengate's default keys.jwks_max_age).
	DefaultJWKSMaxAge = 5 * time.Minute
	// minJWKSRefetch bounds how often keys past their max-age are refetched: for a max-age
	// below it and after a failed fetch.
	minJWKSRefetch = time.Second
	// DefaultJWKSRefetchInterval is the least time between two fetches for tokens whose kid
	// is not in hand (Config.JWKSRefetchInterval when zero).
	DefaultJWKSRefetchInterval = jwksfetch.DefaultInterval
)

// errDeferred: a kid not in hand, and the JWKS was fetched for an unknown kid less than the
// refetch interval ago, so it is not fetched again for this token.
var errDeferred = errors.New("failed to verify signature: unknown kid; the JWKS was fetched too recently to fetch it again")

// keySet is tokengate's JWKS as last fetched (an oidc.KeySet). Unlike go-oidc's RemoteKeySet,
// which refetches only for an unknown kid, it refetches once the answer is older than the
// max-age the JWKS declared, and on demand (a signing-key-revoked event), and it replaces its
// keys with what was fetched: a key tokengate stopped publishing stops verifying here.
//
// For tokens it bounds what RemoteKeySet does not, by jwksfetch's rule (shared with the
// gateway's key set of Keycloak): a kid in hand is checked with that key only (a bad signature
// costs no fetch); a kid not in hand (or no kid that no key in hand verifies) starts a fetch
// only when the last such fetch started at least the refetch interval ago, a fetch in flight is
// shared, and a kid still unknown after it is refused. So a flood of forged tokens costs
// tokengate one JWKS fetch per interval per verifier, and a key rotation is picked up by the
// first token of the new key an interval or more after the last such fetch.
type keySet struct {
	url    string
	client *http.Client
	now    func() time.Time
	// unknownKid gates the fetches for unknown kids.
	unknownKid *jwksfetch.Gate

	mu       sync.Mutex
	keys     []jose.JSONWebKey
	fetched  time.Time     // when keys were fetched
	attempt  time.Time     // when the last fetch started
	maxAge   time.Duration // declared by the last answer
	inflight *fetchCall

	// generation counts key set changes; a cached verified token is reused only while the
	// generation it was verified in is current.
	generation atomic.Uint64
}

type fetchCall struct {
	done chan struct{}
	err  error
}

func newKeySet(u string, client *http.Client, now func() time.Time, interval time.Duration) *keySet {
	return &keySet{url: u, client: client, now: now, maxAge: DefaultJWKSMaxAge,
		unknownKid: &jwksfetch.Gate{Interval: interval, Now: now}}
}

// VerifySignature implements oidc.KeySet: it checks jwt's signature with the key its kid names
// (every key when it has none) and returns the payload, fetching the JWKS as keySet says.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, jwksfetch.Algorithms) // the verifier pins its own list before
	if err != nil {
		return nil, fmt.Errorf("oidc: malformed jwt: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("oidc: want one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, err := k.current(ctx)
	if err != nil {
		return nil, err
	}
	if payload, named, err := verifyWith(jws, keys, kid); named {
		return payload, err
	}
	// A key published after the last fetch, or a forgery: fetch, at most once per interval.
	fetched, err := k.unknownKid.Fetch(ctx, func() error {
		// Not tied to this caller: others may wait for this fetch.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		// A fetch already in flight may have been sent before the key was published.
		return k.refreshNow(fctx)
	})
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	keys = k.keys
	k.mu.Unlock()
	if payload, named, err := verifyWith(jws, keys, kid); named {
		return payload, err
	}
	if !fetched {
		return nil, errDeferred
	}
	return nil, errors.New("failed to verify id token signature: no key of the JWKS verifies it")
}

// verifyWith is jwksfetch.Verify, with the verifier's own words for a bad signature.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, named bool, err error) {
	payload, named, err = jwksfetch.Verify(jws, keys, kid)
	if err != nil {
		err = errors.New("failed to verify id token signature with the key its kid names")
	}
	return payload, named, err
}

func hasKid(keys []jose.JSONWebKey, kid string) bool {
	for _, k := range keys {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}

// current returns the keys, refetching first when they are older than their max-age. When that
// refetch fails the keys fetched before are used (and the fetch is tried again a second later):
// the revocation feed fails closed on its own when tokengate is unreachable.
func (k *keySet) current(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	now := k.now()
	keys, stale := k.keys, k.fetched.IsZero() || now.Sub(k.fetched) >= k.maxAge
	recent := !k.attempt.IsZero() && now.Sub(k.attempt) < minJWKSRefetch
	k.mu.Unlock()
	if !stale || (recent && len(keys) > 0) {
		return keys, nil
	}
	fresh, err := k.refresh(ctx)
	if err != nil && len(keys) > 0 {
		return keys, nil
	}
	return fresh, err
}

// stale reports whether the keys are past their max-age (cheap; for the token cache).
func (k *keySet) stale() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.fetched.IsZero() || k.now().Sub(k.fetched) >= k.maxAge
}

// refresh fetches the JWKS, sharing a fetch already in flight.
func (k *keySet) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	if c := k.inflight; c != nil {
		k.mu.Unlock()
		return k.wait(ctx, c)
	}
	c := &fetchCall{done: make(chan struct{})}
	k.inflight, k.attempt = c, k.now()
	k.mu.Unlock()
	go func() {
		// Not tied to the caller: others may be waiting for this fetch.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		keys, maxAge, err := k.fetch(fctx)
		k.mu.Lock()
		if err == nil {
			if !sameKeys(k.keys, keys) {
				k.generation.Add(1)
			}
			k.keys, k.fetched, k.maxAge = keys, k.now(), maxAge
		}
		c.err = err
		k.inflight = nil
		k.mu.Unlock()
		close(c.done)
	}()
	return k.wait(ctx, c)
}

// refreshNow fetches the JWKS with a fetch that starts now or later: a fetch already in flight
// may have been sent before the change the caller heard of, so it is waited for, not trusted.
func (k *keySet) refreshNow(ctx context.Context) error {
	since := k.now()
	for {
		if _, err := k.refresh(ctx); err != nil {
			return err
		}
		k.mu.Lock()
		ok := !k.attempt.Before(since)
		k.mu.Unlock()
		if ok {
			return nil
		}
	}
}

func (k *keySet) wait(ctx context.Context, c *fetchCall) ([]jose.JSONWebKey, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
	}
	if c.err != nil {
		return nil, c.err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys, nil
}

// fetch GETs the JWKS and reads its max-age.
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("fetching keys: %w", err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("fetching keys: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("fetching keys: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("fetching keys: %s", resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, 0, fmt.Errorf("fetching keys: decode JWKS: %w", err)
	}
	return set.Keys, maxAgeOf(resp.Header.Get("Cache-Control")), nil
}

// maxAgeOf reads max-age from a Cache-Control header: DefaultJWKSMaxAge without one, at least
// minJWKSRefetch (no-store and no-cache count as 0).
func maxAgeOf(cc string) time.Duration {
	age := DefaultJWKSMaxAge
	for _, d := range strings.Split(cc, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(strings.ToLower(d)), "=")
		switch name {
		case "no-store", "no-cache":
			return minJWKSRefetch
		case "max-age":
			if n, err := strconv.Atoi(strings.Trim(val, `"`)); err == nil && n >= 0 {
				age = time.Duration(n) * time.Second
			}
		}
	}
	return max(age, minJWKSRefetch)
}

// sameKeys reports whether two fetches published the same kids.
func sameKeys(a, b []jose.JSONWebKey) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !hasKid(b, x.KeyID) {
			return false
		}
	}
	return true
}
