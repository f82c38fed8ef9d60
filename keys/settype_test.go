package keys_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/keys"
)

// TestSignWithType_SameKeysOtherTyp: a SET is signed by the active key with its own typ, verifies
// against the published JWKS, and follows the active key across rotations.
func TestSignWithType_SameKeysOtherTyp(t *testing.T) {
	ck := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, alg := range keys.SupportedAlgorithms {
		t.Run(alg, func(t *testing.T) {
			cfg := config(ck)
			cfg.Algorithm = alg
			m := openManager(t, cfg)
			for round := range 2 {
				tok, kid, err := m.SignWithType([]byte(`{"jti":"1"}`), "secevent+jwt")
				if err != nil {
					t.Fatal(err)
				}
				if kid != m.ActiveKeyID() {
					t.Errorf("round %d: signed with %s, active is %s", round, kid, m.ActiveKeyID())
				}
				jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
				if err != nil {
					t.Fatal(err)
				}
				h := jws.Signatures[0].Protected
				if h.ExtraHeaders[jose.HeaderType] != "secevent+jwt" || h.KeyID != kid {
					t.Errorf("round %d: header typ=%v kid=%s, want secevent+jwt %s", round, h.ExtraHeaders[jose.HeaderType], h.KeyID, kid)
				}
				pub, err := m.PublicKey(kid)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := jws.Verify(pub); err != nil {
					t.Errorf("round %d: does not verify with the published key: %v", round, err)
				}
				// The access-token signer keeps its own typ.
				at, _, err := m.Sign([]byte(`{}`))
				if err != nil {
					t.Fatal(err)
				}
				ajws, _ := jose.ParseSignedCompact(at, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
				if typ := ajws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
					t.Errorf("Sign typ = %v after SignWithType, want at+jwt", typ)
				}
				ck.Advance(10 * time.Minute)
				if _, err := m.Rotate(context.Background(), true); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := m.SignWithType([]byte(`{}`), ""); err == nil {
				t.Error("SignWithType with an empty typ succeeded")
			}
		})
	}
}
