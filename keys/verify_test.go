package keys_test

import (
	"context"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/keys"
)

func TestVerifyAccessToken(t *testing.T) {
	ck := &clock{t: time.Now()}
	m := openManager(t, config(ck))
	tok, kid := signOwn(t, m)
	parts := strings.Split(tok, ".")
	forged := parts[0] + ".eyJzdWIiOiJtYWxsb3J5In0." + parts[2]
	if _, err := m.VerifyAccessToken(forged); err == nil {
		t.Error("a token with a changed payload verified")
	}
	set, _, err := m.SignWithType([]byte(`{"sub":"alice"}`), "secevent+jwt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.VerifyAccessToken(set); !errors.Is(err, keys.ErrNotAccessToken) {
		t.Errorf("a SET signed by the same key: %v, want ErrNotAccessToken", err)
	}
	other := openManager(t, config(ck))
	foreign, _, _ := other.Sign([]byte(`{"sub":"alice"}`))
	var ke *keys.KeyError
	if _, err := m.VerifyAccessToken(foreign); !errors.As(err, &ke) || ke.Revoked || !errors.Is(err, keys.ErrNoKey) {
		t.Errorf("another issuer's token: %v, want an unknown-key KeyError", err)
	}
	if _, err := m.RevokeKey(context.Background(), kid); err != nil {
		t.Fatal(err)
	}
	if _, err := m.VerifyAccessToken(tok); !errors.As(err, &ke) || !ke.Revoked || ke.KID != kid {
		t.Errorf("token of a revoked key: %v, want a revoked KeyError", err)
	}
	for _, junk := range []string{"", "a.b.c", "not a token", strings.Repeat("e", 10000)} {
		if _, err := m.VerifyAccessToken(junk); err == nil {
			t.Errorf("%.20q verified", junk)
		}
	}
}

// TestVerifyAccessToken_OwnHeader is an attacker against VerifyAccessToken's shortcut for
// tokens that carry a published key's own protected header: with that header, only a
// signature of that key, in its algorithm, over the exact signing input verifies; every other
// header goes through the full JOSE parse and is refused as before.
func TestVerifyAccessToken_OwnHeader(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	for _, alg := range keys.SupportedAlgorithms {
		t.Run(alg, func(t *testing.T) {
			ck := &clock{t: time.Now()}
			cfg := config(ck)
			cfg.Algorithm = alg
			m, other := openManager(t, cfg), openManager(t, cfg)
			tok, kid := signOwn(t, m)
			parts := strings.Split(tok, ".")
			foreign, _, _ := other.Sign([]byte(`{"sub":"alice"}`))
			fp := strings.Split(foreign, ".")
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			flipped := append([]byte(nil), sig...)
			flipped[len(flipped)/2] ^= 1
			crypto := map[string]string{ // our header, a signature that is not ours over this input
				"another key's signature":    parts[0] + "." + fp[1] + "." + fp[2],
				"changed payload":            parts[0] + "." + enc([]byte(`{"sub":"mallory"}`)) + "." + parts[2],
				"flipped signature bit":      parts[0] + "." + parts[1] + "." + enc(flipped),
				"truncated signature":        parts[0] + "." + parts[1] + "." + enc(sig[:len(sig)-1]),
				"signature with a byte more": parts[0] + "." + parts[1] + "." + enc(append(append([]byte(nil), sig...), 0)),
				"empty signature":            parts[0] + "." + parts[1] + ".",
			}
			for name, forged := range crypto {
				if _, err := m.VerifyAccessToken(forged); err == nil {
					t.Errorf("%s: verified", name)
				}
			}
			header := func(h string) string { return enc([]byte(h)) + "." + parts[1] + "." + parts[2] }
			refused := map[string]string{ // not our header: the full parse refuses
				"alg none":        enc([]byte(`{"alg":"none","kid":"`+kid+`","typ":"at+jwt"}`)) + "." + parts[1] + ".",
				"alg HS256":       header(`{"alg":"HS256","kid":"` + kid + `","typ":"at+jwt"}`),
				"another typ":     header(`{"alg":"` + alg + `","kid":"` + kid + `","typ":"secevent+jwt"}`),
				"critical header": header(`{"alg":"` + alg + `","crit":["exp"],"exp":1,"kid":"` + kid + `","typ":"at+jwt"}`),
				"four parts":      tok + ".e30",
				"padded payload":  parts[0] + "." + parts[1] + "=." + parts[2],
				"no signature":    parts[0] + "." + parts[1],
			}
			for name, bad := range refused {
				if _, err := m.VerifyAccessToken(bad); err == nil {
					t.Errorf("%s: verified", name)
				}
			}
			if _, err := m.RevokeKey(context.Background(), kid); err != nil {
				t.Fatal(err)
			}
			var ke *keys.KeyError
			if _, err := m.VerifyAccessToken(tok); !errors.As(err, &ke) || !ke.Revoked {
				t.Errorf("own header of a revoked key: %v, want a revoked KeyError", err)
			}
		})
	}
}

// openManager opens a key manager with cfg on a new store of its own.
func openManager(t *testing.T, cfg keys.Config) *keys.Manager {
	t.Helper()
	m, err := keys.Open(context.Background(), openStore(t, filepath.Join(t.TempDir(), "db")), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// signOwn signs {"sub":"alice"} with m, checks that m verifies it back to the same payload, and
// returns the token and its kid.
func signOwn(t *testing.T, m *keys.Manager) (token, kid string) {
	t.Helper()
	token, kid, err := m.Sign([]byte(`{"sub":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := m.VerifyAccessToken(token); err != nil || string(p) != `{"sub":"alice"}` {
		t.Fatalf("own token: %q, %v", p, err)
	}
	return token, kid
}
