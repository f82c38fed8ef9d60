package verifier_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/verifier"
)

// refetchInterval is the verifier's default bound on JWKS fetches for unknown kids.
const refetchInterval = verifier.DefaultJWKSRefetchInterval

// forger mints tokens an attacker can make: tokengate's iss, the service's aud, a valid exp
// (all public), signed with the attacker's own key under any kid.
type forger struct {
	t    testing.TB
	g    *fakeGateway
	priv *ecdsa.PrivateKey
}

func newForger(t testing.TB, g *fakeGateway) *forger {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &forger{t: t, g: g, priv: priv}
}

// token signs an access token for mallory under kid (no kid header when kid is empty).
func (f *forger) token(kid string) string {
	opts := (&jose.SignerOptions{}).WithType("at+jwt")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: f.priv}, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	now := time.Now()
	b, _ := json.Marshal(map[string]any{"iss": f.g.URL(), "sub": "mallory", "aud": []string{serviceAud}, "sid": "sid-m",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "roles": []string{"admin"}})
	obj, err := s.Sign(b)
	if err != nil {
		f.t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func randomKid() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// flood verifies n tokens made by mk on 16 goroutines, fails the test unless every one is
// refused as invalid, and returns how long it took.
func flood(t *testing.T, v *verifier.Verifier, n int, mk func() string) time.Duration {
	t.Helper()
	toks := make([]string, n)
	for i := range toks {
		toks[i] = mk()
	}
	var next, accepted, other atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				_, err := v.Verify(context.Background(), toks[i])
				switch {
				case err == nil:
					accepted.Add(1)
				case !errors.Is(err, verifier.ErrInvalidToken):
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if accepted.Load() != 0 || other.Load() != 0 {
		t.Fatalf("forged tokens: %d accepted, %d refused with another error than ErrInvalidToken", accepted.Load(), other.Load())
	}
	return took
}

// atMost is how many JWKS fetches "one per interval" allows in d.
func atMost(d, interval time.Duration) int64 { return 1 + int64(d/interval) }

// TestVerify_UnknownKidFloodFetchesTheJWKSOncePerInterval: 1,000 forged tokens with random kids
// (iss, aud and exp are public) cost tokengate at most one JWKS fetch per refetch interval,
// not two per token; a good token is still verified from the keys in hand.
func TestVerify_UnknownKidFloodFetchesTheJWKSOncePerInterval(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g, func(c *verifier.Config) { c.DisableFeed = true })
	ctx := context.Background()
	if _, err := v.Verify(ctx, g.AccessToken("alice", "sid-1", time.Now())); err != nil {
		t.Fatal(err)
	}
	f := newForger(t, g)
	before := g.jwksGets.Load()
	took := flood(t, v, 1000, func() string { return f.token(randomKid()) })
	got := g.jwksGets.Load() - before
	t.Logf("1000 forged tokens with random kids in %s: %d JWKS fetches", took, got)
	if limit := atMost(took, refetchInterval); got > limit {
		t.Fatalf("1000 forged tokens with random kids in %s cost %d JWKS fetches, want at most %d (one per %s)",
			took, got, limit, refetchInterval)
	}
	before = g.jwksGets.Load()
	if _, err := v.Verify(ctx, g.AccessToken("alice", "sid-1", time.Now())); err != nil {
		t.Fatalf("good token after the flood: %v", err)
	}
	if n := g.jwksGets.Load() - before; n != 0 {
		t.Errorf("a good token after the flood fetched the JWKS %d times, want 0", n)
	}
}

// TestVerify_NoKidFloodFetchesTheJWKSOncePerInterval: tokens without a kid that no key in hand
// verifies are bounded the same way.
func TestVerify_NoKidFloodFetchesTheJWKSOncePerInterval(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g, func(c *verifier.Config) { c.DisableFeed = true })
	if _, err := v.Verify(context.Background(), g.AccessToken("alice", "sid-1", time.Now())); err != nil {
		t.Fatal(err)
	}
	f := newForger(t, g)
	before := g.jwksGets.Load()
	took := flood(t, v, 1000, func() string { return f.token("") })
	if got, limit := g.jwksGets.Load()-before, atMost(took, refetchInterval); got > limit {
		t.Fatalf("1000 forged tokens without kid in %s cost %d JWKS fetches, want at most %d", took, got, limit)
	}
}

// TestVerify_KnownKidBadSignatureDoesNotRefetch: a token naming a kid the verifier holds whose
// signature does not verify with that key is refused without any JWKS fetch: a refetch
// cannot change the key a kid names.
func TestVerify_KnownKidBadSignatureDoesNotRefetch(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g, func(c *verifier.Config) { c.DisableFeed = true })
	if _, err := v.Verify(context.Background(), g.AccessToken("alice", "sid-1", time.Now())); err != nil {
		t.Fatal(err)
	}
	f := newForger(t, g)
	before := g.jwksGets.Load()
	flood(t, v, 200, func() string { return f.token(g.km.ActiveKeyID()) })
	if got := g.jwksGets.Load() - before; got != 0 {
		t.Fatalf("200 tokens with the active kid and a foreign signature cost %d JWKS fetches, want 0", got)
	}
}

// TestVerify_RotationAcceptedAtOnceAfterAFlood: right after a flood of forged kids tokengate
// signs with a key the verifier has not fetched; once the refetch interval since the flood's
// last fetch has passed, 50 concurrent tokens of the new key are all accepted on one shared
// fetch. A key that appears while the flood goes on is accepted within one interval.
func TestVerify_RotationAcceptedAtOnceAfterAFlood(t *testing.T) {
	const interval = 300 * time.Millisecond
	g := newFakeGateway(t)
	v := newVerifier(t, g, func(c *verifier.Config) { c.DisableFeed = true; c.JWKSRefetchInterval = interval })
	ctx := context.Background()
	f := newForger(t, g)
	signWithUnfetchedKey(t, g, v) // also the first fetch
	// The flood, while the active key is one the verifier has not fetched yet: none of it
	// gets through, and it fetches at most once per interval.
	before := g.jwksGets.Load()
	took := flood(t, v, 1000, func() string { return f.token(randomKid()) })
	if got, limit := g.jwksGets.Load()-before, atMost(took, interval); got > limit {
		t.Fatalf("1000 forged tokens in %s cost %d JWKS fetches, want at most %d", took, got, limit)
	}
	// The flood's fetches brought the new key already; make one the verifier has not seen.
	for range 2 {
		if _, err := g.km.Rotate(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(interval)
	before = g.jwksGets.Load()
	tok := g.AccessToken("alice", "sid-1", time.Now())
	var wg sync.WaitGroup
	var refused atomic.Int64
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(ctx, tok); err != nil {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if refused.Load() != 0 {
		t.Fatalf("%d of 50 tokens of the rotated key refused right after the flood", refused.Load())
	}
	if n := g.jwksGets.Load() - before; n != 1 {
		t.Errorf("50 concurrent tokens of the rotated key made %d JWKS fetches, want 1", n)
	}

	// A rotation while the flood goes on.
	stop := make(chan struct{})
	var fw sync.WaitGroup
	for range 4 {
		fw.Add(1)
		go func() {
			defer fw.Done()
			for {
				select {
				case <-stop:
					return
				default:
					_, _ = v.Verify(ctx, f.token(randomKid()))
				}
			}
		}()
	}
	defer func() { close(stop); fw.Wait() }()
	time.Sleep(2 * interval)
	for range 2 {
		if _, err := g.km.Rotate(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for {
		_, err := v.Verify(ctx, g.AccessToken("alice", "sid-2", time.Now()))
		if err == nil {
			break
		}
		if time.Since(start) > 3*interval {
			t.Fatalf("token of a key rotated during a flood still refused after %s (interval %s): %v", time.Since(start), interval, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("key rotated during a flood accepted after %s (interval %s)", time.Since(start), interval)
}
