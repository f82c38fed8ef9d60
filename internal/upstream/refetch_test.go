package upstream_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/upstream"
)

// refetchInterval is the bound on JWKS fetches for unknown kids in these tests: short, so
// that a flood spans many intervals.
const refetchInterval = 50 * time.Millisecond

// countingClient returns a client counting the realm's JWKS requests in rt.
func countingClient() (*failingJWKS, *http.Client) {
	rt := &failingJWKS{}
	return rt, &http.Client{Transport: rt, Timeout: 5 * time.Second}
}

// junkSigner signs as an attacker would: its own ES256 key, under kid (none when empty), with
// JOSE typ typ.
func junkSigner(t testing.TB, key *ecdsa.PrivateKey, typ, kid string) jose.Signer {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randomKid() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// floodCheck runs check on n tokens made by mk on 16 goroutines, fails unless every one is
// refused with ErrInvalidToken, and returns how long it took.
func floodCheck(t *testing.T, n int, mk func() string, check func(string) error) time.Duration {
	t.Helper()
	toks := make([]string, n)
	for i := range toks {
		toks[i] = mk()
	}
	var next, bad atomic.Int64
	var firstBad atomic.Value
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
				if err := check(toks[i]); !errors.Is(err, upstream.ErrInvalidToken) {
					bad.Add(1)
					firstBad.CompareAndSwap(nil, errors.New(errString(err)))
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if bad.Load() != 0 {
		t.Fatalf("%d of %d junk tokens were not refused as invalid; first: %v", bad.Load(), n, firstBad.Load())
	}
	return took
}

func errString(err error) string {
	if err == nil {
		return "accepted"
	}
	return err.Error()
}

func atMost(d, interval time.Duration) int32 { return 1 + int32(d/interval) }

// TestVerify_JunkFloodFetchesKeycloaksJWKSOncePerInterval: 1,000 junk tokens (random kids, no
// kid, or Keycloak's kid with a foreign signature) cost Keycloak at most one JWKS fetch per
// refetch interval — logout tokens (verified before any limiter) and subject tokens alike —
// and a known kid with a bad signature costs none.
func TestVerify_JunkFloodFetchesKeycloaksJWKSOncePerInterval(t *testing.T) {
	realm := kctest.New(t)
	key := ecKey(t)
	policy := upstream.LogoutPolicy{Audiences: []string{kctest.LogoutAudience}, Now: time.Now(), Skew: time.Minute}
	for _, tc := range []struct {
		name string
		mk   func(c *upstream.Client) (func() string, func(string) error)
		none bool // no fetch at all is allowed
	}{
		{name: "logout tokens with random kids", mk: func(c *upstream.Client) (func() string, func(string) error) {
			return func() string {
					return realm.SignWith(junkSigner(t, key, "logout+jwt", randomKid()), realm.LogoutClaims("alice", "sid-1"))
				}, func(raw string) error {
					_, err := c.VerifyLogoutToken(t.Context(), raw, policy)
					return err
				}
		}},
		{name: "access tokens with random kids", mk: func(c *upstream.Client) (func() string, func(string) error) {
			return func() string {
					return realm.SignWith(junkSigner(t, key, "JWT", randomKid()), accessClaims(realm))
				}, func(raw string) error {
					_, err := c.VerifyAccessToken(t.Context(), raw)
					return err
				}
		}},
		{name: "logout tokens without kid", mk: func(c *upstream.Client) (func() string, func(string) error) {
			return func() string {
					return realm.SignWith(junkSigner(t, key, "logout+jwt", ""), realm.LogoutClaims("alice", "sid-1"))
				}, func(raw string) error {
					_, err := c.VerifyLogoutToken(t.Context(), raw, policy)
					return err
				}
		}},
		{name: "logout tokens with Keycloak's kid and a foreign signature", none: true, mk: func(c *upstream.Client) (func() string, func(string) error) {
			return func() string {
					return realm.SignWith(junkSigner(t, key, "logout+jwt", realm.KeyID()), realm.LogoutClaims("alice", "sid-1"))
				}, func(raw string) error {
					_, err := c.VerifyLogoutToken(t.Context(), raw, policy)
					return err
				}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, hc := countingClient()
			c := upstream.New(upstream.Config{Issuer: realm.Issuer(), ClientID: kctest.ClientID,
				ClientSecret: kctest.ClientSecret, HTTPClient: hc, JWKSRefetchInterval: refetchInterval})
			if _, err := c.VerifyLogoutToken(t.Context(), realm.LogoutToken("bob", "sid-0"), policy); err != nil {
				t.Fatal(err)
			}
			before := rt.calls.Load()
			mk, check := tc.mk(c)
			took := floodCheck(t, 1000, mk, check)
			got := rt.calls.Load() - before
			t.Logf("1000 junk tokens in %s: %d JWKS fetches", took, got)
			limit := atMost(took, refetchInterval)
			if tc.none {
				limit = 0
			}
			if got > limit {
				t.Fatalf("1000 junk tokens in %s cost %d JWKS fetches, want at most %d", took, got, limit)
			}
			// Keycloak's real tokens still verify, from the keys in hand.
			before = rt.calls.Load()
			if _, err := c.VerifyLogoutToken(t.Context(), realm.LogoutToken("bob", "sid-2"), policy); err != nil {
				t.Fatalf("real logout token after the flood: %v", err)
			}
			if n := rt.calls.Load() - before; n != 0 {
				t.Errorf("a real token after the flood cost %d JWKS fetches, want 0", n)
			}
		})
	}
}

// accessClaims are the claims of a Keycloak access token, as an attacker can write them.
func accessClaims(realm *kctest.Realm) map[string]any {
	now := time.Now()
	return map[string]any{"iss": realm.Issuer(), "sub": "mallory", "typ": "Bearer", "azp": kctest.BFFClientID,
		"aud": "account", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": randomKid()}
}

// TestVerify_RotationPickedUpOnceTheIntervalPassed: right after a flood of junk kids Keycloak
// publishes a new key; once the interval since the last fetch has passed, the first tokens of
// the new key (logout and access, concurrently) are accepted on one shared fetch. Under a
// flood that goes on, the new key is accepted within one interval.
func TestVerify_RotationPickedUpOnceTheIntervalPassed(t *testing.T) {
	const interval = 300 * time.Millisecond
	realm := kctest.New(t)
	rt, hc := countingClient()
	c := upstream.New(upstream.Config{Issuer: realm.Issuer(), ClientID: kctest.ClientID,
		ClientSecret: kctest.ClientSecret, HTTPClient: hc, JWKSRefetchInterval: interval})
	policy := upstream.LogoutPolicy{Audiences: []string{kctest.LogoutAudience}, Now: time.Now(), Skew: time.Minute}
	logout := func(raw string) error {
		_, err := c.VerifyLogoutToken(t.Context(), raw, policy)
		return err
	}
	junk := ecKey(t)
	mkJunk := func() string {
		return realm.SignWith(junkSigner(t, junk, "logout+jwt", randomKid()), realm.LogoutClaims("alice", "sid-1"))
	}
	floodCheck(t, 1000, mkJunk, logout)

	rotate := func() (logoutSigner, accessSigner jose.Signer) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		kid := "kc-" + randomKid()
		realm.AddKey(&key.PublicKey, kid)
		mk := func(typ string) jose.Signer {
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
				(&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", kid))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		return mk("logout+jwt"), mk("JWT")
	}
	ls, as := rotate()
	time.Sleep(interval)
	before := rt.calls.Load()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 20 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- logout(realm.SignWith(ls, realm.LogoutClaims("alice", fmt.Sprintf("sid-%d", i))))
		}()
		go func() {
			defer wg.Done()
			claims := accessClaims(realm)
			_, err := c.VerifyAccessToken(t.Context(), realm.SignWith(as, claims))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("token of the rotated key after the flood: %v", err)
		}
	}
	if n := rt.calls.Load() - before; n != 1 {
		t.Errorf("40 concurrent tokens of the rotated key made %d JWKS fetches, want 1", n)
	}

	// A second rotation while the flood goes on.
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
					_ = logout(mkJunk())
				}
			}
		}()
	}
	time.Sleep(2 * interval)
	ls, _ = rotate()
	start := time.Now()
	for logout(realm.SignWith(ls, realm.LogoutClaims("alice", "sid-x"))) != nil {
		if time.Since(start) > 3*interval {
			close(stop)
			fw.Wait()
			t.Fatalf("token of a key rotated during a flood still refused after %s (interval %s)", time.Since(start), interval)
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	close(stop)
	fw.Wait()
	t.Logf("key rotated during a flood accepted after %s (interval %s)", took, interval)
}
