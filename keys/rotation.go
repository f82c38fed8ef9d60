package keys

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/internal/store"
)

// ErrTooEarly is returned by Rotate when the next key has not been published for PublishLead:
// caches may not have it yet, so signing with it could fail verifications.
var ErrTooEarly = errors.New("keys: the next key has not been published long enough")

// Change says what a rotation or revocation did.
type Change struct {
	// Activated is the kid that now signs ("" when unchanged).
	Activated string `json:"activated,omitempty"`
	// Retired is the kid that stopped signing.
	Retired string `json:"retired,omitempty"`
	// Published is a new next key.
	Published string `json:"published,omitempty"`
	// Removed are kids taken out of the JWKS.
	Removed []string `json:"removed,omitempty"`
	// Event is the key event a revocation appended to the revocation event log, in the
	// transaction that changed the keys (Seq set); zero for a rotation.
	Event store.Event `json:"-"`
}

// Empty reports whether nothing changed.
func (c Change) Empty() bool {
	return c.Activated == "" && c.Retired == "" && c.Published == "" && len(c.Removed) == 0
}

// Tick does whatever the schedule asks now: publish a next key if there is none, promote it when
// the active key is RotateEvery old and the next key has been published PublishLead, remove
// retired keys once no token they signed can be alive nor cached JWKS lack their successor, and
// rotate seal keys. Nothing is written when nothing is due. Call it periodically.
func (m *Manager) Tick(ctx context.Context) (Change, error) {
	if !m.due(m.cfg.Now().UTC(), m.snap.Load().doc) {
		return Change{}, nil
	}
	var ch Change
	err := m.update(ctx, func(doc *Document, now time.Time) (bool, error) {
		ch = Change{}
		if !m.due(now, *doc) { // another process did it first
			return false, nil
		}
		if err := m.scheduled(doc, now, &ch); err != nil {
			return false, err
		}
		return true, nil
	})
	return ch, err
}

// due reports whether Tick has anything to do for doc at now.
func (m *Manager) due(now time.Time, doc Document) bool {
	a, n := doc.active(), doc.next()
	if a == nil || n == nil || len(doc.Seal) == 0 {
		return true
	}
	if !now.Before(a.ActivatedAt.Add(m.cfg.RotateEvery)) && !now.Before(n.CreatedAt.Add(m.cfg.PublishLead)) {
		return true
	}
	for _, k := range doc.Signing {
		if k.State == StateRetired && !now.Before(k.RetiredAt.Add(m.retention())) {
			return true
		}
	}
	newest := doc.Seal[len(doc.Seal)-1]
	if !now.Before(newest.CreatedAt.Add(m.cfg.RotateEvery)) {
		return true
	}
	return len(doc.Seal) > 1 && !now.Before(doc.Seal[1].CreatedAt.Add(m.cfg.SealRetention))
}

// retention is how long a retired key stays published.
func (m *Manager) retention() time.Duration { return m.cfg.TokenLifetime + m.cfg.PublishLead }

func (m *Manager) scheduled(doc *Document, now time.Time, ch *Change) error {
	if err := m.complete(doc, now); err != nil {
		return err
	}
	a, n := doc.active(), doc.next()
	if !now.Before(a.ActivatedAt.Add(m.cfg.RotateEvery)) && !now.Before(n.CreatedAt.Add(m.cfg.PublishLead)) {
		if err := m.promote(doc, now, ch); err != nil {
			return err
		}
	}
	kept := doc.Signing[:0]
	for _, k := range doc.Signing {
		if k.State == StateRetired && !now.Before(k.RetiredAt.Add(m.retention())) {
			ch.Removed = append(ch.Removed, k.ID)
			continue
		}
		kept = append(kept, k)
	}
	doc.Signing = kept
	if newest := doc.Seal[len(doc.Seal)-1]; !now.Before(newest.CreatedAt.Add(m.cfg.RotateEvery)) {
		sk, err := NewSealKey(now)
		if err != nil {
			return err
		}
		doc.Seal = append(doc.Seal, sk)
	}
	// A seal key may go once its successor has sealed for SealRetention: every refresh token
	// it sealed has expired by then.
	for len(doc.Seal) > 1 && !now.Before(doc.Seal[1].CreatedAt.Add(m.cfg.SealRetention)) {
		doc.Seal = doc.Seal[1:]
	}
	return nil
}

// promote makes the next key active, retires the active one and publishes a new next key.
func (m *Manager) promote(doc *Document, now time.Time, ch *Change) error {
	a, n := doc.active(), doc.next()
	a.State, a.RetiredAt = StateRetired, now
	n.State, n.ActivatedAt = StateActive, now
	ch.Retired, ch.Activated = a.ID, n.ID
	k, err := NewSigningKey(m.cfg.Algorithm, now)
	if err != nil {
		return err
	}
	doc.Signing = append(doc.Signing, k)
	ch.Published = k.ID
	return nil
}

// Rotate promotes the next key now, on demand. Unless force is set it refuses with ErrTooEarly
// when the next key has been published for less than PublishLead.
func (m *Manager) Rotate(ctx context.Context, force bool) (Change, error) {
	var ch Change
	err := m.update(ctx, func(doc *Document, now time.Time) (bool, error) {
		ch = Change{}
		if err := m.complete(doc, now); err != nil {
			return false, err
		}
		if n := doc.next(); !force && now.Before(n.CreatedAt.Add(m.cfg.PublishLead)) {
			return false, fmt.Errorf("%w: published %s ago, needs %s", ErrTooEarly,
				now.Sub(n.CreatedAt).Round(time.Second), m.cfg.PublishLead)
		}
		return true, m.promote(doc, now, &ch)
	})
	return ch, err
}

// RevokeKey removes a key from the JWKS at once (a suspected leak). Revoking the active key
// first promotes the next key, so signing never stops; a new next key is then published.
// Tokens signed by the revoked key fail at services once they refetch the JWKS.
//
// The key document and the key event that tells the services' streams (Change.Event) are one
// store transaction: a revoked key is always announced. Revoking a key revoked before changes
// no key and announces it again; an unknown kid is ErrNoKey and writes nothing.
func (m *Manager) RevokeKey(ctx context.Context, kid string) (Change, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return Change{}, fmt.Errorf("keys: event id: %w", err)
	}
	e := store.Event{ID: base64.RawURLEncoding.EncodeToString(id), Time: m.cfg.Now(), KeyRevoked: kid}
	var ch Change
	err := m.write(ctx, func(doc *Document, now time.Time) (bool, error) {
		ch = Change{}
		for _, r := range doc.Revoked {
			if r.ID == kid {
				return false, nil // revoked before: announced again
			}
		}
		idx := -1
		for i, k := range doc.Signing {
			if k.ID == kid {
				idx = i
			}
		}
		if idx < 0 {
			return false, fmt.Errorf("%w: %q", ErrNoKey, kid)
		}
		if doc.Signing[idx].State == StateActive {
			if err := m.promote(doc, now, &ch); err != nil {
				return false, err
			}
			ch.Retired = ""
		}
		doc.Signing = append(doc.Signing[:idx], doc.Signing[idx+1:]...)
		doc.Revoked = append(doc.Revoked, RevokedKey{ID: kid, RevokedAt: now})
		ch.Removed = append(ch.Removed, kid)
		if doc.next() == nil {
			k, err := NewSigningKey(m.cfg.Algorithm, now)
			if err != nil {
				return false, err
			}
			doc.Signing = append(doc.Signing, k)
			ch.Published = k.ID
		}
		return true, nil
	}, &e)
	if err == nil {
		ch.Event = e
	}
	return ch, err
}

// KeyInfo is the public view of a signing key, for operators.
type KeyInfo struct {
	ID          string    `json:"kid"`
	Alg         string    `json:"alg"`
	State       State     `json:"state"`
	CreatedAt   time.Time `json:"created_at"`
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	RetiredAt   time.Time `json:"retired_at,omitzero"`
	// SignsFrom is when a next key will start signing at the earliest.
	SignsFrom time.Time `json:"signs_from,omitzero"`
	// RemovedAt is when a retired key leaves the JWKS.
	RemovedAt time.Time `json:"removed_at,omitzero"`
}

// Keys lists the signing keys (public view) and the revoked kids.
func (m *Manager) Keys() ([]KeyInfo, []RevokedKey) {
	doc := m.snap.Load().doc
	out := make([]KeyInfo, 0, len(doc.Signing))
	var activeSince time.Time
	if a := doc.active(); a != nil {
		activeSince = a.ActivatedAt
	}
	for _, k := range doc.Signing {
		ki := KeyInfo{ID: k.ID, Alg: k.Alg, State: k.State, CreatedAt: k.CreatedAt, ActivatedAt: k.ActivatedAt, RetiredAt: k.RetiredAt}
		switch k.State {
		case StateNext:
			ki.SignsFrom = latest(k.CreatedAt.Add(m.cfg.PublishLead), activeSince.Add(m.cfg.RotateEvery))
		case StateRetired:
			ki.RemovedAt = k.RetiredAt.Add(m.retention())
		}
		out = append(out, ki)
	}
	return out, append([]RevokedKey(nil), doc.Revoked...)
}

// ActiveSince returns when the active key started signing.
func (m *Manager) ActiveSince() time.Time {
	doc := m.snap.Load().doc
	if a := doc.active(); a != nil {
		return a.ActivatedAt
	}
	return time.Time{}
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
