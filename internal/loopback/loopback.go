// Package loopback has the small helpers the load and bench tools and the process tests
// (through internal/proctest) share to run a tokengate process on this machine: a free
// loopback address and a fresh client secret with its hash.
package loopback

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net"
)

// FreeAddr returns a 127.0.0.1 address that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Secret returns a new 256-bit secret (base64url) and the hex SHA-256 the config stores.
func Secret() (secret, sha256Hex string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	secret = base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(secret))
	return secret, hex.EncodeToString(h[:])
}
