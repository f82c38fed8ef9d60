package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/kctest"
)

// BenchmarkRawES256Sign is the floor: ECDSA P-256 signing of a digest, crypto alone.
func BenchmarkRawES256Sign(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := sha256.Sum256([]byte(`{"iss":"https://tokengate.example","sub":"alice"}`))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ecdsa.SignASN1(rand.Reader, k, d[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// serveForm runs one request through the handler in-process, without a network.
func serveForm(b *testing.B, h http.Handler, body string) {
	req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("bff", bffSecret)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		b.Fatalf("%d %s", w.Code, w.Body.String())
	}
}

// BenchmarkRenewHandler is a full renewal through the handler: client auth, refresh token
// unsealing, revocation checks against bbolt, signing, JSON answer.
func BenchmarkRenewHandler(b *testing.B) {
	s := newStack(b)
	r := s.mustExchange("alice", "sid-bench")
	body := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}}.Encode()
	h := *s.handler.Load()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serveForm(b, h, body)
		}
	})
}

// BenchmarkExchangeCached is an exchange whose introspection answer is cached: local signature
// check of the upstream token, cache hit, revocation checks, signing, sealing.
func BenchmarkExchangeCached(b *testing.B) {
	s := newStack(b)
	tok := s.realm.AccessToken(kctest.Token{SID: "sid-bench-x"})
	body := exchangeForm(tok).Encode()
	h := *s.handler.Load()
	serveForm(b, h, body)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serveForm(b, h, body)
		}
	})
	if n := s.realm.Introspections.Load(); n != 1 {
		b.Fatalf("introspections = %d, want 1", n)
	}
}
