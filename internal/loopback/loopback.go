// Package loopback has the small helpers the load and bench tools and the process tests
// (through internal/proctest) share to run processes on this machine: a free loopback port,
// reserved against the other tokengate processes picking ports, and a fresh client secret
// with its hash.
package loopback

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net"
	"strconv"
)

// FreeAddr returns a 127.0.0.1 address on a port Port picked: free now and reserved for this
// process.
func FreeAddr() (string, error) {
	p, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// kernelPort returns a port the kernel picked for 127.0.0.1:0, free a moment ago.
func kernelPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Secret returns a new 256-bit secret (base64url) and the hex SHA-256 the config stores.
func Secret() (secret, sha256Hex string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	secret = base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(secret))
	return secret, hex.EncodeToString(h[:])
}
