package keys

import (
	"strings"
	"testing"
	"time"
)

// TestOwnHeaderIsTheSignersHeader: every published key's access tokens take
// VerifyAccessToken's shortcut (a change in how go-jose writes headers would otherwise
// silently send them all through the full parse), and a revoked key's never do.
func TestOwnHeaderIsTheSignersHeader(t *testing.T) {
	now := time.Now()
	for _, alg := range SupportedAlgorithms {
		var doc Document
		for _, st := range []State{StateNext, StateActive, StateRetired, ""} {
			k, err := NewSigningKey(alg, now)
			if err != nil {
				t.Fatal(err)
			}
			if st == "" { // revoked: named in Revoked, no longer in Signing
				doc.Revoked = append(doc.Revoked, RevokedKey{ID: k.ID})
				continue
			}
			k.State = st
			doc.Signing = append(doc.Signing, k)
		}
		doc.Seal = []SealKey{{ID: "s1", Secret: make([]byte, 32)}}
		s, err := newSnapshot(doc)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.ownHeaders) != len(doc.Signing) {
			t.Errorf("%s: %d own headers for %d published keys", alg, len(s.ownHeaders), len(doc.Signing))
		}
		tok, err := compact(s.signer, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		head, _, _ := strings.Cut(tok, ".")
		if k, ok := s.ownHeaders[head]; !ok || k.alg != alg {
			t.Errorf("%s: the active key's token header %q is not its own header", alg, head)
		}
		if _, done, err := s.verifyOwnHeader(tok); !done || err != nil {
			t.Errorf("%s: the shortcut did not verify the active key's token: done %v, %v", alg, done, err)
		}
	}
}
