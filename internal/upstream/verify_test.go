package upstream_test

import (
	"errors"
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

// TestVerify_RetriesOnceAfterAFailedKeyFetch: a key fetch that fails (as go-oidc can also hand
// out the failure of a fetch that ended just before the call) does not refuse a good token:
// it is checked once more with freshly fetched keys. Two failures in a row are the provider
// being unreachable.
func TestVerify_RetriesOnceAfterAFailedKeyFetch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   int32
		want   error
		calls  int32
		logout bool
	}{
		{name: "access token, one failed fetch", fail: 1, calls: 2},
		{name: "logout token, one failed fetch", fail: 1, calls: 2, logout: true},
		{name: "access token, keys unreachable", fail: 2, calls: 2, want: upstream.ErrUnavailable},
		{name: "access token, no failure", fail: 0, calls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			realm := kctest.New(t)
			rt := &failingJWKS{}
			rt.fail.Store(tc.fail)
			c := upstream.New(upstream.Config{Issuer: realm.Issuer(), ClientID: kctest.ClientID,
				ClientSecret: kctest.ClientSecret, HTTPClient: &http.Client{Transport: rt, Timeout: 5 * time.Second}})
			var err error
			if tc.logout {
				_, err = c.VerifyLogoutToken(t.Context(), realm.LogoutToken("alice", "sid-1"), upstream.LogoutPolicy{
					Audiences: []string{kctest.LogoutAudience}, Now: time.Now(), Skew: time.Minute})
			} else {
				_, err = c.VerifyAccessToken(t.Context(), realm.AccessToken(kctest.Token{}))
			}
			if (tc.want == nil && err != nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if n := rt.calls.Load(); n != tc.calls {
				t.Errorf("JWKS requests = %d, want %d", n, tc.calls)
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
