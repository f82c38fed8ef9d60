package jwksfetch_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/verifier/jwksfetch"
)

// TestGate_AtMostOneFetchPerInterval: within the interval a caller gets the last fetch's
// outcome without a fetch; once it has passed, a fetch starts again.
func TestGate_AtMostOneFetchPerInterval(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	g := &jwksfetch.Gate{Interval: time.Minute, Now: func() time.Time { return now }}
	var fetches atomic.Int64
	boom := errors.New("boom")
	fetch := func() error { fetches.Add(1); return boom }
	ctx := context.Background()
	if fetched, err := g.Fetch(ctx, fetch); !fetched || !errors.Is(err, boom) {
		t.Fatalf("first: fetched %v, err %v; want a fetch and its error", fetched, err)
	}
	now = now.Add(59 * time.Second)
	if fetched, err := g.Fetch(ctx, fetch); fetched || !errors.Is(err, boom) || fetches.Load() != 1 {
		t.Fatalf("within the interval: fetched %v, err %v, %d fetches; want none and the last error", fetched, err, fetches.Load())
	}
	now = now.Add(time.Second)
	if fetched, _ := g.Fetch(ctx, func() error { fetches.Add(1); return nil }); !fetched || fetches.Load() != 2 {
		t.Fatalf("after the interval: fetched %v, %d fetches; want a second fetch", fetched, fetches.Load())
	}
}

// TestGate_ConcurrentCallersShareOneFetch: callers arriving while a fetch is in flight wait for
// it, and a caller whose context ends stops waiting without stopping the fetch.
func TestGate_ConcurrentCallersShareOneFetch(t *testing.T) {
	var g jwksfetch.Gate
	release := make(chan struct{})
	var fetches atomic.Int64
	fetch := func() error { fetches.Add(1); <-release; return nil }
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if fetched, err := g.Fetch(ctx, fetch); fetched || !errors.Is(err, context.Canceled) {
		t.Fatalf("ended context: fetched %v, err %v", fetched, err)
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 50 {
		wg.Go(func() {
			if fetched, err := g.Fetch(context.Background(), fetch); !fetched || err != nil {
				bad.Add(1)
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if bad.Load() != 0 || fetches.Load() != 1 {
		t.Fatalf("%d callers without the shared fetch, %d fetches; want 0 and 1", bad.Load(), fetches.Load())
	}
}

// TestVerify_KidNamesTheOnlyKeyTried: a kid in hand is checked with that key alone (a bad
// signature is not "unknown"); an unknown kid, or no kid that no key verifies, is not named.
func TestVerify_KidNamesTheOnlyKeyTried(t *testing.T) {
	good, other := newKey(t, "k1"), newKey(t, "k2")
	keys := []jose.JSONWebKey{good.Public(), other.Public()}
	sign := func(k jose.JSONWebKey, kid string) *jose.JSONWebSignature {
		t.Helper()
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.Key, KeyID: kid}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := s.Sign([]byte(`{"a":1}`))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := obj.CompactSerialize()
		jws, err := jose.ParseSignedCompact(raw, jwksfetch.Algorithms)
		if err != nil {
			t.Fatal(err)
		}
		return jws
	}
	for _, c := range []struct {
		name      string
		jws       *jose.JSONWebSignature
		kid       string
		named, ok bool
	}{
		{"kid in hand", sign(good, "k1"), "k1", true, true},
		{"kid in hand, signed by another key", sign(other, "k1"), "k1", true, false},
		{"unknown kid", sign(good, "k9"), "k9", false, false},
		{"no kid, a key verifies", sign(good, ""), "", true, true},
		{"no kid, no key verifies", sign(newKey(t, "x"), ""), "", false, false},
	} {
		payload, named, err := jwksfetch.Verify(c.jws, keys, c.kid)
		if named != c.named || (err == nil && named) != c.ok || (c.ok && string(payload) != `{"a":1}`) {
			t.Errorf("%s: named %v, err %v, payload %q", c.name, named, err, payload)
		}
		if named && !c.ok && !errors.Is(err, jwksfetch.ErrBadSignature) {
			t.Errorf("%s: err %v, want ErrBadSignature", c.name, err)
		}
	}
}

func newKey(t *testing.T, kid string) jose.JSONWebKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: "ES256"}
}
