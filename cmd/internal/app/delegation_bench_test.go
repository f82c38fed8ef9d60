package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"net/url"
	"testing"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/issuer"
)

const (
	ordersClientSecret   = "orders-client-secret-0123456789-abcdef"
	paymentsClientSecret = "payments-client-secret-0123456789-abcd"
)

// newDelegationStack is the stack with two services as clients: orders may call payments;
// payments may call ledger with chains of at most 1 actor. bff gets tokens for orders.
func newDelegationStack(t testing.TB) *stack {
	return newStackOpts(t, stackOptions{configure: func(c *config.Config) {
		c.Clients = append(c.Clients,
			config.Client{ID: "orders", SecretSHA256: hexSHA256(ordersClientSecret), DelegateTo: []string{"payments"}},
			config.Client{ID: "payments", SecretSHA256: hexSHA256(paymentsClientSecret), DelegateTo: []string{"ledger"}, MaxDelegationDepth: 1},
		)
	}})
}

func delegationForm(subject, audience string, extra ...string) url.Values {
	f := url.Values{"grant_type": {issuer.GrantTokenExchange}, "subject_token": {subject},
		"subject_token_type": {issuer.TokenTypeAccessToken}}
	if audience != "" {
		f.Set("audience", audience)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Set(extra[i], extra[i+1])
	}
	return f
}

// BenchmarkRawES256Verify is the allowance of a delegation over a renewal: one ECDSA P-256
// verification of a digest, crypto alone (compare BenchmarkRawES256Sign).
func BenchmarkRawES256Verify(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := sha256.Sum256([]byte(`{"iss":"https://tokengate.example","sub":"alice"}`))
	sig, err := ecdsa.SignASN1(rand.Reader, k, d[:])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !ecdsa.VerifyASN1(&k.PublicKey, d[:], sig) {
				b.Fatal("signature does not verify")
			}
		}
	})
}

// BenchmarkDelegateHandler is a full delegation through the handler, as orders calling for a
// payments token: client auth, the subject token's ES256 verification with tokengate's own
// keys (in process), revocation checks against bbolt, signing, JSON answer. Compare with
// BenchmarkRenewHandler: the difference is one ES256 verification against the renewal's
// unsealing (the grant cache usually spares that).
func BenchmarkDelegateHandler(b *testing.B) {
	s := newDelegationStack(b)
	up := s.realm.AccessToken(kctest.Token{Subject: "alice", SID: "sid-bench-d"})
	first := s.post("/token", "bff", bffSecret, delegationForm(up, "orders"))
	if first.Status != http.StatusOK {
		b.Fatalf("exchange: %d %s", first.Status, first.Raw)
	}
	body := delegationForm(first.str("access_token"), "payments").Encode()
	h := *s.handler.Load()
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serveFormAs(b, h, "orders", ordersClientSecret, body)
		}
	})
}
