package jwks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

type fakeJWKS struct {
	srv   *httptest.Server
	gets  atomic.Int64
	delay time.Duration
	mu    sync.Mutex
	keys  []jose.JSONWebKey
}

func newFake(t *testing.T) *fakeJWKS {
	f := &fakeJWKS{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.gets.Add(1)
		time.Sleep(f.delay)
		f.mu.Lock()
		b, _ := json.Marshal(jose.JSONWebKeySet{Keys: f.keys})
		f.mu.Unlock()
		_, _ = w.Write(b)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// add publishes a new ES256 key under kid (with use and alg as given) and returns its signer.
func (f *fakeJWKS) add(t *testing.T, kid, use, alg string) jose.Signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.keys = append(f.keys, jose.JSONWebKey{Key: &priv.PublicKey, KeyID: kid, Use: use, Algorithm: alg})
	f.mu.Unlock()
	return signer(t, priv, kid)
}

func signer(t *testing.T, priv *ecdsa.PrivateKey, kid string) jose.Signer {
	t.Helper()
	opts := &jose.SignerOptions{}
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sign(t *testing.T, s jose.Signer) string {
	t.Helper()
	obj, err := s.Sign([]byte(`{"sub":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKeySet_Rules: the errors tell a deferred unknown kid (no fetch for it) from one still
// unknown after a fetch; a known kid with a bad signature and a kid-less token a key in hand
// verifies cost no fetch; keys not for signatures are not used.
func TestKeySet_Rules(t *testing.T) {
	const interval = 200 * time.Millisecond
	f := newFake(t)
	good := f.add(t, "k1", "sig", "ES256")
	f.add(t, "enc", "enc", "")         // not for signatures
	f.add(t, "weird", "sig", "ES256K") // an algorithm not supported
	ks := New(f.srv.URL, Options{Interval: interval})
	ctx := context.Background()
	if _, err := ks.VerifySignature(ctx, sign(t, good)); err != nil {
		t.Fatal(err)
	}
	if n := f.gets.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	if len(ks.keys) != 1 || ks.keys[0].KeyID != "k1" {
		t.Fatalf("keys in hand = %v, want only k1", ks.keys)
	}
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check := func(what, raw string, want error, fetches int64) {
		t.Helper()
		before := f.gets.Load()
		if _, err := ks.VerifySignature(ctx, raw); !errors.Is(err, want) {
			t.Fatalf("%s: err = %v, want %v", what, err, want)
		}
		if n := f.gets.Load() - before; n != fetches {
			t.Fatalf("%s: %d fetches, want %d", what, n, fetches)
		}
	}
	check("known kid, bad signature", sign(t, signer(t, attacker, "k1")), ErrBadSignature, 0)
	check("unknown kid within the interval", sign(t, signer(t, attacker, "nope")), ErrDeferred, 0)
	check("no kid within the interval", sign(t, signer(t, attacker, "")), ErrDeferred, 0)
	check("encryption key's kid", sign(t, signer(t, attacker, "enc")), ErrDeferred, 0)
	time.Sleep(interval)
	check("unknown kid after the interval", sign(t, signer(t, attacker, "nope")), ErrUnknownKey, 1)
	if _, err := ks.VerifySignature(ctx, sign(t, good)); err != nil {
		t.Fatalf("good token: %v", err)
	}
}

// TestKeySet_ConcurrentUnknownKidsShareOneFetch: 200 tokens of a key published after the last
// fetch, all at once, are verified with one fetch.
func TestKeySet_ConcurrentUnknownKidsShareOneFetch(t *testing.T) {
	f := newFake(t)
	f.add(t, "k1", "sig", "ES256")
	f.delay = 50 * time.Millisecond
	ks := New(f.srv.URL, Options{Interval: time.Hour})
	ks.gate.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	if _, err := ks.gate.Fetch(context.Background(), func() error { return nil }); err != nil { // an old fetch
		t.Fatal(err)
	}
	ks.gate.Now = time.Now
	raw := sign(t, f.add(t, "k2", "sig", "ES256"))
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ks.VerifySignature(context.Background(), raw); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 || f.gets.Load() != 1 {
		t.Fatalf("%d refused, %d fetches; want 0 and 1", failed.Load(), f.gets.Load())
	}
}
