package keys

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// ErrWrongKEK means the key document was encrypted under another key-encryption key (or none).
var ErrWrongKEK = errors.New("keys: the key-encryption key does not open the stored keys")

// stored is the persisted form: private material either plaintext (no KEK) or one JWE.
type stored struct {
	Version int          `json:"version"`
	Public  []publicMeta `json:"keys,omitempty"`
	// Sealed is a compact JWE (dir, A256GCM, under the KEK) of the whole Document.
	Sealed string `json:"sealed,omitempty"`
	// Plain is the Document when no KEK is configured.
	Plain *Document `json:"plain,omitempty"`
}

// publicMeta lets an operator see which keys a document holds without the KEK.
type publicMeta struct {
	ID    string `json:"kid"`
	State State  `json:"state"`
}

func (m *Manager) encode(doc Document) ([]byte, error) {
	st := stored{Version: doc.Version}
	for _, k := range doc.Signing {
		st.Public = append(st.Public, publicMeta{ID: k.ID, State: k.State})
	}
	if m.cfg.KEK == nil {
		st.Plain = &doc
		return json.Marshal(st)
	}
	plain, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode key document: %w", err)
	}
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.DIRECT, Key: m.cfg.KEK},
		(&jose.EncrypterOptions{}).WithContentType("tokengate-keys+json"))
	if err != nil {
		return nil, fmt.Errorf("key document encrypter: %w", err)
	}
	obj, err := enc.Encrypt(plain)
	if err != nil {
		return nil, fmt.Errorf("encrypt key document: %w", err)
	}
	if st.Sealed, err = obj.CompactSerialize(); err != nil {
		return nil, fmt.Errorf("encrypt key document: %w", err)
	}
	return json.Marshal(st)
}

func (m *Manager) decode(raw []byte) (Document, error) {
	var st stored
	if err := json.Unmarshal(raw, &st); err != nil {
		return Document{}, fmt.Errorf("keys: decode key document: %w", err)
	}
	switch {
	case st.Plain != nil:
		return *st.Plain, nil
	case st.Sealed == "":
		return Document{}, errors.New("keys: the stored key document is empty")
	case m.cfg.KEK == nil:
		return Document{}, fmt.Errorf("%w: they are encrypted and no KEK is configured (keys.kek_file)", ErrWrongKEK)
	}
	obj, err := jose.ParseEncryptedCompact(st.Sealed, []jose.KeyAlgorithm{jose.DIRECT}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return Document{}, fmt.Errorf("keys: decode key document: %w", err)
	}
	plain, err := obj.Decrypt(m.cfg.KEK)
	if err != nil {
		return Document{}, ErrWrongKEK
	}
	var doc Document
	if err := json.Unmarshal(plain, &doc); err != nil {
		return Document{}, fmt.Errorf("keys: decode key document: %w", err)
	}
	return doc, nil
}

// atRestMatches reports whether raw is stored the way the configuration asks (encrypted iff a
// KEK is set), so Open can re-encode a document when a KEK is added.
func (m *Manager) atRestMatches(raw []byte) bool {
	var st stored
	if err := json.Unmarshal(raw, &st); err != nil {
		return false
	}
	return (st.Plain != nil) == (m.cfg.KEK == nil)
}
