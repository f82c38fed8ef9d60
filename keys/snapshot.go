package keys

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/go-jose/go-jose/v4"
)

// snapshot is an immutable view of a key document, ready to sign, publish and seal.
type snapshot struct {
	doc       Document
	signer    jose.Signer     // the active key, JOSE typ at+jwt
	active    jose.SigningKey // the active key, for signers of other typs
	typed     sync.Map        // typ → jose.Signer, made on first use by SignWithType
	activeKID string
	jwks      jose.JSONWebKeySet
	jwksJSON  []byte
	publicKey map[string]jose.JSONWebKey
	// ownHeaders maps the encoded protected header each published key writes on an access
	// token to that key (VerifyAccessToken's shortcut).
	ownHeaders map[string]headerKey
	sealer     jose.Encrypter
	sealKeys   map[string][]byte
}

func newSnapshot(doc Document) (*snapshot, error) {
	s := &snapshot{doc: doc, publicKey: map[string]jose.JSONWebKey{}, ownHeaders: map[string]headerKey{},
		sealKeys: map[string][]byte{}}
	s.jwks.Keys = []jose.JSONWebKey{}
	for _, k := range doc.Signing {
		var jwk jose.JSONWebKey
		if err := json.Unmarshal(k.Private, &jwk); err != nil {
			return nil, fmt.Errorf("decode key %s: %w", k.ID, err)
		}
		pub := jwk.Public()
		pub.KeyID, pub.Algorithm, pub.Use = k.ID, k.Alg, "sig"
		s.jwks.Keys = append(s.jwks.Keys, pub)
		s.publicKey[k.ID] = pub
		head, err := ownHeader(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Alg), Key: jwk.Key}, k.ID)
		if err != nil {
			return nil, fmt.Errorf("signer for key %s: %w", k.ID, err)
		}
		s.ownHeaders[head] = headerKey{alg: k.Alg, key: pub.Key}
		if k.State == StateActive {
			if s.signer != nil {
				return nil, fmt.Errorf("more than one active signing key (%s, %s)", s.activeKID, k.ID)
			}
			s.active = jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Alg), Key: jwk.Key}
			signer, err := newSigner(s.active, k.ID, "at+jwt")
			if err != nil {
				return nil, fmt.Errorf("signer for key %s: %w", k.ID, err)
			}
			s.signer, s.activeKID = signer, k.ID
		}
	}
	if s.signer == nil {
		return nil, fmt.Errorf("no active signing key")
	}
	raw, err := json.Marshal(s.jwks)
	if err != nil {
		return nil, fmt.Errorf("encode jwks: %w", err)
	}
	s.jwksJSON = raw
	for i, k := range doc.Seal {
		if len(k.Secret) != 32 {
			return nil, fmt.Errorf("seal key %s: want 32 bytes, have %d", k.ID, len(k.Secret))
		}
		s.sealKeys[k.ID] = k.Secret
		if i == len(doc.Seal)-1 { // the newest seal key seals
			enc, err := jose.NewEncrypter(jose.A256GCM,
				jose.Recipient{Algorithm: jose.DIRECT, Key: k.Secret, KeyID: k.ID},
				(&jose.EncrypterOptions{}).WithType("tokengate-rt+jwe"))
			if err != nil {
				return nil, fmt.Errorf("sealer for key %s: %w", k.ID, err)
			}
			s.sealer = enc
		}
	}
	if s.sealer == nil {
		return nil, fmt.Errorf("no seal key")
	}
	return s, nil
}

// newSigner makes a signer for key that puts kid and JOSE typ typ in the protected header.
func newSigner(key jose.SigningKey, kid, typ string) (jose.Signer, error) {
	return jose.NewSigner(key, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader(jose.HeaderKey("kid"), kid))
}
