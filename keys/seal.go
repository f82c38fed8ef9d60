package keys

import (
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// Seal encrypts plaintext into a compact JWE (dir, A256GCM) under the newest seal key.
func (m *Manager) Seal(plaintext []byte) (string, error) {
	obj, err := m.snap.Load().sealer.Encrypt(plaintext)
	if err != nil {
		return "", fmt.Errorf("keys: seal: %w", err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("keys: seal: serialize: %w", err)
	}
	return out, nil
}

// Unseal decrypts a compact JWE made by Seal. Only dir/A256GCM under a known seal key is
// accepted; anything else (tampered, foreign, other algorithms) is an error.
func (m *Manager) Unseal(token string) ([]byte, error) {
	obj, err := jose.ParseEncryptedCompact(token,
		[]jose.KeyAlgorithm{jose.DIRECT}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return nil, fmt.Errorf("keys: unseal: %w", err)
	}
	key, ok := m.snap.Load().sealKeys[obj.Header.KeyID]
	if !ok {
		return nil, fmt.Errorf("keys: unseal: %w", ErrNoKey)
	}
	out, err := obj.Decrypt(key)
	if err != nil {
		return nil, fmt.Errorf("keys: unseal: %w", err)
	}
	return out, nil
}
