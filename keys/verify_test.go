package keys_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/keys"
)

func TestVerifyAccessToken(t *testing.T) {
	ck := &clock{t: time.Now()}
	m, err := keys.Open(context.Background(), openStore(t, filepath.Join(t.TempDir(), "db")), config(ck))
	if err != nil {
		t.Fatal(err)
	}
	tok, kid, err := m.Sign([]byte(`{"sub":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := m.VerifyAccessToken(tok); err != nil || string(p) != `{"sub":"alice"}` {
		t.Fatalf("own token: %q, %v", p, err)
	}
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
	other, err := keys.Open(context.Background(), openStore(t, filepath.Join(t.TempDir(), "db")), config(ck))
	if err != nil {
		t.Fatal(err)
	}
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
