package store

import (
	"context"
	"errors"
	"time"
)

// Event is one entry of the revocation event log: a recorded logout, or the emergency
// revocation of a signing key, numbered in the order the store committed it. The Shared Signals transmitter (package ssf) turns each event into one
// Security Event Token per stream.
type Event struct {
	// Seq is assigned by the store: strictly increasing in commit order, starting at 1, never
	// reused (not after TrimEvents, not after a restart).
	Seq uint64 `json:"seq"`
	// ID is unique to the event (random, chosen by the caller); it becomes the txn claim of the
	// SETs made from it.
	ID string `json:"id"`
	// Time is when the event was recorded.
	Time time.Time `json:"time"`
	// Revocation is the logout as it was recorded (not merged with earlier ones); zero for a
	// key event.
	Revocation Revocation `json:"revocation"`
	// KeyRevoked, when set, is the kid of a signing key revoked in an emergency: receivers
	// refetch the JWKS at once instead of at its max-age. Revocation is then zero.
	KeyRevoked string `json:"key_revoked,omitempty"`
}

// Check reports why e cannot be recorded: it has no ID, it is a key event that carries a
// revocation, or a logout that names neither sid nor sub. Every backend calls it before
// writing.
func (e Event) Check() error {
	switch {
	case e.ID == "":
		return errors.New("empty event id")
	case e.KeyRevoked != "" && e.Revocation != (Revocation{}):
		return errors.New("a key event carries no revocation")
	case e.KeyRevoked == "" && e.Revocation.SID == "" && e.Revocation.Sub == "":
		return errors.New("neither sid nor sub")
	}
	return nil
}

// EventLog is the durable, ordered log of revocation events and the state of the streams that
// deliver them, part of every Store: a restarted tokengate, or a receiver that reconnects,
// misses no event. storetest.Run and storetest.RunDurable check it.
type EventLog interface {
	// RecordRevocation records e.Revocation exactly as RevokeSession (SID set) or RevokeSubject
	// (SID empty) would, and appends e to the log, in one atomic, durable transaction: either
	// both are stored or neither is. A key event (KeyRevoked set, Revocation zero) is only
	// appended. It returns e with Seq set.
	RecordRevocation(ctx context.Context, e Event) (Event, error)
	// RecordNewRevocation is RecordRevocation unless a stored revocation already covers
	// e.Revocation (see Covers): then it writes nothing and reports false. The check and the
	// write are one transaction, so a logout that reaches tokengate by two channels at once
	// (back-channel logout and Keycloak's Shared Signals stream) gets one event.
	RecordNewRevocation(ctx context.Context, e Event) (Event, bool, error)
	// Events returns up to limit events with Seq > after, in Seq order.
	Events(ctx context.Context, after uint64, limit int) ([]Event, error)
	// LastEventSeq returns the Seq of the newest event ever appended, even if it has been
	// trimmed since; 0 when none was.
	LastEventSeq(ctx context.Context) (uint64, error)
	// TrimEvents removes events whose Time is before t and reports how many. It may leave an
	// expired event that follows a newer one (times are not strictly ordered by Seq).
	TrimEvents(ctx context.Context, before time.Time) (int, error)

	// Streams returns every stored stream document by stream id.
	Streams(ctx context.Context) (map[string][]byte, error)
	// PutStreams stores the given stream documents (replacing any with the same id) in one
	// atomic transaction.
	PutStreams(ctx context.Context, docs map[string][]byte) error
	// UpdateStreams replaces the given documents of streams that are stored, in one atomic
	// transaction, and skips the ids that are not: a stream deleted meanwhile (by another
	// process sharing the store) stays deleted. It returns the ids it skipped.
	UpdateStreams(ctx context.Context, docs map[string][]byte) (skipped []string, err error)
	// DeleteStream removes a stream document; deleting an unknown id is not an error.
	DeleteStream(ctx context.Context, id string) error
}

// ReceiverState is the durable state of tokengate's own Shared Signals receiver: one
// opaque document describing the stream tokengate polls at Keycloak (its id, audience, poll
// URL), kept so that a restarted tokengate — or the next elected replica — reuses the stream
// instead of losing the events waiting in it.
type ReceiverState interface {
	// ReceiverStream returns the document last stored by PutReceiverStream, or ErrNotFound.
	ReceiverStream(ctx context.Context) ([]byte, error)
	// PutReceiverStream durably replaces the document; nil or empty deletes it.
	PutReceiverStream(ctx context.Context, doc []byte) error
}
