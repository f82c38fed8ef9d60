package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"

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
//
// A token whose protected header is byte for byte the one a published key's signer writes
// (ownHeader) has nothing left to check but its signature, with that key and its algorithm:
// no JOSE parsing. Any other token goes through go-jose's full parse and the checks above.
func (m *Manager) VerifyAccessToken(token string) ([]byte, error) {
	s := m.snap.Load()
	if payload, done, err := s.verifyOwnHeader(token); done {
		return payload, err
	}
	return s.verifyParsed(token)
}

// verifyParsed is VerifyAccessToken through go-jose's full parse: every token the shortcut
// does not take, and the reference FuzzVerifyOwnHeader holds the shortcut to.
func (s *snapshot) verifyParsed(token string) ([]byte, error) {
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

// headerKey is a published key, found by the protected header its access tokens carry.
type headerKey struct {
	alg string
	key crypto.PublicKey
}

// ownHeader returns the encoded protected header key's signer writes on an access token
// ({"alg","kid","typ":"at+jwt"}), read from a signature of an empty payload.
func ownHeader(key jose.SigningKey, kid string) (string, error) {
	signer, err := newSigner(key, kid, "at+jwt")
	if err != nil {
		return "", err
	}
	tok, err := compact(signer, nil)
	if err != nil {
		return "", err
	}
	head, _, _ := strings.Cut(tok, ".")
	return head, nil
}

// verifyOwnHeader verifies token when its protected header is one of s's published keys'
// own (done), so that alg, kid and typ are already known good: the signature over the token's
// signing input, with that key and its algorithm, decides. done is false, and the token left
// to the full parse, for any other header or a token that is not three base64url parts.
func (s *snapshot) verifyOwnHeader(token string) (payload []byte, done bool, err error) {
	head, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, false, nil
	}
	k, ok := s.ownHeaders[head]
	if !ok {
		return nil, false, nil
	}
	body, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(sig, '.') >= 0 {
		return nil, false, nil
	}
	payload, err = base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return nil, false, nil
	}
	signature, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return nil, false, nil
	}
	if !k.verify(token[:len(head)+1+len(body)], signature) {
		return nil, true, fmt.Errorf("keys: verify: %w", jose.ErrCryptoFailure)
	}
	return payload, true, nil
}

// verify checks signature over input (a JWS signing input) as go-jose does for k's algorithm
// (RFC 7518 §3.3, §3.4; RFC 8037 §3.1).
func (k headerKey) verify(input string, signature []byte) bool {
	switch pub := k.key.(type) {
	case *ecdsa.PublicKey:
		const size = 32
		if k.alg != ES256 || pub.Curve != elliptic.P256() || len(signature) != 2*size {
			return false
		}
		h := sha256.New()
		_, _ = io.WriteString(h, input)
		r, s := new(big.Int).SetBytes(signature[:size]), new(big.Int).SetBytes(signature[size:])
		return ecdsa.Verify(pub, h.Sum(nil), r, s)
	case ed25519.PublicKey:
		return k.alg == EdDSA && ed25519.Verify(pub, []byte(input), signature)
	case *rsa.PublicKey:
		if k.alg != RS256 {
			return false
		}
		h := sha256.New()
		_, _ = io.WriteString(h, input)
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, h.Sum(nil), signature) == nil
	}
	return false
}
