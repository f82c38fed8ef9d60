package issuer_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/proctest"
	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/keys"
)

const (
	bffSecret   = "bff-secret-0123456789-abcdefghijklmnop"
	otherSecret = "other-secret-0123456789-abcdefghijklmn"
)

// introspectionCounter counts the issuer's local verifications of upstream tokens and its
// calls to the provider's introspection endpoint, answered or not.
type introspectionCounter struct {
	*upstream.Client
	calls    atomic.Int64 // introspections
	verified atomic.Int64 // local verifications (VerifyAccessToken)
}

func (c *introspectionCounter) Introspect(ctx context.Context, token string) (upstream.Introspection, error) {
	c.calls.Add(1)
	return c.Client.Introspect(ctx, token)
}

func (c *introspectionCounter) VerifyAccessToken(ctx context.Context, raw string) (upstream.AccessToken, error) {
	c.verified.Add(1)
	return c.Client.VerifyAccessToken(ctx, raw)
}

// fixture is the policy core with small real collaborators: a bolt store in a temp dir, a key
// manager on it, the fake Keycloak realm, a test clock, a publisher that remembers what it
// was told and a JSON logger into logs. The issuer's policy is the one tokengate serve runs
// (TTL 30s, RecheckAfter 1m, MaxUpstreamLifetime 1h); clients bff (demo-service, orders) and
// other (demo-service). Every issuer of a policy test is built here; options change what a
// test varies.
type fixture struct {
	t          *testing.T
	realm      *kctest.Realm
	store      *bolt.Store // the data, whatever wraps it for the issuer
	clock      *testClock
	up         *introspectionCounter
	pub        *published
	logs       *proctest.SyncBuffer // the issuer's log lines (JSON)
	is         *issuer.Issuer
	keys       *keys.Manager
	bff, other issuer.Client // zero when an option removed the client
}

// setup is what an option may change before the issuer is built: its policy (the embedded
// Config, defaults above) and the store it writes through.
type setup struct {
	issuer.Config
	// wrapStore, when set, wraps the fixture's bolt store (a failing, flaky or hanging one).
	wrapStore func(*bolt.Store) issuer.Store
}

// option changes the fixture's setup.
type option func(*setup)

// onStore makes the issuer write through wrap(store); the fixture's store stays the data.
func onStore(wrap func(*bolt.Store) issuer.Store) option {
	return func(s *setup) { s.wrapStore = wrap }
}

func newFixture(t *testing.T, opts ...option) *fixture {
	t.Helper()
	f := &fixture{t: t, realm: kctest.New(t), store: openBolt(t), clock: &testClock{t: time.Now()}, pub: &published{},
		logs: &proctest.SyncBuffer{}}
	km, err := keys.Open(context.Background(), f.store, keys.Config{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.up = &introspectionCounter{Client: upstream.New(upstream.Config{Issuer: f.realm.Issuer(),
		ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret})}
	s := setup{Config: issuer.Config{
		Issuer: "https://tg.test", TTL: 30 * time.Second, RecheckAfter: time.Minute, MaxUpstreamLifetime: time.Hour,
		LogoutAudiences: []string{kctest.LogoutAudience}, UpstreamClientID: kctest.ClientID, Now: f.clock.Now,
		Logger: slog.New(slog.NewJSONHandler(f.logs, nil)),
		Clients: []issuer.Client{
			{ID: "bff", SecretSHA256: sha256.Sum256([]byte(bffSecret)), Audiences: []string{"demo-service", "orders"}},
			{ID: "other", SecretSHA256: sha256.Sum256([]byte(otherSecret)), Audiences: []string{"demo-service"}},
		},
	}}
	for _, o := range opts {
		o(&s)
	}
	var st issuer.Store = f.store
	if s.wrapStore != nil {
		st = s.wrapStore(f.store)
	}
	f.keys = km
	if f.is, err = issuer.New(s.Config, st, km, f.up, f.pub); err != nil {
		t.Fatal(err)
	}
	for _, c := range s.Clients {
		switch c.ID {
		case "bff":
			f.bff = f.client("bff", bffSecret)
		case "other":
			f.other = f.client("other", otherSecret)
		}
	}
	return f
}

// client authenticates a configured client, failing the test on error.
func (f *fixture) client(id, secret string) issuer.Client {
	f.t.Helper()
	c, err := f.is.Authenticate(id, secret)
	if err != nil {
		f.t.Fatalf("authenticate %s: %v", id, err)
	}
	return c
}

// auditLines returns the JSON log records whose msg is msg.
func (f *fixture) auditLines(msg string) []map[string]any {
	f.t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var m map[string]any
		if l == "" {
			continue
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			f.t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
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
