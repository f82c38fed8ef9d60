package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/keys"
)

// maxAgeVerifier is the strictest cache a service may run: it refetches the JWKS only when the
// Cache-Control max-age has run out, never on an unknown kid. It passes only if every key is
// published at least one max-age before it signs.
type maxAgeVerifier struct {
	s       *stack
	keys    jose.JSONWebKeySet
	expires time.Time
}

func (v *maxAgeVerifier) verify(tok string) error {
	now := v.s.clock.Now()
	if !now.Before(v.expires) {
		resp, err := v.s.srv.Client().Get(v.s.srv.URL + "/jwks.json")
		if err != nil {
			return err
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		v.keys = jose.JSONWebKeySet{}
		if err := json.Unmarshal(raw, &v.keys); err != nil {
			return err
		}
		age, err := strconv.Atoi(strings.TrimPrefix(resp.Header.Get("Cache-Control"), "public, max-age="))
		if err != nil {
			return fmt.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
		}
		v.expires = now.Add(time.Duration(age) * time.Second)
	}
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return err
	}
	ks := v.keys.Key(jws.Signatures[0].Header.KeyID)
	if len(ks) == 0 {
		return fmt.Errorf("kid %s not in the cached JWKS", jws.Signatures[0].Header.KeyID)
	}
	_, err = jws.Verify(ks[0])
	return err
}

type issued struct {
	token string
	exp   time.Time
}

func TestRotation_NoFailedVerificationAcrossScheduledRotationsAndRestarts(t *testing.T) {
	// Keys sign 2m each, are published 30s (the JWKS max-age) before, retire 30s (the TTL) after.
	s := newStackOpts(t, stackOptions{configure: func(c *config.Config) {
		c.Keys.RotateEvery = config.Duration(2 * time.Minute)
		c.Keys.JWKSMaxAge = config.Duration(30 * time.Second)
	}})
	ctx := oidc.ClientContext(context.Background(), s.srv.Client())
	p, err := oidc.NewProvider(ctx, s.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	goOIDC := p.Verifier(&oidc.Config{ClientID: "demo-service", Now: s.clock.Now}) // RemoteKeySet, default caching
	strict := &maxAgeVerifier{s: s}

	var refresh []string
	for i := range 5 {
		up := s.realm.AccessToken(kctest.Token{SID: fmt.Sprintf("sid-rot-%d", i), IssuedAt: s.clock.Now(), Lifetime: 2 * time.Hour})
		r := s.exchange(up)
		if r.Status != http.StatusOK {
			t.Fatal(r.Raw)
		}
		refresh = append(refresh, r.str("refresh_token"))
	}
	var live []issued
	signers := map[string]bool{}
	verifications, failures, scheduled := 0, 0, 0
	for step := 0; step < 72; step++ { // twelve minutes in 10 s steps
		if step > 0 && step%17 == 0 {
			s.restart()
		}
		ch, err := s.keys.Tick(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ch.Activated != "" {
			scheduled++
		}
		if step > 40 && step%7 == 3 { // on-demand rotations, as early as the publication lead allows
			if _, err := s.keys.Rotate(context.Background(), false); err != nil && !errors.Is(err, keys.ErrTooEarly) {
				t.Fatal(err)
			}
		}
		for _, rt := range refresh {
			r := s.renew(rt)
			if r.Status != http.StatusOK {
				t.Fatalf("step %d: renewal: %s", step, r.Raw)
			}
			live = append(live, issued{r.str("access_token"), s.clock.Now().Add(30 * time.Second)})
			jws, _ := jose.ParseSignedCompact(r.str("access_token"), []jose.SignatureAlgorithm{jose.ES256})
			signers[jws.Signatures[0].Header.KeyID] = true
		}
		kept := live[:0]
		for _, tok := range live {
			if !s.clock.Now().Before(tok.exp) {
				continue
			}
			kept = append(kept, tok)
			verifications += 2
			if _, err := goOIDC.Verify(ctx, tok.token); err != nil {
				failures++
				t.Errorf("step %d: go-oidc: %v", step, err)
			}
			if err := strict.verify(tok.token); err != nil {
				failures++
				t.Errorf("step %d: max-age cache: %v", step, err)
			}
		}
		live = kept
		s.clock.Advance(10 * time.Second)
	}
	if scheduled < 3 || len(signers) < scheduled+3 {
		t.Errorf("%d scheduled rotations and %d signing keys, want ≥ 3 and ≥ 3 more on demand", scheduled, len(signers))
	}
	t.Logf("%d verifications of valid tokens across %d signing keys (%d scheduled rotations), 4 restarts: %d failed",
		verifications, len(signers), scheduled, failures)

	// Emergency revocation: the key leaves the JWKS at once and signing goes on.
	leaked := s.keys.ActiveKeyID()
	old := s.renew(refresh[0]).str("access_token")
	if _, err := s.keys.RevokeKey(context.Background(), leaked); err != nil {
		t.Fatal(err)
	}
	if r := s.renew(refresh[0]); r.Status != http.StatusOK {
		t.Fatalf("renewal after revoke: %s", r.Raw)
	}
	// A fresh cache (a service starting, or any cache after its refetch) rejects the old token.
	p2, _ := oidc.NewProvider(ctx, s.srv.URL)
	if _, err := p2.Verifier(&oidc.Config{ClientID: "demo-service", Now: s.clock.Now}).Verify(ctx, old); err == nil {
		t.Error("a token signed by the revoked key still verifies after a JWKS fetch")
	}
	// The long-lived go-oidc cache refetches when it meets a kid it does not know, and then
	// rejects the revoked key too.
	s.clock.Advance(31 * time.Second)
	if _, err := s.keys.Rotate(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	fresh := s.renew(refresh[0]).str("access_token")
	if _, err := goOIDC.Verify(ctx, fresh); err != nil {
		t.Fatalf("token of the newest key: %v", err)
	}
	if _, err := goOIDC.Verify(ctx, old); err == nil {
		t.Error("go-oidc still accepts the revoked key after its refetch")
	}
}
