package issuer_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/keys"
)

const (
	bffSecret   = "bff-secret-0123456789-abcdefghijklmnop"
	otherSecret = "other-secret-0123456789-abcdefghijklmn"
)

// introspectionCounter counts the issuer's calls to the provider's introspection endpoint,
// answered or not.
type introspectionCounter struct {
	*upstream.Client
	calls atomic.Int64
}

func (c *introspectionCounter) Introspect(ctx context.Context, token string) (upstream.Introspection, error) {
	c.calls.Add(1)
	return c.Client.Introspect(ctx, token)
}

// fixture is the policy core with small real collaborators: a bolt store in a temp dir, a key
// manager on it, the fake Keycloak realm, a test clock and a publisher that remembers what it
// was told. The issuer's policy is the one tokengate serve runs (TTL 30s, RecheckAfter 1m,
// MaxUpstreamLifetime 1h); clients bff (demo-service, orders) and other (demo-service).
type fixture struct {
	t          *testing.T
	realm      *kctest.Realm
	store      *bolt.Store
	clock      *testClock
	up         *introspectionCounter
	pub        *published
	is         *issuer.Issuer
	keys       *keys.Manager
	bff, other issuer.Client
}

func newFixture(t *testing.T, opts ...func(*issuer.Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, realm: kctest.New(t), store: openBolt(t), clock: &testClock{t: time.Now()}, pub: &published{}}
	km, err := keys.Open(context.Background(), f.store, keys.Config{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.up = &introspectionCounter{Client: upstream.New(upstream.Config{Issuer: f.realm.Issuer(),
		ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret})}
	cfg := issuer.Config{
		Issuer: "https://tg.test", TTL: 30 * time.Second, RecheckAfter: time.Minute, MaxUpstreamLifetime: time.Hour,
		LogoutAudiences: []string{kctest.LogoutAudience}, UpstreamClientID: kctest.ClientID, Now: f.clock.Now,
		Clients: []issuer.Client{
			{ID: "bff", SecretSHA256: sha256.Sum256([]byte(bffSecret)), Audiences: []string{"demo-service", "orders"}},
			{ID: "other", SecretSHA256: sha256.Sum256([]byte(otherSecret)), Audiences: []string{"demo-service"}},
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	f.keys = km
	f.is, err = issuer.New(cfg, f.store, km, f.up, f.pub)
	if err != nil {
		t.Fatal(err)
	}
	if f.bff, err = f.is.Authenticate("bff", bffSecret); err != nil {
		t.Fatal(err)
	}
	if f.other, err = f.is.Authenticate("other", otherSecret); err != nil {
		t.Fatal(err)
	}
	return f
}

// token mints an upstream access token issued now by the fixture's clock.
func (f *fixture) token(sub, sid string) string {
	return f.realm.AccessToken(kctest.Token{Subject: sub, SID: sid, IssuedAt: f.clock.Now()})
}

// exchangeToken exchanges an upstream token as bff.
func (f *fixture) exchangeToken(tok string) (issuer.TokenResponse, error) {
	return f.is.Exchange(context.Background(), f.bff, issuer.ExchangeRequest{SubjectToken: tok,
		SubjectTokenType: issuer.TokenTypeAccessToken, Audience: []string{"demo-service"}})
}

// exchange exchanges a fresh upstream token of sub's session sid as bff, failing the test on error.
func (f *fixture) exchange(sub, sid string) issuer.TokenResponse {
	f.t.Helper()
	r, err := f.exchangeToken(f.token(sub, sid))
	if err != nil {
		f.t.Fatalf("exchange: %v", err)
	}
	return r
}

// renew renews as bff.
func (f *fixture) renew(refresh string) (issuer.TokenResponse, error) {
	return f.is.Renew(context.Background(), f.bff, refresh, "")
}

// mustRenew renews as bff, failing the test on error.
func (f *fixture) mustRenew(refresh string) issuer.TokenResponse {
	f.t.Helper()
	r, err := f.renew(refresh)
	if err != nil {
		f.t.Fatalf("renew: %v", err)
	}
	return r
}

// wantCode fails unless err is an *issuer.Error with the OAuth code (nil when code is "").
func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	var oe *issuer.Error
	switch {
	case code == "" && err != nil:
		t.Errorf("%s: %v, want success", what, err)
	case code != "" && (!errors.As(err, &oe) || oe.Code != code):
		t.Errorf("%s: %v, want %s", what, err, code)
	}
}
