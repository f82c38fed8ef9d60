package forwardauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/forwardauth"
	"github.com/tokengate/tokengate/verifier"
	"github.com/tokengate/tokengate/verifier/verifiertest"
)

type source struct{ v forwardauth.Verifier }

func (s source) Current() forwardauth.Verifier { return s.v }

// TestAuth_ForgedKidFloodFetchesTokengatesJWKSOncePerInterval: 1,000 auth subrequests with
// tokens forged under random kids (iss and aud are public) are all answered 401 and cost
// tokengate at most one /jwks.json fetch per refetch interval, not two each.
func TestAuth_ForgedKidFloodFetchesTokengatesJWKSOncePerInterval(t *testing.T) {
	var gets atomic.Int64
	tg := verifiertest.New(t, verifiertest.Options{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/jwks.json" {
				gets.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}})
	cfg := tg.Config()
	cfg.DisableFeed, cfg.Logger = true, slog.New(slog.DiscardHandler)
	v, err := verifier.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	src := source{v}
	h := forwardauth.NewGate(src, forwardauth.NewMetrics(prometheus.NewRegistry(), src), slog.New(slog.DiscardHandler)).AuthHandler()
	ask := func(tok string) int {
		r := httptest.NewRequest(http.MethodGet, "/orders/1", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if code := ask(tg.AccessToken("alice", "sid-1", time.Now())); code != http.StatusOK {
		t.Fatalf("good token: %d", code)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	toks := make([]string, 1000)
	for i := range toks {
		kid := make([]byte, 8)
		_, _ = rand.Read(kid)
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
			(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", hex.EncodeToString(kid)))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		b, _ := json.Marshal(map[string]any{"iss": tg.URL(), "sub": "mallory", "aud": []string{verifiertest.DefaultAudience},
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "sid": "sid-m", "roles": []string{"admin"}})
		obj, err := s.Sign(b)
		if err != nil {
			t.Fatal(err)
		}
		toks[i], _ = obj.CompactSerialize()
	}
	before := gets.Load()
	var next, notRefused atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(toks)); i = next.Add(1) - 1 {
				if ask(toks[i]) != http.StatusUnauthorized {
					notRefused.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	got := gets.Load() - before
	t.Logf("1000 forged tokens in %s: %d JWKS fetches", took, got)
	if notRefused.Load() != 0 {
		t.Fatalf("%d forged tokens were not answered 401", notRefused.Load())
	}
	if limit := 1 + int64(took/verifier.DefaultJWKSRefetchInterval); got > limit {
		t.Fatalf("1000 forged tokens in %s cost tokengate %d JWKS fetches, want at most %d", took, got, limit)
	}
}
