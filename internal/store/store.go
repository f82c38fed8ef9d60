// Package store defines the durable state tokengate keeps and the contract every backend meets.
//
// Backends live in sub-packages (store/bolt, store/etcd) and must pass the conformance suite in
// store/storetest. Consumers (issuer, keys) declare the narrower interfaces they need.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a record does not exist (or has expired).
var ErrNotFound = errors.New("store: not found")

// ErrUnavailable wraps failures where the backend cannot answer (closed, unreachable, stale).
// Callers must fail closed on it.
var ErrUnavailable = errors.New("store: unavailable")

// Revocation is a recorded logout: of one Keycloak session (SID set) or of every session of a
// subject issued before At (SID empty).
type Revocation struct {
	// SID is the Keycloak session id; empty for a subject-wide revocation.
	SID string `json:"sid,omitempty"`
	// Sub is the subject; always set for subject-wide revocations, optional for session ones.
	Sub string `json:"sub,omitempty"`
	// At is when the logout happened. For subject-wide revocations, tokens whose upstream
	// authentication was issued at or before At are refused.
	At time.Time `json:"at"`
	// Expires is when the record may be forgotten: no token it could stop is still alive.
	Expires time.Time `json:"expires"`
	// Reason says where the logout came from: backchannel, recheck, revoke, admin.
	Reason string `json:"reason,omitempty"`
}

// Store is the contract every backend implements. All writes are durable (committed and synced)
// when the call returns nil. Lookups never scan.
//
// A revocation is written only through the event log, with its event in one transaction:
// EventLog.RecordRevocation, or RecordNewRevocation (which may also claim the jti of the
// Security Event Token or back-channel logout token that carried it: a jti is claimed only
// there, with its logout). A session revocation keyed by SID keeps the earliest
// At and the latest Expires when recorded again; a subject-wide one keyed by Sub keeps the
// latest At and the latest Expires.
type Store interface {
	// SessionRevocation returns the session logout for sid, or ErrNotFound.
	SessionRevocation(ctx context.Context, sid string) (Revocation, error)
	// SubjectRevocation returns the subject-wide logout for sub, or ErrNotFound.
	SubjectRevocation(ctx context.Context, sub string) (Revocation, error)
	// Keys returns the key document written by UpdateKeys, or ErrNotFound if none.
	Keys(ctx context.Context) ([]byte, error)
	// UpdateKeys reads the key document (nil when none) and writes what update returns, in one
	// atomic transaction. If update returns an error nothing is written and the error is
	// returned (wrapped). Concurrent callers are serialised.
	UpdateKeys(ctx context.Context, update func(current []byte) ([]byte, error)) error
	// GC removes revocations and jti claims whose Expires is before now and reports how many.
	GC(ctx context.Context, now time.Time) (int, error)
	// Stats reports record counts, for health and metrics.
	Stats(ctx context.Context) (Stats, error)
	// Close releases the backend. Calls after Close return an error wrapping ErrUnavailable.
	Close() error

	// EventLog is the durable, ordered log of revocation events and the stream documents.
	EventLog
	// ReceiverState keeps the stream tokengate follows at Keycloak (Shared Signals receiver).
	ReceiverState
}

// Stats counts the records a store holds.
type Stats struct {
	Sessions int `json:"sessions"`
	Subjects int `json:"subjects"`
	JTIs     int `json:"jtis"`
}
