package issuer_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/keys"
)

// policy is an issuer on a bolt store and the fake Keycloak, with a settable clock and one
// client, for tests of the policy without HTTP.
type policy struct {
	t      *testing.T
	realm  *kctest.Realm
	st     *bolt.Store
	is     *issuer.Issuer
	client issuer.Client
	clock  *testClock
}

const policySecret = "bff-secret-0123456789-abcdefghijklmnop"

func newPolicy(t *testing.T, edit func(*issuer.Config), audiences ...string) *policy {
	t.Helper()
	p := &policy{t: t, realm: kctest.New(t), clock: &testClock{t: time.Now()}}
	var err error
	if p.st, err = bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.st.Close() })
	km, err := keys.Open(context.Background(), p.st, keys.Config{})
	if err != nil {
		t.Fatal(err)
	}
	up := upstream.New(upstream.Config{Issuer: p.realm.Issuer(), ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret})
	if len(audiences) == 0 {
		audiences = []string{"svc"}
	}
	cfg := issuer.Config{Issuer: "https://tg.test", TTL: 30 * time.Second, RecheckAfter: time.Minute,
		MaxUpstreamLifetime: time.Hour, LogoutAudiences: []string{kctest.LogoutAudience}, UpstreamClientID: kctest.ClientID,
		Now:     p.clock.Now,
		Clients: []issuer.Client{{ID: "bff", SecretSHA256: sha256.Sum256([]byte(policySecret)), Audiences: audiences}}}
	if edit != nil {
		edit(&cfg)
	}
	if p.is, err = issuer.New(cfg, p.st, km, up, nil); err != nil {
		t.Fatal(err)
	}
	if p.client, err = p.is.Authenticate("bff", policySecret); err != nil {
		t.Fatal(err)
	}
	return p
}

// exchange exchanges an upstream token with the given audience and resource parameters.
func (p *policy) exchange(tok string, audience, resource []string) (issuer.TokenResponse, error) {
	return p.is.Exchange(context.Background(), p.client, issuer.ExchangeRequest{SubjectToken: tok,
		SubjectTokenType: issuer.TokenTypeAccessToken, Audience: audience, Resource: resource})
}

// audOf decodes the aud claim of an internal token (no signature check: the issuer made it).
func audOf(t *testing.T, tok string) []string {
	t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Aud any `json:"aud"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	switch a := c.Aud.(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, x := range a {
			out = append(out, x.(string))
		}
		return out
	}
	return nil
}
