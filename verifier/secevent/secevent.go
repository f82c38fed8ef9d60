// Package secevent holds the Shared Signals wire shapes, once, for both ends of a stream:
// the claims of a Security Event Token (RFC 8417 as profiled by OpenID SSF 1.0), subject
// identifiers (RFC 9493), the event type URIs tokengate sends or reads (CAEP 1.0, RISC 1.0,
// SSF 1.0 and tokengate's own), the transmitter metadata and stream configuration (SSF 1.0
// §6–§8) and the poll exchange (RFC 8936).
//
// tokengate's transmitter and its Keycloak receiver, the verifier library and its fake
// (verifier/verifiertest) all use these types, so what one side writes is what the other reads.
// The package holds shapes and a few checks every side makes alike; it makes no HTTP calls and
// keeps no state. It imports the standard library only, so any module may import it.
package secevent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Event type URIs.
const (
	// EventSessionRevoked is the CAEP 1.0 session-revoked event (CAEP 1.0 §3.1): the event of
	// every logout tokengate transmits.
	EventSessionRevoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	// EventCredentialChange is the CAEP 1.0 credential-change event (CAEP 1.0 §3.3).
	EventCredentialChange = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
	// EventAccountDisabled is the RISC 1.0 account-disabled event (RISC 1.0 §2.3).
	EventAccountDisabled = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	// EventAccountPurged is the RISC 1.0 account-purged event (RISC 1.0 §2.2).
	EventAccountPurged = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
	// EventCredentialCompromise is the RISC 1.0 credential-compromise event (RISC 1.0 §2.7).
	EventCredentialCompromise = "https://schemas.openid.net/secevent/risc/event-type/credential-compromise"
	// EventVerification is the SSF 1.0 verification event (SSF 1.0 §8.1.4.1): it carries the
	// state the receiver asked for and revokes nothing.
	EventVerification = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	// EventStreamUpdated is the SSF 1.0 stream-updated event (SSF 1.0 §8.1.5): the stream's
	// status changed; it revokes nothing.
	EventStreamUpdated = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
	// EventSigningKeyRevoked is tokengate's own event type (neither CAEP nor RISC defines one):
	// a signing key was revoked in an emergency and left the JWKS; the subject is the kid in
	// the opaque format (RFC 9493 §3.2.4). Receivers refetch the JWKS at once instead of at
	// its max-age.
	EventSigningKeyRevoked = "urn:tokengate:secevent:event-type:signing-key-revoked"
)

// Protocol identifiers.
const (
	// TypeSET is the JOSE typ of a Security Event Token (RFC 8417 §2.3, SSF 1.0 §4.1.1
	// explicit typing).
	TypeSET = "secevent+jwt"
	// DeliveryPoll is the poll delivery method (RFC 8936; SSF 1.0 §6.1.1).
	DeliveryPoll = "urn:ietf:rfc:8936"
	// DeliveryPush is the push delivery method (RFC 8935; SSF 1.0 §6.1.1).
	DeliveryPush = "urn:ietf:rfc:8935"
	// SpecVersion is the SSF version implemented (SSF 1.0 §7.1 spec_version).
	SpecVersion = "1_0"
	// WellKnownPath is the well-known path of the transmitter metadata (SSF 1.0 §7.2).
	WellKnownPath = "/.well-known/ssf-configuration"
)

// Subject identifier formats (RFC 9493 §3.2, and SSF 1.0 §3.3's complex subject).
const (
	// FormatOpaque is an opaque id (RFC 9493 §3.2.4): tokengate's session ids and kids.
	FormatOpaque = "opaque"
	// FormatIssSub is an issuer and subject pair (RFC 9493 §3.2.5): a user.
	FormatIssSub = "iss_sub"
	// FormatComplex is SSF 1.0's complex subject (SSF 1.0 §3.3), whose members (session,
	// user) are themselves subject identifiers.
	FormatComplex = "complex"
)

// Error codes of the Security Event Token delivery error registry (RFC 8935 §2.3, used by
// RFC 8936 §2.4 setErrs).
const (
	// CodeInvalidRequest: the SET or the request is malformed (RFC 8935 §2.3).
	CodeInvalidRequest = "invalid_request"
	// CodeInvalidKey: the SET's signature does not verify with the issuer's keys (RFC 8935 §2.3).
	CodeInvalidKey = "invalid_key"
	// CodeInvalidIssuer: the SET's iss is not the expected one (RFC 8935 §2.3).
	CodeInvalidIssuer = "invalid_issuer"
	// CodeInvalidAudience: the SET's aud is not the receiver's (RFC 8935 §2.3).
	CodeInvalidAudience = "invalid_audience"
	// CodeAuthenticationFailed: the request's credential is not valid (RFC 8935 §2.3).
	CodeAuthenticationFailed = "authentication_failed"
	// CodeAccessDenied: the credential does not allow the request (RFC 8935 §2.3).
	CodeAccessDenied = "access_denied"
)

// SubjectID is a subject identifier (RFC 9493), or SSF 1.0's complex subject (SSF 1.0 §3.3)
// whose members are themselves subject identifiers.
type SubjectID struct {
	// Format is the identifier format (FormatOpaque, FormatIssSub, FormatComplex, ...).
	Format string `json:"format"`
	// ID is set for the opaque format (RFC 9493 §3.2.4).
	ID string `json:"id,omitempty"`
	// Iss and Sub are set for the iss_sub format (RFC 9493 §3.2.5).
	Iss string `json:"iss,omitempty"`
	Sub string `json:"sub,omitempty"`
	// Session and User are members of a complex subject (SSF 1.0 §3.3).
	Session *SubjectID `json:"session,omitempty"`
	User    *SubjectID `json:"user,omitempty"`
}

// Audience is a JWT aud claim (RFC 7519 §4.1.3): one string or an array of strings. It is
// written as one string when it holds one value.
type Audience []string

// UnmarshalJSON reads a string or an array of strings (RFC 7519 §4.1.3).
func (a *Audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = Audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("aud is neither a string nor an array of strings")
	}
	*a = many
	return nil
}

// MarshalJSON writes one value as a string, any other number of values as an array (RFC 7519
// §4.1.3).
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// Is reports whether the audience is exactly aud: one value, equal to aud (as a stream's SETs
// carry it, SSF 1.0 §8.1.1).
func (a Audience) Is(aud string) bool { return len(a) == 1 && a[0] == aud }

// Contains reports whether aud is one of the audience's values (RFC 7519 §4.1.3).
func (a Audience) Contains(aud string) bool {
	for _, x := range a {
		if x == aud {
			return true
		}
	}
	return false
}

// SET is the claim set of a Security Event Token (RFC 8417 §2.2) as SSF 1.0 §4.1 profiles
// it: the subject in sub_id, one event, and neither sub nor exp. Subject and Expiry are here
// so that a receiver can refuse a SET that carries them; a transmitter leaves them nil.
type SET struct {
	Issuer   string   `json:"iss"`
	Audience Audience `json:"aud"`
	JTI      string   `json:"jti"`
	// IssuedAt is iat (seconds since the epoch); nil when the claim is absent.
	IssuedAt *int64 `json:"iat,omitempty"`
	// TXN is the transaction id (RFC 8417 §2.2 txn).
	TXN   string     `json:"txn,omitempty"`
	SubID *SubjectID `json:"sub_id,omitempty"`
	// Events maps each event type URI to its body (RFC 8417 §2.2 events); each type has its
	// own members (Event holds those tokengate writes or reads).
	Events map[string]json.RawMessage `json:"events"`
	// Subject (sub) and Expiry (exp) must not be in a SET (SSF 1.0 §4.1.2, §4.1.4).
	Subject *string          `json:"sub,omitempty"`
	Expiry  *json.RawMessage `json:"exp,omitempty"`
}

// Event is the body of one event of a SET, with the members tokengate writes or reads:
// CAEP 1.0's common members (§2), SSF 1.0's verification state (§8.1.4.1) and stream status
// (§8.1.5), and the pre-SSF 1.0 placement of the subject.
type Event struct {
	// EventTimestamp is when the event happened, in whole seconds since the epoch (CAEP 1.0
	// §2 event_timestamp). For a subject-wide logout, every token of the user issued at or
	// before it is revoked.
	EventTimestamp *int64 `json:"event_timestamp,omitempty"`
	// InitiatingEntity is admin, user, policy or system (CAEP 1.0 §2).
	InitiatingEntity string `json:"initiating_entity,omitempty"`
	// ReasonAdmin is the reason for administrators, by language tag (CAEP 1.0 §2).
	ReasonAdmin map[string]string `json:"reason_admin,omitempty"`
	// State echoes the state of a verification request (SSF 1.0 §8.1.4.1).
	State string `json:"state,omitempty"`
	// Status is a stream's new status (SSF 1.0 §8.1.5).
	Status string `json:"status,omitempty"`
	// Subject is the pre-SSF 1.0 placement of the subject, inside the event.
	Subject *SubjectID `json:"subject,omitempty"`
}

// EventBody encodes an event body for SET.Events (RFC 8417 §2.2 events).
func EventBody(e Event) json.RawMessage {
	b, _ := json.Marshal(e) // strings, numbers and maps of strings: cannot fail
	return b
}

// Event decodes the body of event type uri (RFC 8417 §2.2 events); ok is false when the SET
// has no such event.
func (s *SET) Event(uri string) (e Event, ok bool, err error) {
	raw, ok := s.Events[uri]
	if !ok {
		return Event{}, false, nil
	}
	err = json.Unmarshal(raw, &e)
	return e, true, err
}

// IsSETType reports whether a JOSE typ header names a SET: secevent+jwt, in any case, with or
// without the application/ prefix (RFC 7515 §4.1.9, RFC 8417 §2.3).
func IsSETType(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == TypeSET || typ == "application/"+TypeSET
}

// AuthorizationScheme names how receivers authenticate (SSF 1.0 §7.1 authorization_schemes).
type AuthorizationScheme struct {
	SpecURN string `json:"spec_urn"`
}

// Metadata is the Transmitter Configuration Metadata (SSF 1.0 §7.1), served at WellKnownPath.
type Metadata struct {
	SpecVersion              string                `json:"spec_version,omitempty"`
	Issuer                   string                `json:"issuer"`
	JWKSURI                  string                `json:"jwks_uri"`
	DeliveryMethodsSupported []string              `json:"delivery_methods_supported"`
	ConfigurationEndpoint    string                `json:"configuration_endpoint"`
	VerificationEndpoint     string                `json:"verification_endpoint,omitempty"`
	CriticalSubjectMembers   []string              `json:"critical_subject_members,omitempty"`
	AuthorizationSchemes     []AuthorizationScheme `json:"authorization_schemes,omitempty"`
	DefaultSubjects          string                `json:"default_subjects,omitempty"`
}

// MetadataURL is where the transmitter whose issuer is issuer serves its metadata: the
// well-known path goes between the host and the issuer's path (SSF 1.0 §7.2, RFC 8615).
func MetadataURL(issuer string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("issuer %q is not a URL", issuer)
	}
	u.Path = WellKnownPath + strings.TrimSuffix(u.Path, "/")
	return u.String(), nil
}

// Delivery is a stream's delivery configuration (SSF 1.0 §8.1.1).
type Delivery struct {
	Method      string `json:"method"`
	EndpointURL string `json:"endpoint_url,omitempty"`
}

// StreamConfiguration is a stream configuration (SSF 1.0 §8.1.1): as a transmitter answers
// it, and, with only some members set, as a receiver creates (§8.1.1.1) or updates
// (§8.1.1.3) a stream.
type StreamConfiguration struct {
	StreamID        string   `json:"stream_id,omitempty"`
	Issuer          string   `json:"iss,omitempty"`
	Audience        Audience `json:"aud,omitempty"`
	EventsSupported []string `json:"events_supported,omitempty"`
	EventsRequested []string `json:"events_requested,omitempty"`
	EventsDelivered []string `json:"events_delivered,omitempty"`
	Delivery        Delivery `json:"delivery,omitzero"`
	Description     string   `json:"description,omitempty"`
	// InactivityTimeout (seconds) is how long the stream lives without a poll (SSF 1.0
	// §8.1.1 inactivity_timeout).
	InactivityTimeout int `json:"inactivity_timeout,omitempty"`
}

// CheckPoll refuses a stream configuration a receiver cannot follow by polling: its iss must
// be the transmitter's issuer, its delivery poll (RFC 8936) with an endpoint_url, and its aud
// one value, the aud of its SETs (SSF 1.0 §8.1.1).
func (sc *StreamConfiguration) CheckPoll(issuer string) error {
	switch {
	case sc.Issuer != issuer:
		return fmt.Errorf("stream %q has iss %q, want %q", sc.StreamID, sc.Issuer, issuer)
	case sc.Delivery.Method != DeliveryPoll || sc.Delivery.EndpointURL == "":
		return fmt.Errorf("stream %q is delivered by %q, not by polling; delete it or set its delivery to poll", sc.StreamID, sc.Delivery.Method)
	case len(sc.Audience) != 1:
		return fmt.Errorf("stream %q has %d audiences, want one", sc.StreamID, len(sc.Audience))
	}
	return nil
}

// StreamURL is the configuration endpoint addressing one stream by its stream_id query
// parameter (SSF 1.0 §8.1.1.2, §8.1.1.5).
func StreamURL(endpoint, id string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return endpoint + "?stream_id=" + url.QueryEscape(id)
	}
	q := u.Query()
	q.Set("stream_id", id)
	u.RawQuery = q.Encode()
	return u.String()
}

// SETError is a receiver's report that it did not accept a SET (RFC 8936 §2.2 setErrs,
// with the codes of RFC 8935 §2.3).
type SETError struct {
	Code        string `json:"err"`
	Description string `json:"description"`
}

// PollRequest is the body of a poll (RFC 8936 §2.2).
type PollRequest struct {
	// MaxEvents is the most SETs to return; nil leaves it to the transmitter, 0 makes an
	// acknowledge-only request (RFC 8936 §2.4).
	MaxEvents *int `json:"maxEvents,omitempty"`
	// ReturnImmediately asks for a short poll; false (the default) lets the transmitter hold
	// the request until an event arrives (RFC 8936 §2.2).
	ReturnImmediately bool `json:"returnImmediately,omitempty"`
	// Ack lists the jti of the SETs the receiver accepted.
	Ack []string `json:"ack,omitempty"`
	// SETErrs maps the jti of the SETs the receiver refused to why; they are not delivered
	// again.
	SETErrs map[string]SETError `json:"setErrs,omitempty"`
}

// PollResponse is the answer to a poll (RFC 8936 §2.3): SETs by jti.
type PollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable"`
}
