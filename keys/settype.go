package keys

import (
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// SignWithType signs payload with the active key, like Sign, but with the given JOSE header
// typ (for example "secevent+jwt" for Security Event Tokens, RFC 8417 §2.3). The same JWKS
// verifies both kinds of token; the typ keeps them apart.
func (m *Manager) SignWithType(payload []byte, typ string) (token, kid string, err error) {
	if typ == "" {
		return "", "", fmt.Errorf("keys: sign: empty typ")
	}
	s := m.snap.Load()
	signer, err := s.signerFor(typ)
	if err != nil {
		return "", "", err
	}
	if token, err = compact(signer, payload); err != nil {
		return "", "", err
	}
	return token, s.activeKID, nil
}

// signerFor returns the snapshot's signer for JOSE typ typ, making it on first use.
func (s *snapshot) signerFor(typ string) (jose.Signer, error) {
	if v, ok := s.typed.Load(typ); ok {
		return v.(jose.Signer), nil
	}
	signer, err := newSigner(s.active, s.activeKID, typ)
	if err != nil {
		return nil, fmt.Errorf("keys: signer for key %s: %w", s.activeKID, err)
	}
	v, _ := s.typed.LoadOrStore(typ, signer)
	return v.(jose.Signer), nil
}
