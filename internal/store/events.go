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
	// Claim, when its JTI is set, is claimed by RecordNewRevocation in the same transaction
	// that records the revocation. It is part of the write, not of the log: Events returns it
	// empty.
	Claim Claim `json:"-"`
}

// Claim is a one-time identifier — the jti of the Security Event Token or of the back-channel
// logout token that carried a logout — claimed until Expires, together with the revocation it
// carried (RecordNewRevocation): a claimed jti always has its logout on record.
type Claim struct {
	// JTI is the identifier claimed; empty: no claim.
	JTI string
	// Expires is when the claim may be forgotten (and the identifier claimed again).
	Expires time.Time
}

// Check reports why e cannot be recorded: it has no ID, it is a key event that carries a
// revocation or a claim, or a logout that names neither sid nor sub. Every backend calls it
// before writing.
func (e Event) Check() error {
	switch {
	case e.ID == "":
		return errors.New("empty event id")
	case e.KeyRevoked != "" && e.Revocation != (Revocation{}):
		return errors.New("a key event carries no revocation")
	case e.KeyRevoked != "" && e.Claim != (Claim{}):
		return errors.New("a key event claims no jti")
	case e.KeyRevoked == "" && e.Revocation.SID == "" && e.Revocation.Sub == "":
		return errors.New("neither sid nor sub")
	case e.Claim.JTI == "" && !e.Claim.Expires.IsZero():
		return errors.New("a claim without a jti")
	}
	return nil
}

// Outcome says what RecordNewRevocation wrote. It is zero when the call failed.
type Outcome uint8

const (
	// Recorded: the revocation and its event were written (and the claim, if any).
	Recorded Outcome = iota + 1
	// Covered: a stored revocation already covers the event's, so no revocation and no event
	// were written; the claim, if any, was (the logout came by another channel first).
	Covered
	// Replayed: the event's jti was claimed before and its claim has not expired; nothing at
	// all was written.
	Replayed
)

// String names o for logs, metrics and spans: recorded, covered, replayed (failed when zero).
func (o Outcome) String() string {
	switch o {
	case Recorded:
		return "recorded"
	case Covered:
		return "covered"
	case Replayed:
		return "replayed"
	}
	return "failed"
}

// ErrClaimNeedsNew is returned by RecordRevocation for an event that carries a Claim: only
// RecordNewRevocation claims.
var ErrClaimNeedsNew = errors.New("only RecordNewRevocation claims a jti")

// EventLog is the durable, ordered log of revocation events and the state of the streams that
// deliver them, part of every Store: a restarted tokengate, or a receiver that reconnects,
// misses no event. storetest.Run and storetest.RunDurable check it.
type EventLog interface {
	// RecordRevocation records e.Revocation and appends e to the log, in one atomic, durable
	// transaction: either both are stored or neither is. A session logout (SID set) is merged
	// into the stored one by MergeSession, a subject-wide one (SID empty) by MergeSubject. A
	// key event (KeyRevoked set, Revocation zero) is only appended. It returns e with Seq set.
	// An event with a Claim is refused with an error wrapping ErrClaimNeedsNew.
	RecordRevocation(ctx context.Context, e Event) (Event, error)
	// RecordNewRevocation is RecordRevocation (reporting Recorded) unless a stored revocation
	// already covers e.Revocation (see Covers): then it writes no revocation and no event and
	// reports Covered. The check and the write are one transaction, so a logout that reaches
	// tokengate by two channels at once (back-channel logout and Keycloak's Shared Signals
	// stream) gets one event.
	//
	// When e.Claim.JTI is set the same transaction claims it until e.Claim.Expires, whether or
	// not the revocation was covered; if the jti is already claimed and its claim has not
	// expired (by the clock, whether or not GC has run) nothing at all is written and it
	// reports Replayed. An expired claim is claimed again. This is the only way a jti is
	// claimed. A write that fails stores neither the claim nor the revocation.
	RecordNewRevocation(ctx context.Context, e Event) (Event, Outcome, error)
	// RecordKeyRevocation reads the key document (nil when none), writes what update returns
	// and appends the key event e (KeyRevoked set), in one atomic, durable transaction, and
	// returns e with Seq set: a revoked signing key is always announced, an announced one is
	// always revoked. If update returns an error nothing is written and the error is returned
	// (wrapped). Concurrent callers are serialised with UpdateKeys.
	RecordKeyRevocation(ctx context.Context, e Event, update func(current []byte) ([]byte, error)) (Event, error)
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
