package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/upstream"
)

// refetchInterval is the gateway's bound on JWKS fetches for unknown kids.
const refetchInterval = upstream.DefaultJWKSRefetchInterval

// TestBackchannelLogoutFlood_KeycloakJWKSFetchedOncePerInterval: the real binary against a fake
// Keycloak that counts requests for its JWKS. 1,000 unauthenticated junk logout tokens with
// random kids (iss, aud and the claims are public; the signature is the attacker's own) are
// all refused, and cost Keycloak at most one JWKS fetch per refetch interval, not two each.
// The session they name stays alive. Right after the flood Keycloak rotates its key: once the
// interval since the last fetch has passed, the first logout token with the new kid is
// verified with a single fetch and ends the session.
func TestBackchannelLogoutFlood_KeycloakJWKSFetchedOncePerInterval(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	g := startGateway(t, baseConfig(realm.Issuer(), t.TempDir()))
	sid := "sid-" + randID(t)
	live := g.mustExchange(realm.AccessToken(kctest.Token{Subject: "alice", SID: sid}))

	junkKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	toks := make([]string, 1000)
	for i := range toks {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: junkKey},
			(&jose.SignerOptions{}).WithType("logout+jwt").WithHeader("kid", "kc-"+randID(t)))
		if err != nil {
			t.Fatal(err)
		}
		toks[i] = realm.SignWith(s, realm.LogoutClaims("alice", sid))
	}
	before := realm.CertsFetches.Load()
	var next atomic.Int64
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(toks)) {
					return
				}
				code := postLogout(g.Base, toks[i])
				mu.Lock()
				statuses[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	fetches := realm.CertsFetches.Load() - before
	t.Logf("1000 junk logout tokens in %s: answers %v, %d JWKS fetches", took, statuses, fetches)
	if statuses[http.StatusBadRequest]+statuses[http.StatusTooManyRequests] != len(toks) {
		t.Fatalf("junk logout tokens: answers %v, want 400 or 429 for every one", statuses)
	}
	if limit := 1 + int64(took/refetchInterval); fetches > limit {
		t.Fatalf("1000 junk logout tokens in %s made %d requests for Keycloak's JWKS, want at most %d (one per %s)",
			took, fetches, limit, refetchInterval)
	}
	g.mustRenew(live.RefreshToken, "session named by the junk logout tokens")

	// Keycloak rotates: a new key, published in its JWKS and signing from now on.
	newKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	newKid := "kc-rotated-" + randID(t)
	realm.AddKey(&newKey.PublicKey, newKid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: newKey},
		(&jose.SignerOptions{}).WithType("logout+jwt").WithHeader("kid", newKid))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(refetchInterval)
	before = realm.CertsFetches.Load()
	if code := postLogout(g.Base, realm.SignWith(signer, realm.LogoutClaims("alice", sid))); code != http.StatusOK {
		t.Fatalf("logout token with the rotated key after the flood: %d, want 200", code)
	}
	if n := realm.CertsFetches.Load() - before; n != 1 {
		t.Errorf("the first token with the rotated kid made %d JWKS requests, want 1", n)
	}
	wantError(t, "renewal after the logout with the rotated key", g.renew(live.RefreshToken), http.StatusBadRequest, "invalid_grant")
}

// postLogout posts a logout token and returns the status (0 when the request failed).
func postLogout(base, token string) int {
	resp, err := httpClient.Post(base+"/backchannel-logout", "application/x-www-form-urlencoded",
		strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
	if err != nil {
		fmt.Println("postLogout:", err)
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
