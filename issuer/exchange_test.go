package issuer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/issuer"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestExchange_CachedTokenIsNotVerifiedAgainUntilItExpires(t *testing.T) {
	f := newFixture(t)
	realm, up, ck, is, c := f.realm, f.up, f.clock, f.is, f.bff
	tok := realm.AccessToken(kctest.Token{Lifetime: time.Minute})
	req := issuer.ExchangeRequest{SubjectToken: tok, SubjectTokenType: issuer.TokenTypeAccessToken, Audience: []string{"demo-service"}}
	for range 5 {
		if _, err := is.Exchange(context.Background(), c, req); err != nil {
			t.Fatal(err)
		}
	}
	if n := up.verified.Load(); n != 1 {
		t.Errorf("5 exchanges of one token verified it %d times, want 1", n)
	}
	other := realm.AccessToken(kctest.Token{})
	if _, err := is.Exchange(context.Background(), c, issuer.ExchangeRequest{SubjectToken: other, SubjectTokenType: issuer.TokenTypeAccessToken, Audience: []string{"demo-service"}}); err != nil {
		t.Fatal(err)
	}
	if n := up.verified.Load(); n != 2 {
		t.Errorf("a new token must be verified: %d verifications, want 2", n)
	}
	// Past the token's exp the cache entry is gone and the token is checked (and refused) again.
	ck.Advance(2 * time.Minute)
	if _, err := is.Exchange(context.Background(), c, req); err == nil {
		t.Error("an expired token was exchanged from the cache")
	}
	if n := up.verified.Load(); n != 3 {
		t.Errorf("after its exp the token must be verified again: %d verifications, want 3", n)
	}
	// A garbage token is never cached: every attempt is verified (and refused).
	for range 2 {
		if _, err := is.Exchange(context.Background(), c, issuer.ExchangeRequest{SubjectToken: "junk", SubjectTokenType: issuer.TokenTypeAccessToken, Audience: []string{"demo-service"}}); err == nil {
			t.Fatal("junk exchanged")
		}
	}
	if n := up.verified.Load(); n != 5 {
		t.Errorf("refused tokens must not be cached: %d verifications, want 5", n)
	}
}

// TestExchange_ConcurrentExchangesOfOneTokenIntrospectOnce: concurrent exchanges of one
// upstream token share a single introspection.
func TestExchange_ConcurrentExchangesOfOneTokenIntrospectOnce(t *testing.T) {
	f := newFixture(t)
	tok := f.token("", "")
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, err := f.exchangeToken(tok); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := f.up.calls.Load(); n != 1 {
		t.Errorf("introspections = %d, want 1", n)
	}
}

// Spring Security (and other RFC 8693 clients) send the jwt type for an access token they hold
// as a parsed JWT; Keycloak's access tokens are JWTs, so the exchange is the same.
func TestExchange_SubjectTokenTypeJWTIsAnAccessToken(t *testing.T) {
	f := newFixture(t)
	r, err := f.is.Exchange(context.Background(), f.bff, issuer.ExchangeRequest{SubjectToken: f.token("alice", "sid-jwt"),
		SubjectTokenType: issuer.TokenTypeJWT, Audience: []string{"demo-service"}})
	if err != nil || r.AccessToken == "" || r.IssuedTokenType != issuer.TokenTypeAccessToken {
		t.Fatalf("exchange with subject_token_type jwt: %+v, %v", r, err)
	}
	for _, typ := range []string{"urn:ietf:params:oauth:token-type:id_token", "urn:ietf:params:oauth:token-type:refresh_token", ""} {
		if _, err := f.is.Exchange(context.Background(), f.bff, issuer.ExchangeRequest{SubjectToken: f.token("alice", "sid-jwt"),
			SubjectTokenType: typ, Audience: []string{"demo-service"}}); err == nil {
			t.Errorf("subject_token_type %q accepted", typ)
		}
	}
}
