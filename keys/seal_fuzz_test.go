package keys_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/keys"
)

// FuzzUnseal feeds arbitrary strings to Manager.Unseal, the parser of refresh tokens presented
// by clients. Invariants: no panic; anything opens only to a plaintext that Seal really sealed
// (a mutated or forged token never yields new plaintext); a refusal is an error.
func FuzzUnseal(f *testing.F) {
	st, err := bolt.Open(filepath.Join(f.TempDir(), "db"), bolt.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = st.Close() })
	ck := &clock{t: time.Now()}
	m, err := keys.Open(context.Background(), st, config(ck))
	if err != nil {
		f.Fatal(err)
	}
	sealed := [][]byte{
		[]byte(`{"v":1,"cid":"bff","sub":"alice","sid":"s-1","aud":["orders"],"exp":1893456000}`),
		[]byte(`{}`),
		{},
	}
	for _, p := range sealed {
		tok, err := m.Seal(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
		parts := strings.Split(tok, ".")
		f.Add(parts[0] + "." + parts[1] + "." + parts[2] + "." + parts[3] + "." + parts[4] + "A")
		f.Add(parts[0] + ".." + parts[2] + "." + parts[3] + "." + parts[4])
	}
	// Other algorithms and shapes a client might send.
	f.Add("eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("eyJhbGciOiJkaXIiLCJlbmMiOiJBMTI4Q0JDLUhTMjU2In0..AAAAAAAAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add(`{"protected":"eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0","iv":"AAAAAAAAAAAAAAAA","ciphertext":"","tag":"AAAAAAAAAAAAAAAAAAAAAA"}`)
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.AA")
	f.Add("")

	f.Fuzz(func(t *testing.T, token string) {
		out, err := m.Unseal(token)
		if err != nil {
			if out != nil {
				t.Fatalf("error %v with plaintext %q", err, out)
			}
			return
		}
		for _, p := range sealed {
			if bytes.Equal(out, p) {
				return
			}
		}
		t.Fatalf("token %q opened to plaintext %q that was never sealed", token, out)
	})
}
