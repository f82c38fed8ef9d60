package keys

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzVerifyOwnHeader holds VerifyAccessToken's shortcut (verifyOwnHeader) to go-jose's full
// parse (verifyParsed): for any token the shortcut takes, both accept it with the same payload
// or both refuse it. The seeds are real tokens of each algorithm, a revoked key's, and
// tampered forms of them; the fuzzer mutates from there.
func FuzzVerifyOwnHeader(f *testing.F) {
	now := time.Now()
	var doc Document
	var signers []*snapshot
	for _, alg := range SupportedAlgorithms {
		for _, st := range []State{StateActive, ""} {
			k, err := NewSigningKey(alg, now)
			if err != nil {
				f.Fatal(err)
			}
			one := Document{Signing: []SigningKey{k}, Seal: []SealKey{{ID: "s1", Secret: make([]byte, 32)}}}
			one.Signing[0].State = StateActive
			sn, err := newSnapshot(one)
			if err != nil {
				f.Fatal(err)
			}
			signers = append(signers, sn)
			if st == "" {
				doc.Revoked = append(doc.Revoked, RevokedKey{ID: k.ID})
				continue
			}
			k.State = StateRetired
			doc.Signing = append(doc.Signing, k)
		}
	}
	doc.Signing[0].State = StateActive
	doc.Seal = []SealKey{{ID: "s1", Secret: make([]byte, 32)}}
	s, err := newSnapshot(doc)
	if err != nil {
		f.Fatal(err)
	}
	for _, sn := range signers {
		tok, err := compact(sn.signer, []byte(`{"sub":"alice","sid":"s1"}`))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
		head, rest, _ := strings.Cut(tok, ".")
		body, sig, _ := strings.Cut(rest, ".")
		f.Add(head + "." + body + "x." + sig)
		f.Add(head + "." + body + "." + sig[:len(sig)-2])
		f.Add(head + "." + body + "." + sig + "=")
		f.Add(head + "." + body + "." + sig + ".x")
		f.Add(head + "." + strings.ToUpper(body) + "." + sig)
	}
	f.Fuzz(func(t *testing.T, token string) {
		fast, done, fastErr := s.verifyOwnHeader(token)
		if !done {
			return
		}
		full, fullErr := s.verifyParsed(token)
		if (fastErr == nil) != (fullErr == nil) || !bytes.Equal(fast, full) {
			t.Fatalf("shortcut: %q, %v; full parse: %q, %v", fast, fastErr, full, fullErr)
		}
	})
}
