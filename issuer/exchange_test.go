package issuer_test

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/keys"
)

// countingUpstream counts local verifications of upstream tokens.
type countingUpstream struct {
	*upstream.Client
	verified atomic.Int64
}

func (c *countingUpstream) VerifyAccessToken(ctx context.Context, raw string) (upstream.AccessToken, error) {
	c.verified.Add(1)
	return c.Client.VerifyAccessToken(ctx, raw)
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestExchange_CachedTokenIsNotVerifiedAgainUntilItExpires(t *testing.T) {
	realm := kctest.New(t)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	km, err := keys.Open(context.Background(), st, keys.Config{})
	if err != nil {
		t.Fatal(err)
	}
	up := &countingUpstream{Client: upstream.New(upstream.Config{Issuer: realm.Issuer(), ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret})}
	ck := &testClock{t: time.Now()}
	const secret = "bff-secret-0123456789-abcdefghijklmnop"
	is, err := issuer.New(issuer.Config{Issuer: "https://tg.test", TTL: 30 * time.Second, RecheckAfter: time.Minute,
		MaxUpstreamLifetime: time.Hour, LogoutAudiences: []string{kctest.LogoutAudience}, UpstreamClientID: kctest.ClientID, Now: ck.Now,
		Clients: []issuer.Client{{ID: "bff", SecretSHA256: sha256.Sum256([]byte(secret)), Audiences: []string{"svc"}}}},
		st, km, up, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := is.Authenticate("bff", secret)
	tok := realm.AccessToken(kctest.Token{Lifetime: time.Minute})
	req := issuer.ExchangeRequest{SubjectToken: tok, SubjectTokenType: issuer.TokenTypeAccessToken}
	for range 5 {
		if _, err := is.Exchange(context.Background(), c, req); err != nil {
			t.Fatal(err)
		}
	}
	if n := up.verified.Load(); n != 1 {
		t.Errorf("5 exchanges of one token verified it %d times, want 1", n)
	}
	other := realm.AccessToken(kctest.Token{})
	if _, err := is.Exchange(context.Background(), c, issuer.ExchangeRequest{SubjectToken: other, SubjectTokenType: issuer.TokenTypeAccessToken}); err != nil {
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
		if _, err := is.Exchange(context.Background(), c, issuer.ExchangeRequest{SubjectToken: "junk", SubjectTokenType: issuer.TokenTypeAccessToken}); err == nil {
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
