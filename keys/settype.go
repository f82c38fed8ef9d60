package keys

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/go-jose/go-jose/v4"
)

// typedSigner is a signer for the active key of one snapshot with one JOSE typ.
type typedSigner struct {
	snap   *snapshot
	signer jose.Signer
}

// typedSigners caches, per manager and typ, the signer of the latest snapshot seen.
var typedSigners sync.Map // typedKey → *typedSigner

type typedKey struct {
	m   *Manager
	typ string
}

// SignWithType signs payload with the active key, like Sign, but with the given JOSE header
// typ (for example "secevent+jwt" for Security Event Tokens, RFC 8417 §2.3). The same JWKS
// verifies both kinds of token; the typ keeps them apart.
func (m *Manager) SignWithType(payload []byte, typ string) (token, kid string, err error) {
	if typ == "" {
		return "", "", fmt.Errorf("keys: sign: empty typ")
	}
	s := m.snap.Load()
	signer, err := m.signerFor(s, typ)
	if err != nil {
		return "", "", err
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", "", fmt.Errorf("keys: sign: %w", err)
	}
	token, err = obj.CompactSerialize()
	if err != nil {
		return "", "", fmt.Errorf("keys: serialize: %w", err)
	}
	return token, s.activeKID, nil
}

func (m *Manager) signerFor(s *snapshot, typ string) (jose.Signer, error) {
	k := typedKey{m, typ}
	if v, ok := typedSigners.Load(k); ok && v.(*typedSigner).snap == s {
		return v.(*typedSigner).signer, nil
	}
	for _, key := range s.doc.Signing {
		if key.ID != s.activeKID {
			continue
		}
		var jwk jose.JSONWebKey
		if err := json.Unmarshal(key.Private, &jwk); err != nil {
			return nil, fmt.Errorf("keys: decode key %s: %w", key.ID, err)
		}
		opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader(jose.HeaderKey("kid"), key.ID)
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Alg), Key: jwk.Key}, opts)
		if err != nil {
			return nil, fmt.Errorf("keys: signer for key %s: %w", key.ID, err)
		}
		typedSigners.Store(k, &typedSigner{snap: s, signer: signer})
		return signer, nil
	}
	return nil, fmt.Errorf("keys: sign: no active key")
}
