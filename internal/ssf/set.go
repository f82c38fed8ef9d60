package ssf

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// subjectOf names what a revocation revokes, as the receiver sees it in internal tokens: the
// Keycloak session id (the tokens' sid claim) as an opaque id, and the user as the pair
// (tokengate's issuer, sub) the tokens carry. A subject-wide logout names only the user.
func subjectOf(issuer string, r store.Revocation) *secevent.SubjectID {
	var user *secevent.SubjectID
	if r.Sub != "" {
		user = &secevent.SubjectID{Format: secevent.FormatIssSub, Iss: issuer, Sub: r.Sub}
	}
	if r.SID == "" {
		return user
	}
	return &secevent.SubjectID{Format: secevent.FormatComplex, Session: &secevent.SubjectID{Format: secevent.FormatOpaque, ID: r.SID}, User: user}
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

// newSET builds the SET of event e for a stream (RFC 8417 profiled by SSF 1.0: no sub, no
// exp, one event, the subject in sub_id).
func newSET(issuer string, st streamDef, e store.Event) secevent.SET {
	iat := e.Time.Unix()
	s := secevent.SET{Issuer: issuer, Audience: secevent.Audience{st.Audience}, JTI: jtiOf(st.ID, e), IssuedAt: &iat, TXN: e.ID}
	if e.KeyRevoked != "" {
		s.SubID = &secevent.SubjectID{Format: secevent.FormatOpaque, ID: e.KeyRevoked}
		s.Events = map[string]json.RawMessage{secevent.EventSigningKeyRevoked: secevent.EventBody(secevent.Event{EventTimestamp: &iat, InitiatingEntity: "admin"})}
		return s
	}
	entity, why := initiator(e.Revocation.Reason)
	at := e.Revocation.At.Unix()
	ev := secevent.Event{EventTimestamp: &at, InitiatingEntity: entity}
	if why != "" {
		ev.ReasonAdmin = map[string]string{"en": why}
	}
	s.SubID = subjectOf(issuer, e.Revocation)
	s.Events = map[string]json.RawMessage{secevent.EventSessionRevoked: secevent.EventBody(ev)}
	return s
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
func sign(signer Signer, s secevent.SET) (string, error) {
	payload, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("ssf: encode SET: %w", err)
	}
	tok, _, err := signer.SignWithType(payload, secevent.TypeSET)
	if err != nil {
		return "", fmt.Errorf("ssf: sign SET: %w", err)
	}
	return tok, nil
}
