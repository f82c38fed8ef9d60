// Package jwks is Keycloak's JWKS as tokengate holds it: an oidc.KeySet whose fetches are
// bounded. It replaces go-oidc's RemoteKeySet, which fetches the JWKS again whenever no key in
// hand verifies a token, so that every unauthenticated junk token (a random kid, or a known kid
// with a bad signature) cost Keycloak a request.
//
// The rule is verifier/jwksfetch's, shared with the verifier library: a token whose kid names
// a key in hand is checked with that key only, and a bad signature is refused without a fetch
// (a fetch cannot change what a kid names). A token whose kid is not in hand (or that has no
// kid and no key in hand verifies it) starts a fetch only when the last one started at least
// Interval ago; a fetch in flight is shared by everyone who needs it; and a token whose kid is
// still unknown after that fetch is refused. Between fetches an unknown kid is refused at once
// (ErrDeferred), or answered with the failure of the last fetch while that failure is recent.
// A real key rotation is picked up by the first token of the new key that arrives Interval or
// more after the last fetch — at once unless someone made the key set fetch within the last
// Interval.
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

	"github.com/tokengate/tokengate/verifier/jwksfetch"
)

// DefaultInterval is the least time between two fetches for unknown kids.
const DefaultInterval = jwksfetch.DefaultInterval

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
	ErrBadSignature = jwksfetch.ErrBadSignature
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
	url    string
	client *http.Client
	gate   jwksfetch.Gate

	mu   sync.Mutex
	keys []jose.JSONWebKey
}

// New returns a key set for the JWKS at url.
func New(url string, o Options) *KeySet {
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	return &KeySet{url: url, client: o.HTTPClient, gate: jwksfetch.Gate{Interval: o.Interval}}
}

// VerifySignature checks jwt's signature and returns its payload (oidc.KeySet). It fetches the
// JWKS only as the package documentation says.
func (k *KeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, jwksfetch.Algorithms)
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
	if payload, named, err := jwksfetch.Verify(jws, keys, kid); named {
		return payload, err
	}
	fetched, err := k.gate.Fetch(ctx, k.fetch)
	if err != nil {
		if !errors.Is(err, ErrFetch) {
			err = fmt.Errorf("%w: %w", ErrFetch, err) // ctx ended while waiting
		}
		return nil, err
	}
	k.mu.Lock()
	keys = k.keys
	k.mu.Unlock()
	if payload, named, err := jwksfetch.Verify(jws, keys, kid); named {
		return payload, err
	}
	if !fetched {
		return nil, fmt.Errorf("kid %q: %w", kid, ErrDeferred)
	}
	return nil, fmt.Errorf("kid %q: %w", kid, ErrUnknownKey)
}

// fetch GETs the JWKS and stores the keys (replacing those in hand); it runs under the gate.
func (k *KeySet) fetch() error {
	// Not tied to a caller's context: every caller waiting shares this fetch.
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	keys, err := k.get(ctx)
	if err == nil {
		k.mu.Lock()
		k.keys = keys
		k.mu.Unlock()
	}
	return err
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
	for _, a := range jwksfetch.Algorithms {
		if string(a) == alg {
			return true
		}
	}
	return false
}
