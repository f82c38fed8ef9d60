package keys

import (
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// Sign signs payload (JSON claims) with the active key as a compact JWS with header
// typ "at+jwt" and the key's kid. It returns the token and the kid used.
func (m *Manager) Sign(payload []byte) (token, kid string, err error) {
	s := m.snap.Load()
	if token, err = compact(s.signer, payload); err != nil {
		return "", "", err
	}
	return token, s.activeKID, nil
}

// compact signs payload with signer as a compact JWS.
func compact(signer jose.Signer, payload []byte) (string, error) {
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("keys: sign: %w", err)
	}
	token, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("keys: serialize: %w", err)
	}
	return token, nil
}

// ActiveKeyID returns the kid of the signing key.
func (m *Manager) ActiveKeyID() string { return m.snap.Load().activeKID }

// JWKS returns the published key set (public keys of next, active and retired keys).
func (m *Manager) JWKS() jose.JSONWebKeySet { return m.snap.Load().jwks }

// JWKSJSON returns the published key set, encoded.
func (m *Manager) JWKSJSON() []byte { return m.snap.Load().jwksJSON }

// Algorithms returns the signing algorithms of the published keys, active first.
func (m *Manager) Algorithms() []string {
	s := m.snap.Load()
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, k := range s.doc.Signing {
		if k.State == StateActive {
			add(k.Alg)
		}
	}
	for _, k := range s.doc.Signing {
		add(k.Alg)
	}
	return out
}

// PublicKey returns the published public key with the given kid, or ErrNoKey.
func (m *Manager) PublicKey(kid string) (jose.JSONWebKey, error) {
	k, ok := m.snap.Load().publicKey[kid]
	if !ok {
		return jose.JSONWebKey{}, ErrNoKey
	}
	return k, nil
}
