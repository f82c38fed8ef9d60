package loopback

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"testing"
)

func TestSecretAndFreeAddr(t *testing.T) {
	s1, h1 := Secret()
	s2, _ := Secret()
	if len(s1) < 43 || s1 == s2 {
		t.Fatalf("secrets %q %q", s1, s2)
	}
	if h := sha256.Sum256([]byte(s1)); hex.EncodeToString(h[:]) != h1 {
		t.Fatal("hash does not match the secret")
	}
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s is not free: %v", addr, err)
	}
	l.Close()
}
