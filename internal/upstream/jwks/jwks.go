// Package jwks is Keycloak's JWKS as tokengate holds it: an oidc.KeySet whose fetches are
// bounded. It replaces go-oidc's RemoteKeySet, which fetches the JWKS again whenever no key in
// hand verifies a token, so that every unauthenticated junk token (a random kid, or a known kid
// with a bad signature) cost Keycloak a request.
//
// The rule: a token whose kid names a key in hand is checked with that key only, and a bad
// signature is refused without a fetch (a fetch cannot change what a kid names). A token whose
// kid is not in hand (or that has no kid and no key in hand verifies it) starts a fetch only
// when the last one started at least Interval ago; a fetch in flight is shared by everyone who
// needs it; and a token whose kid is still unknown after that fetch is refused. Between
// fetches an unknown kid is refused at once (ErrDeferred), or answered with the failure of the
// last fetch while that failure is recent. A real key rotation is picked up by the first token
// of the new key that arrives Interval or more after the last fetch — at once unless someone
// made the key set fetch within the last Interval.
package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// DefaultInterval is the least time between two fetches for unknown kids.
const DefaultInterval = 5 * time.Second

// maxJWKS bounds the size of a JWKS answer.
const maxJWKS = 1 << 20

// fetchTimeout bounds one fetch, whoever waits for it.
const fetchTimeout = 30 * time.Second

// Errors of VerifySignature. Their text is part of the contract: go-oidc's verifier flattens
// a key set's error into text, so "fetching keys" is what tells an unreachable provider.
var (
	// ErrFetch: the JWKS could not be fetched (the provider is unreachable or answered badly).
	ErrFetch = errors.New("fetching keys")
	// ErrUnknownKey: no key of a JWKS fetched for this token verifies it.
	ErrUnknownKey = errors.New("no key of the provider's JWKS verifies the token")
	// ErrDeferred: the token's kid is not in hand and the JWKS was fetched less than the
	// interval ago, so it is not fetched again for this token.
	ErrDeferred = errors.New("unknown key; the JWKS was fetched too recently to fetch it again")
	// ErrBadSignature: the key the token's kid names does not verify its signature.
	ErrBadSignature = errors.New("failed to verify signature with the key its kid names")
)

// Options configure a KeySet.
type Options struct {
	// HTTPClient fetches the JWKS (http.DefaultClient when nil).
	HTTPClient *http.Client
	// Interval is the least time between two fetches (DefaultInterval when zero or less).
	Interval time.Duration
}

// KeySet is a provider's JWKS as last fetched, safe for concurrent use; it implements
// oidc.KeySet. Nothing is fetched until a token needs it.
type KeySet struct {
	url      string
	client   *http.Client
	interval time.Duration

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	started time.Time     // when the last fetch started
	done    chan struct{} // closed when that fetch has ended; nil before the first
	err     error         // that fetch's error, once it ended
}

// New returns a key set for the JWKS at url.
func New(url string, o Options) *KeySet {
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	return &KeySet{url: url, client: o.HTTPClient, interval: o.Interval}
}

// allAlgs are the algorithms a JWS may name here; the caller pins its own list first.
var allAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// VerifySignature checks jwt's signature and returns its payload (oidc.KeySet). It fetches the
// JWKS only as the package documentation says.
func (k *KeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, allAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	k.mu.Lock()
	keys := k.keys
	k.mu.Unlock()
	if payload, named, err := verifyWith(jws, keys, kid); named {
		return payload, err
	}
	keys, fetched, err := k.refetch(ctx)
	if err != nil {
		return nil, err
	}
	if payload, named, err := verifyWith(jws, keys, kid); named {
		return payload, err
	}
	if !fetched {
		return nil, fmt.Errorf("kid %q: %w", kid, ErrDeferred)
	}
	return nil, fmt.Errorf("kid %q: %w", kid, ErrUnknownKey)
}

// verifyWith checks jws with the keys its kid names (every key when it has none). named is
// false when no such key is in keys, or, without a kid, when none verifies.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, named bool, err error) {
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

// refetch returns the keys of a fetch this caller may count on: one started now when the last
// started at least the interval ago, else the one in flight. fetched is false when neither
// (the last fetch ended within the interval): the keys in hand are returned, or that fetch's
// error.
func (k *KeySet) refetch(ctx context.Context) (keys []jose.JSONWebKey, fetched bool, err error) {
	k.mu.Lock()
	done, inflight := k.done, false
	if done != nil {
		select {
		case <-done:
		default:
			inflight = true
		}
	}
	switch {
	case inflight: // shared, however long ago it started
	case done == nil || time.Since(k.started) >= k.interval:
		done = make(chan struct{})
		k.done, k.started, k.err = done, time.Now(), nil
		go k.fetch(done)
	default:
		keys, err = k.keys, k.err
		k.mu.Unlock()
		return keys, false, err
	}
	k.mu.Unlock()
	select {
	case <-ctx.Done():
		return nil, false, fmt.Errorf("%w: %w", ErrFetch, ctx.Err())
	case <-done:
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys, true, k.err
}

// fetch GETs the JWKS, stores the keys (replacing those in hand) or the error, and closes done.
func (k *KeySet) fetch(done chan struct{}) {
	// Not tied to a caller's context: every caller waiting shares this fetch.
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	keys, err := k.get(ctx)
	k.mu.Lock()
	if err == nil {
		k.keys = keys
	} else {
		k.err = err
	}
	k.mu.Unlock()
	close(done)
}

func (k *KeySet) get(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s", ErrFetch, resp.Status)
	}
	if len(body) > maxJWKS {
		return nil, fmt.Errorf("%w: JWKS larger than %d bytes", ErrFetch, maxJWKS)
	}
	keys, err := parse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	return keys, nil
}

// parse reads a JWKS, skipping (as go-oidc does, RFC 7517 §5) keys of an algorithm or type not
// supported, and keys not for signatures.
func parse(body []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var meta struct {
			Alg string `json:"alg"`
			Use string `json:"use"`
		}
		if err := json.Unmarshal(r, &meta); err != nil {
			return nil, fmt.Errorf("decode JWKS: %w", err)
		}
		if (meta.Alg != "" && !supported(meta.Alg)) || (meta.Use != "" && meta.Use != "sig") {
			continue
		}
		var key jose.JSONWebKey
		if err := json.Unmarshal(r, &key); err != nil {
			if errors.Is(err, jose.ErrUnsupportedKeyType) {
				continue
			}
			return nil, fmt.Errorf("decode JWKS: %w", err)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

func supported(alg string) bool {
	for _, a := range allAlgs {
		if string(a) == alg {
			return true
		}
	}
	return false
}
