// Package keys owns tokengate's key material: the signing keys published in the JWKS and the
// symmetric keys that seal refresh tokens, their states, and their persistence in the store.
package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Store is the part of the store the key manager needs: one key document, updated atomically.
type Store interface {
	Keys(ctx context.Context) ([]byte, error)
	UpdateKeys(ctx context.Context, update func(current []byte) ([]byte, error)) error
}

// State is where a signing key is in its lifecycle.
type State string

// Key states: a next key is published but does not sign, the active key signs, a retired key
// is still published so the tokens it signed keep verifying.
const (
	StateNext    State = "next"
	StateActive  State = "active"
	StateRetired State = "retired"
)

// Supported signing algorithms.
const (
	ES256 = string(jose.ES256)
	EdDSA = string(jose.EdDSA)
	RS256 = string(jose.RS256)
)

// SupportedAlgorithms lists the signing algorithms tokengate can use.
var SupportedAlgorithms = []string{ES256, EdDSA, RS256}

// SigningKey is a persisted signing key.
type SigningKey struct {
	ID        string          `json:"kid"`
	Alg       string          `json:"alg"`
	State     State           `json:"state"`
	Private   json.RawMessage `json:"private"` // private JWK
	CreatedAt time.Time       `json:"created_at"`
	// ActivatedAt is when the key started signing (zero while next).
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	// RetiredAt is when the key stopped signing (zero unless retired).
	RetiredAt time.Time `json:"retired_at,omitzero"`
}

// SealKey is a persisted symmetric key for sealing refresh tokens (A256GCM, dir).
type SealKey struct {
	ID        string    `json:"kid"`
	Secret    []byte    `json:"secret"`
	CreatedAt time.Time `json:"created_at"`
}

// Document is the key state persisted in the store as one JSON document.
type Document struct {
	Version int          `json:"version"`
	Signing []SigningKey `json:"signing"`
	Seal    []SealKey    `json:"seal"`
}

// Config sets how keys are made.
type Config struct {
	// Algorithm is the signing algorithm for new keys (ES256 default).
	Algorithm string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Manager serves signing, JWKS and sealing from an in-memory snapshot of the key document.
// It is safe for concurrent use.
type Manager struct {
	store Store
	cfg   Config
	snap  atomic.Pointer[snapshot]
}

// Open loads the key document from the store, creating an active signing key and a seal key on
// first start, and returns a manager serving it.
func Open(ctx context.Context, s Store, cfg Config) (*Manager, error) {
	if cfg.Algorithm == "" {
		cfg.Algorithm = ES256
	}
	if !validAlg(cfg.Algorithm) {
		return nil, fmt.Errorf("keys: unsupported algorithm %q (want one of %v)", cfg.Algorithm, SupportedAlgorithms)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Manager{store: s, cfg: cfg}
	var doc Document
	err := s.UpdateKeys(ctx, func(current []byte) ([]byte, error) {
		doc = Document{}
		if current != nil {
			if err := json.Unmarshal(current, &doc); err != nil {
				return nil, fmt.Errorf("decode key document: %w", err)
			}
		}
		changed := false
		if doc.active() == nil {
			k, err := NewSigningKey(cfg.Algorithm, cfg.Now())
			if err != nil {
				return nil, err
			}
			k.State, k.ActivatedAt = StateActive, k.CreatedAt
			doc.Signing = append(doc.Signing, k)
			changed = true
		}
		if len(doc.Seal) == 0 {
			sk, err := NewSealKey(cfg.Now())
			if err != nil {
				return nil, err
			}
			doc.Seal = append(doc.Seal, sk)
			changed = true
		}
		if !changed {
			return current, nil
		}
		doc.Version++
		return json.Marshal(doc)
	})
	if err != nil {
		return nil, fmt.Errorf("keys: load: %w", err)
	}
	if err := m.install(doc); err != nil {
		return nil, err
	}
	return m, nil
}

// Reload re-reads the key document from the store (after a change by another process).
func (m *Manager) Reload(ctx context.Context) error {
	raw, err := m.store.Keys(ctx)
	if err != nil {
		return fmt.Errorf("keys: reload: %w", err)
	}
	var doc Document
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("keys: reload: decode: %w", err)
	}
	return m.install(doc)
}

// Document returns a copy of the key document currently served (private material included;
// callers must never log it).
func (m *Manager) Document() Document {
	d := m.snap.Load().doc
	d.Signing = append([]SigningKey(nil), d.Signing...)
	d.Seal = append([]SealKey(nil), d.Seal...)
	return d
}

// Loaded reports whether an active signing key is loaded.
func (m *Manager) Loaded() bool {
	s := m.snap.Load()
	return s != nil && s.signer != nil
}

func (m *Manager) install(doc Document) error {
	s, err := newSnapshot(doc)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	m.snap.Store(s)
	return nil
}

func (d *Document) active() *SigningKey {
	for i := range d.Signing {
		if d.Signing[i].State == StateActive {
			return &d.Signing[i]
		}
	}
	return nil
}

func validAlg(alg string) bool {
	for _, a := range SupportedAlgorithms {
		if a == alg {
			return true
		}
	}
	return false
}

// NewSigningKey generates a key for alg, in state next, with its RFC 7638 thumbprint as kid.
func NewSigningKey(alg string, now time.Time) (SigningKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return SigningKey{}, fmt.Errorf("keys: unsupported algorithm %q", alg)
	}
	if err != nil {
		return SigningKey{}, fmt.Errorf("keys: generate %s key: %w", alg, err)
	}
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: alg, Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return SigningKey{}, fmt.Errorf("keys: thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	jwk := jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: alg, Use: "sig"}
	raw, err := jwk.MarshalJSON()
	if err != nil {
		return SigningKey{}, fmt.Errorf("keys: encode private key: %w", err)
	}
	return SigningKey{ID: kid, Alg: alg, State: StateNext, Private: raw, CreatedAt: now.UTC()}, nil
}

// NewSealKey generates a random 256-bit sealing key.
func NewSealKey(now time.Time) (SealKey, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return SealKey{}, fmt.Errorf("keys: seal key: %w", err)
	}
	id := make([]byte, 9)
	if _, err := rand.Read(id); err != nil {
		return SealKey{}, fmt.Errorf("keys: seal key id: %w", err)
	}
	return SealKey{ID: base64.RawURLEncoding.EncodeToString(id), Secret: secret, CreatedAt: now.UTC()}, nil
}

// ErrNoKey is returned when a token names a key that is not (or no longer) known.
var ErrNoKey = errors.New("keys: unknown key")
