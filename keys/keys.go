// Package keys owns tokengate's key material: the signing keys published in the JWKS and the
// symmetric keys that seal refresh tokens, their states, and their persistence in the store.
//
// This package is tokengate's own, not an API for other modules: its exported names may change
// without notice. Its Store contract reports a missing key document as internal/store's
// ErrNotFound, which no other module can return; services fetch tokengate's JWKS or import
// verifier.
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

	"github.com/tokengate/tokengate/internal/store"
)

// Store is the part of the store the key manager needs: one key document, updated atomically,
// and for an emergency revocation updated in the same transaction that appends the key event
// to the revocation event log.
type Store interface {
	Keys(ctx context.Context) ([]byte, error)
	UpdateKeys(ctx context.Context, update func(current []byte) ([]byte, error)) error
	RecordKeyRevocation(ctx context.Context, e store.Event, update func(current []byte) ([]byte, error)) (store.Event, error)
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

// SigningKey is a signing key and where it is in its lifecycle.
type SigningKey struct {
	ID    string `json:"kid"`
	Alg   string `json:"alg"`
	State State  `json:"state"`
	// Private is the private JWK (plaintext in memory; encrypted at rest when a KEK is set).
	Private   json.RawMessage `json:"private,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	// ActivatedAt is when the key started signing (zero while next).
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	// RetiredAt is when the key stopped signing (zero unless retired).
	RetiredAt time.Time `json:"retired_at,omitzero"`
}

// SealKey is a symmetric key for sealing refresh tokens (A256GCM, dir).
type SealKey struct {
	ID        string    `json:"kid"`
	Secret    []byte    `json:"secret,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// RevokedKey records an emergency revocation.
type RevokedKey struct {
	ID        string    `json:"kid"`
	RevokedAt time.Time `json:"revoked_at"`
}

// Document is the whole key state, persisted in the store as one JSON document.
type Document struct {
	Version int          `json:"version"`
	Signing []SigningKey `json:"signing"`
	Seal    []SealKey    `json:"seal"`
	Revoked []RevokedKey `json:"revoked,omitempty"`
}

// Config sets how keys are made and rotated.
type Config struct {
	// Algorithm is the signing algorithm for new keys (ES256 default).
	Algorithm string
	// RotateEvery is how long a key signs before the next one takes over (24h default).
	RotateEvery time.Duration
	// PublishLead is how long a next key is published before it may sign: at least the JWKS
	// Cache-Control max-age, so every cache has it first (5m default).
	PublishLead time.Duration
	// TokenLifetime is the longest life of a token signed by a key: a retired key stays
	// published TokenLifetime + PublishLead after it stopped signing (5m default).
	TokenLifetime time.Duration
	// SealRetention is how long a replaced seal key still opens refresh tokens: the longest
	// life of a refresh token (1h default).
	SealRetention time.Duration
	// KEK, when set (32 bytes), encrypts private keys at rest.
	KEK []byte
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.Algorithm == "" {
		c.Algorithm = ES256
	}
	if !validAlg(c.Algorithm) {
		return fmt.Errorf("keys: unsupported algorithm %q (want one of %v)", c.Algorithm, SupportedAlgorithms)
	}
	if c.RotateEvery == 0 {
		c.RotateEvery = 24 * time.Hour
	}
	if c.PublishLead == 0 {
		c.PublishLead = 5 * time.Minute
	}
	if c.TokenLifetime == 0 {
		c.TokenLifetime = 5 * time.Minute
	}
	if c.SealRetention == 0 {
		c.SealRetention = time.Hour
	}
	if c.KEK != nil && len(c.KEK) != 32 {
		return fmt.Errorf("keys: the key-encryption key must be 32 bytes, not %d", len(c.KEK))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Manager serves signing, JWKS and sealing from an in-memory snapshot of the key document, and
// changes the document (rotation, revocation) in single store transactions, so several
// processes sharing a store never disagree. It is safe for concurrent use.
type Manager struct {
	store Store
	cfg   Config
	snap  atomic.Pointer[snapshot]
}

// Open loads the key document from the store, creating an active signing key, a next key and a
// seal key on first start, and returns a manager serving it. A wrong KEK is an error.
func Open(ctx context.Context, s Store, cfg Config) (*Manager, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m := &Manager{store: s, cfg: cfg}
	raw, err := s.Keys(ctx)
	switch {
	case err == nil:
		doc, err := m.decode(raw)
		if err != nil {
			return nil, err
		}
		if doc.active() != nil && len(doc.Seal) > 0 && doc.next() != nil && m.atRestMatches(raw) {
			return m, m.install(doc)
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("keys: load: %w", err)
	}
	// First start, or the document needs completing (or encrypting under a new KEK).
	if err := m.update(ctx, func(doc *Document, now time.Time) (bool, error) {
		return true, m.complete(doc, now)
	}); err != nil {
		return nil, err
	}
	return m, nil
}

// complete makes sure doc has an active key, a next key and a seal key.
func (m *Manager) complete(doc *Document, now time.Time) error {
	if doc.active() == nil {
		k, err := NewSigningKey(m.cfg.Algorithm, now)
		if err != nil {
			return err
		}
		k.State, k.ActivatedAt = StateActive, now
		doc.Signing = append(doc.Signing, k)
	}
	if doc.next() == nil {
		k, err := NewSigningKey(m.cfg.Algorithm, now)
		if err != nil {
			return err
		}
		doc.Signing = append(doc.Signing, k)
	}
	if len(doc.Seal) == 0 {
		sk, err := NewSealKey(now)
		if err != nil {
			return err
		}
		doc.Seal = append(doc.Seal, sk)
	}
	return nil
}

// update runs change on the stored document inside one store transaction and installs the
// result. change reports whether it changed anything; if not, nothing is written.
func (m *Manager) update(ctx context.Context, change func(doc *Document, now time.Time) (bool, error)) error {
	return m.write(ctx, change, nil)
}

// write is update; with e (a key event) it also appends *e to the event log in the same
// transaction, written even when change changed nothing, and sets its Seq.
func (m *Manager) write(ctx context.Context, change func(doc *Document, now time.Time) (bool, error), e *store.Event) error {
	var out Document
	fn := func(current []byte) ([]byte, error) {
		var doc Document
		if current != nil {
			d, err := m.decode(current)
			if err != nil {
				return nil, err
			}
			doc = d
		}
		changed, err := change(&doc, m.cfg.Now().UTC())
		if err != nil {
			return nil, err
		}
		out = doc
		if !changed && current != nil {
			return current, nil
		}
		out.Version++
		return m.encode(out)
	}
	var err error
	if e == nil {
		err = m.store.UpdateKeys(ctx, fn)
	} else {
		*e, err = m.store.RecordKeyRevocation(ctx, *e, fn)
	}
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	return m.install(out)
}

// Reload re-reads the key document from the store (after a change by another process). A
// document older than the one served (a write of this process answered meanwhile) is ignored.
func (m *Manager) Reload(ctx context.Context) error {
	raw, err := m.store.Keys(ctx)
	if err != nil {
		return fmt.Errorf("keys: reload: %w", err)
	}
	doc, err := m.decode(raw)
	if err != nil {
		return err
	}
	return m.install(doc)
}

// Document returns a copy of the key document currently served (private material included;
// callers must never log it).
func (m *Manager) Document() Document {
	d := m.snap.Load().doc
	d.Signing = append([]SigningKey(nil), d.Signing...)
	d.Seal = append([]SealKey(nil), d.Seal...)
	d.Revoked = append([]RevokedKey(nil), d.Revoked...)
	return d
}

// Loaded reports whether an active signing key is loaded.
func (m *Manager) Loaded() bool {
	s := m.snap.Load()
	return s != nil && s.signer != nil
}

// install serves doc unless a newer document (a higher Version) is already served: writes and
// reloads of one process may answer out of order, and an older document put back would sign
// with a retired (or revoked) key and publish a JWKS without the newest next key.
func (m *Manager) install(doc Document) error {
	if cur := m.snap.Load(); cur != nil && cur.doc.Version > doc.Version {
		return nil // older: not worth decoding its keys
	}
	s, err := newSnapshot(doc)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	for {
		cur := m.snap.Load()
		if cur != nil && cur.doc.Version > doc.Version {
			return nil
		}
		if m.snap.CompareAndSwap(cur, s) {
			return nil
		}
	}
}

func (d *Document) find(state State) *SigningKey {
	for i := range d.Signing {
		if d.Signing[i].State == state {
			return &d.Signing[i]
		}
	}
	return nil
}

func (d *Document) active() *SigningKey { return d.find(StateActive) }
func (d *Document) next() *SigningKey   { return d.find(StateNext) }

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
