package keys

import (
	"errors"
	"fmt"
	"slices"

	"github.com/go-jose/go-jose/v4"
)

// KeyError names the key a token was signed with when that key cannot verify it: unknown (a
// token of another issuer, or one whose key has left the JWKS) or revoked (RevokeKey).
type KeyError struct {
	KID     string
	Revoked bool
}

func (e *KeyError) Error() string {
	if e.Revoked {
		return fmt.Sprintf("keys: key %q was revoked", e.KID)
	}
	return fmt.Sprintf("keys: key %q is not published", e.KID)
}

// Unwrap makes a KeyError an ErrNoKey.
func (e *KeyError) Unwrap() error { return ErrNoKey }

// KeyRevoked reports whether the key was revoked (callers that may not import keys test
// for it with an interface).
func (e *KeyError) KeyRevoked() bool { return e.Revoked }

// ErrNotAccessToken is returned for a JWS whose JOSE typ is not at+jwt: a Security Event
// Token tokengate signed with the same keys is not an access token.
var ErrNotAccessToken = errors.New("keys: not an access token (JOSE typ is not at+jwt)")

// VerifyAccessToken checks token, a compact JWS, against the published signing keys (next,
// active, retired; never a revoked one): one signature, a kid naming a published key, that
// key's algorithm, JOSE typ at+jwt. It returns the verified payload; the claims are the
// caller's to check. It costs one signature verification and calls nothing outside the
// process.
func (m *Manager) VerifyAccessToken(token string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("keys: verify: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("keys: verify: want exactly one signature")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "at+jwt" {
		return nil, ErrNotAccessToken
	}
	s := m.snap.Load()
	pub, ok := s.publicKey[h.KeyID]
	if !ok {
		revoked := slices.ContainsFunc(s.doc.Revoked, func(r RevokedKey) bool { return r.ID == h.KeyID })
		return nil, &KeyError{KID: h.KeyID, Revoked: revoked}
	}
	if h.Algorithm != pub.Algorithm {
		return nil, fmt.Errorf("keys: verify: alg %q is not key %q's (%s)", h.Algorithm, h.KeyID, pub.Algorithm)
	}
	payload, err := jws.Verify(pub.Key)
	if err != nil {
		return nil, fmt.Errorf("keys: verify: %w", err)
	}
	return payload, nil
}
