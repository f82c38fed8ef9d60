package ssf

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tokengate/tokengate/internal/store"
)

// Protocol identifiers.
const (
	// EventSessionRevoked is the CAEP 1.0 session-revoked event type: the event of every logout.
	EventSessionRevoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	// EventSigningKeyRevoked is tokengate's own event type (neither CAEP nor RISC defines one):
	// a signing key was revoked in an emergency and left the JWKS; the subject is the kid
	// (opaque). Receivers refetch the JWKS at once instead of at its max-age.
	EventSigningKeyRevoked = "urn:tokengate:secevent:event-type:signing-key-revoked"
	// TypeSET is the JOSE typ of a Security Event Token (RFC 8417 §2.3, SSF 1.0 explicit typing).
	TypeSET = "secevent+jwt"
	// DeliveryPoll and DeliveryPush name the delivery methods (SSF 1.0 §6.1).
	DeliveryPoll = "urn:ietf:rfc:8936"
	DeliveryPush = "urn:ietf:rfc:8935"
	// SpecVersion is the SSF version implemented.
	SpecVersion = "1_0"
)

// SubjectID is an RFC 9493 subject identifier, with the SSF "complex" format whose members
// (session, user) are themselves subject identifiers.
type SubjectID struct {
	Format string `json:"format"`
	// ID is set for the opaque format.
	ID string `json:"id,omitempty"`
	// Iss and Sub are set for the iss_sub format.
	Iss string `json:"iss,omitempty"`
	Sub string `json:"sub,omitempty"`
	// Session and User are members of a complex subject.
	Session *SubjectID `json:"session,omitempty"`
	User    *SubjectID `json:"user,omitempty"`
}

// SET is the claim set of a tokengate Security Event Token (RFC 8417 profiled by SSF 1.0: no
// sub, no exp, one event, the subject in sub_id).
type SET struct {
	Issuer   string                    `json:"iss"`
	Audience string                    `json:"aud"`
	JTI      string                    `json:"jti"`
	IssuedAt int64                     `json:"iat"`
	TXN      string                    `json:"txn,omitempty"`
	SubID    SubjectID                 `json:"sub_id"`
	Events   map[string]SessionRevoked `json:"events"`
}

// SessionRevoked is the CAEP session-revoked event body; a signing-key-revoked event uses
// EventTimestamp alone.
type SessionRevoked struct {
	// EventTimestamp is when the session was revoked (seconds since the epoch). For a
	// subject-wide logout, every token of the user issued at or before this time is revoked.
	EventTimestamp   int64             `json:"event_timestamp"`
	InitiatingEntity string            `json:"initiating_entity,omitempty"`
	ReasonAdmin      map[string]string `json:"reason_admin,omitempty"`
}

// subjectOf names what a revocation revokes, as the receiver sees it in internal tokens: the
// Keycloak session id (the tokens' sid claim) as an opaque id, and the user as the pair
// (tokengate's issuer, sub) the tokens carry. A subject-wide logout names only the user.
func subjectOf(issuer string, r store.Revocation) SubjectID {
	var user *SubjectID
	if r.Sub != "" {
		user = &SubjectID{Format: "iss_sub", Iss: issuer, Sub: r.Sub}
	}
	if r.SID == "" {
		return *user
	}
	return SubjectID{Format: "complex", Session: &SubjectID{Format: "opaque", ID: r.SID}, User: user}
}

// initiator maps a revocation's Reason to CAEP's initiating_entity and an administrative reason.
func initiator(reason string) (entity, why string) {
	source, _, _ := strings.Cut(reason, ":")
	switch source {
	case "backchannel":
		return "system", "back-channel logout from the identity provider"
	case "recheck":
		return "system", "session found inactive at the identity provider"
	case "revoke":
		return "user", "refresh token revoked by the client at logout (RFC 7009)"
	case "admin":
		return "admin", "revoked by a tokengate operator"
	case "ssf":
		return "system", "signalled on the identity provider's Shared Signals stream"
	}
	return "", ""
}

// newSET builds the SET of event e for a stream.
func newSET(issuer string, st streamDef, e store.Event) SET {
	if e.KeyRevoked != "" {
		return SET{
			Issuer: issuer, Audience: st.Audience, JTI: jtiOf(st.ID, e), IssuedAt: e.Time.Unix(), TXN: e.ID,
			SubID:  SubjectID{Format: "opaque", ID: e.KeyRevoked},
			Events: map[string]SessionRevoked{EventSigningKeyRevoked: {EventTimestamp: e.Time.Unix(), InitiatingEntity: "admin"}},
		}
	}
	entity, why := initiator(e.Revocation.Reason)
	ev := SessionRevoked{EventTimestamp: e.Revocation.At.Unix(), InitiatingEntity: entity}
	if why != "" {
		ev.ReasonAdmin = map[string]string{"en": why}
	}
	return SET{
		Issuer: issuer, Audience: st.Audience, JTI: jtiOf(st.ID, e), IssuedAt: e.Time.Unix(), TXN: e.ID,
		SubID: subjectOf(issuer, e.Revocation), Events: map[string]SessionRevoked{EventSessionRevoked: ev},
	}
}

// jtiOf is the jti of event e on stream id: the event's Seq (so an acknowledgement names the
// event) and a digest of the event's random id and the stream, so the jti is unique across
// streams and across tokengate installations that reuse sequence numbers.
func jtiOf(stream string, e store.Event) string {
	h := sha256.Sum256([]byte(e.ID + "\x00" + stream))
	return strconv.FormatUint(e.Seq, 10) + "-" + base64.RawURLEncoding.EncodeToString(h[:12])
}

// seqOf returns the Seq a jti of ours names.
func seqOf(jti string) (uint64, bool) {
	n, rest, ok := strings.Cut(jti, "-")
	if !ok || len(rest) != 16 {
		return 0, false
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	return seq, err == nil && seq > 0
}

// sign encodes and signs a SET.
func sign(signer Signer, s SET) (string, error) {
	payload, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("ssf: encode SET: %w", err)
	}
	tok, _, err := signer.SignWithType(payload, TypeSET)
	if err != nil {
		return "", fmt.Errorf("ssf: sign SET: %w", err)
	}
	return tok, nil
}
