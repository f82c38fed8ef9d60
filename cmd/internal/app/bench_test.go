package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
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
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ecdsa.SignASN1(rand.Reader, k, d[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// newBenchStack is a stack as tokengate serve runs it (metrics recorded), without rate limits.
func newBenchStack(b *testing.B) *stack { return newStack(b) }

// serveForm runs one request through the handler in-process, without a network. The request
// and response writer are built the way net/http's server builds them for a keep-alive
// connection (no per-request 4 KiB bufio reader as in httptest.NewRequest, no growing body
// buffer as in httptest.ResponseRecorder), so the figure is the handler's cost.
func serveForm(b *testing.B, h http.Handler, body string) { serveFormAs(b, h, "bff", bffSecret, body) }

// serveFormAs is serveForm for client id with secret.
func serveFormAs(b *testing.B, h http.Handler, id, secret, body string) {
	req, err := http.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	req.RemoteAddr = "192.0.2.1:1234"
	w := &discardWriter{header: http.Header{}}
	h.ServeHTTP(w, req)
	if w.code != http.StatusOK || w.n == 0 {
		b.Fatalf("HTTP %d, %d bytes", w.code, w.n)
	}
}

// discardWriter is an http.ResponseWriter that counts the body instead of keeping it.
type discardWriter struct {
	header http.Header
	code   int
	n      int
}

func (w *discardWriter) Header() http.Header { return w.header }

func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.n += len(p)
	return len(p), nil
}

// BenchmarkRenewHandler is a full renewal through the handler: client auth, refresh token
// unsealing, revocation checks against bbolt, signing, JSON answer.
func BenchmarkRenewHandler(b *testing.B) {
	s := newBenchStack(b)
	r := s.mustExchange("alice", "sid-bench")
	body := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}}.Encode()
	h := *s.handler.Load()
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serveForm(b, h, body)
		}
	})
}

// BenchmarkExchangeCached is an exchange whose introspection answer is cached: local signature
// check of the upstream token, cache hit, revocation checks, signing, sealing.
func BenchmarkExchangeCached(b *testing.B) {
	s := newBenchStack(b)
	tok := s.realm.AccessToken(kctest.Token{SID: "sid-bench-x"})
	body := exchangeForm(tok).Encode()
	h := *s.handler.Load()
	serveForm(b, h, body)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serveForm(b, h, body)
		}
	})
	if n := s.realm.Introspections.Load(); n != 1 {
		b.Fatalf("introspections = %d, want 1", n)
	}
}
