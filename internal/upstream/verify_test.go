package upstream_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/upstream"
)

// failingJWKS fails the first `fail` requests for the provider's JWKS at the connection level
// and passes everything else through.
type failingJWKS struct {
	fail  atomic.Int32
	calls atomic.Int32
}

func (f *failingJWKS) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/certs") {
		f.calls.Add(1)
		if f.fail.Add(-1) >= 0 {
			return nil, errors.New("connection reset by peer")
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestVerify_FailedKeyFetchIsUnavailableUntilTheNextInterval: a token whose key must be
// fetched while the fetch fails is answered ErrUnavailable (503, not a permanent refusal), and
// so is every such token until the refetch interval has passed, without another fetch; then
// the next one fetches again and is accepted. There is no retry within the interval: a junk
// token must not cost the provider a second fetch.
func TestVerify_FailedKeyFetchIsUnavailableUntilTheNextInterval(t *testing.T) {
	const interval = 200 * time.Millisecond
	for _, logout := range []bool{false, true} {
		t.Run(fmt.Sprintf("logout=%v", logout), func(t *testing.T) {
			realm := kctest.New(t)
			rt := &failingJWKS{}
			rt.fail.Store(1)
			c := upstream.New(upstream.Config{Issuer: realm.Issuer(), ClientID: kctest.ClientID,
				ClientSecret: kctest.ClientSecret, HTTPClient: &http.Client{Transport: rt, Timeout: 5 * time.Second},
				JWKSRefetchInterval: interval})
			check := func() error {
				if logout {
					_, err := c.VerifyLogoutToken(t.Context(), realm.LogoutToken("alice", "sid-1"), upstream.LogoutPolicy{
						Audiences: []string{kctest.LogoutAudience}, Now: time.Now(), Skew: time.Minute})
					return err
				}
				_, err := c.VerifyAccessToken(t.Context(), realm.AccessToken(kctest.Token{}))
				return err
			}
			for i := range 2 {
				if err := check(); !errors.Is(err, upstream.ErrUnavailable) {
					t.Fatalf("check %d with the key fetch failed: err = %v, want ErrUnavailable", i, err)
				}
			}
			if n := rt.calls.Load(); n != 1 {
				t.Fatalf("JWKS requests within the interval = %d, want 1", n)
			}
			time.Sleep(interval)
			if err := check(); err != nil {
				t.Fatalf("after the interval: %v", err)
			}
			if n := rt.calls.Load(); n != 2 {
				t.Errorf("JWKS requests = %d, want 2", n)
			}
		})
	}
}

// TestVerify_ForgedSignatureIsRefused: the retry does not turn a bad signature into a good one.
func TestVerify_ForgedSignatureIsRefused(t *testing.T) {
	realm, other := kctest.New(t), kctest.New(t)
	c := upstream.New(upstream.Config{Issuer: realm.Issuer(), ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret})
	forged := other.Sign(map[string]any{"iss": realm.Issuer(), "sub": "mallory", "typ": "Bearer",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()})
	if _, err := c.VerifyAccessToken(t.Context(), forged); !errors.Is(err, upstream.ErrInvalidToken) {
		t.Fatalf("forged token: err = %v, want ErrInvalidToken", err)
	}
}
