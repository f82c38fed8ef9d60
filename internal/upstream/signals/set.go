package signals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/upstream/jwks"
)

// algorithms are the SET signature algorithms accepted: asymmetric only, never none or HS*.
var algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// RFC 8935 §2.4 / RFC 8936 §2.4 error codes put in setErrs.
const (
	errInvalidRequest  = "invalid_request"
	errInvalidKey      = "invalid_key"
	errInvalidIssuer   = "invalid_issuer"
	errInvalidAudience = "invalid_audience"
)

// outcome is what became of one SET: acknowledged (neither field set), refused (err) or left
// for redelivery (retry).
type outcome struct {
	err   *setError
	retry bool
}

func refuse(code, format string, a ...any) outcome {
	return outcome{err: &setError{Err: code, Description: fmt.Sprintf(format, a...)}}
}

// set is the part of a SET's claims tokengate reads (RFC 8417 §2.2, SSF 1.0 §4).
type set struct {
	JTI      string                     `json:"jti"`
	Issuer   string                     `json:"iss"`
	Audience audience                   `json:"aud"`
	IssuedAt *int64                     `json:"iat"`
	Events   map[string]json.RawMessage `json:"events"`
	SubID    *subjectID                 `json:"sub_id"`
}

// subjectID is an RFC 9493 subject identifier; complex ones carry user and session members.
type subjectID struct {
	Format  string     `json:"format"`
	Issuer  string     `json:"iss"`
	Subject string     `json:"sub"`
	ID      string     `json:"id"`
	User    *subjectID `json:"user"`
	Session *subjectID `json:"session"`
}

// eventBody holds the event members tokengate reads.
type eventBody struct {
	EventTimestamp *int64     `json:"event_timestamp"`
	State          string     `json:"state"`
	Status         string     `json:"status"`
	Subject        *subjectID `json:"subject"` // pre-SSF 1.0 placement of the subject
}

// handle verifies one SET, records what it carries and says whether to acknowledge it.
func (r *Receiver) handle(ctx context.Context, c *conn, jti, raw string) outcome {
	s, payloadErr, o := r.verify(ctx, c, jti, raw)
	if payloadErr {
		r.m.sets.WithLabelValues("unknown", outcomeName(o)).Inc()
		r.logRefused(jti, "", o)
		return o
	}
	uri, body, o := singleEvent(s)
	name := shortName(uri)
	if o.err == nil && !o.retry {
		o = r.apply(ctx, c, s, uri, body)
	}
	if o.err != nil {
		r.logRefused(jti, name, o)
	}
	r.m.sets.WithLabelValues(name, outcomeName(o)).Inc()
	return o
}

func (r *Receiver) logRefused(jti, event string, o outcome) {
	if o.err != nil {
		r.log.Warn("shared signals: SET refused", "event", "signals_set_refused", "jti", jti, "event_type", event,
			"err", o.err.Err, "reason", o.err.Description)
	}
}

func outcomeName(o outcome) string {
	switch {
	case o.retry:
		return "retry"
	case o.err != nil:
		return "refused"
	}
	return "ok"
}

// verify checks the SET's signature and claims. failed is true when the SET was refused or is
// to be retried before its events could be read.
func (r *Receiver) verify(ctx context.Context, c *conn, jti, raw string) (s set, failed bool, o outcome) {
	jws, err := jose.ParseSignedCompact(raw, algorithms)
	if err != nil {
		return s, true, refuse(errInvalidRequest, "not a JWS with an accepted algorithm: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return s, true, refuse(errInvalidRequest, "want exactly one signature")
	}
	if typ, ok := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType]; ok {
		if t, _ := typ.(string); !strings.EqualFold(t, "secevent+jwt") && !strings.EqualFold(t, "application/secevent+jwt") {
			return s, true, refuse(errInvalidRequest, "JOSE typ %v is not secevent+jwt", typ)
		}
	}
	payload, err := c.keys.VerifySignature(ctx, raw)
	if err != nil {
		switch {
		case errors.Is(err, jwks.ErrFetch):
			// Keycloak's JWKS cannot be read now: leave the SET for redelivery.
			r.log.Warn("shared signals: Keycloak's keys cannot be fetched; SET left for redelivery", "jti", jti, "error", err.Error())
			return s, true, outcome{retry: true}
		case errors.Is(err, jwks.ErrDeferred):
			// A kid not in hand, and the JWKS was fetched too recently to fetch it again: the SET
			// comes again, and is judged with a fetch once the interval has passed.
			r.log.Warn("shared signals: SET signed with a key not fetched yet; left for redelivery", "jti", jti, "error", err.Error())
			return s, true, outcome{retry: true}
		}
		return s, true, refuse(errInvalidKey, "signature does not verify with Keycloak's keys")
	}
	if err := json.Unmarshal(payload, &s); err != nil {
		return s, true, refuse(errInvalidRequest, "claims: %v", err)
	}
	now := r.cfg.Now()
	switch {
	case s.Issuer != r.cfg.Issuer:
		return s, true, refuse(errInvalidIssuer, "iss %q is not %q", s.Issuer, r.cfg.Issuer)
	case len(s.Audience) != 1 || s.Audience[0] != c.stream.Audience:
		return s, true, refuse(errInvalidAudience, "aud %v is not the stream's %q", []string(s.Audience), c.stream.Audience)
	case s.JTI == "" || s.JTI != jti:
		return s, true, refuse(errInvalidRequest, "jti %q does not match the poll answer's key", s.JTI)
	case s.IssuedAt == nil:
		return s, true, refuse(errInvalidRequest, "no iat")
	case time.Unix(*s.IssuedAt, 0).After(now.Add(r.cfg.Skew)):
		return s, true, refuse(errInvalidRequest, "iat is in the future")
	case time.Unix(*s.IssuedAt, 0).Before(now.Add(-r.cfg.MaxAge)):
		return s, true, refuse(errInvalidRequest, "iat is older than %s", r.cfg.MaxAge)
	}
	return s, false, outcome{}
}

// singleEvent returns the SET's one event (SSF 1.0 §4.1: one event per SET).
func singleEvent(s set) (string, eventBody, outcome) {
	if len(s.Events) != 1 {
		return "", eventBody{}, refuse(errInvalidRequest, "want exactly one event, got %d", len(s.Events))
	}
	for uri, raw := range s.Events {
		var b eventBody
		if err := json.Unmarshal(raw, &b); err != nil {
			return uri, eventBody{}, refuse(errInvalidRequest, "event %s is not a JSON object", uri)
		}
		return uri, b, outcome{}
	}
	panic("unreachable")
}

// apply acts on a verified SET's event.
func (r *Receiver) apply(ctx context.Context, c *conn, s set, uri string, body eventBody) outcome {
	switch uri {
	case EventVerification:
		if c.state != "" && body.State == c.state && !r.Verified() {
			r.setVerified(true)
			r.log.Info("shared signals: stream verified: Keycloak delivers on it", "event", "signals_verified",
				"stream", c.stream.StreamID)
		}
		return outcome{}
	case EventStreamUpdated:
		r.log.Warn("shared signals: Keycloak changed the stream's status", "event", "signals_stream_updated",
			"stream", c.stream.StreamID, "status", body.Status)
		return outcome{}
	}
	if !r.actOn[uri] {
		if Events[shortName(uri)] == uri {
			return outcome{} // an event type tokengate knows but is configured to ignore
		}
		return refuse(errInvalidRequest, "event type %s is not understood", uri)
	}
	rev, o := r.revocation(s, uri, body)
	if o.err != nil {
		return o
	}
	claim := store.Claim{JTI: "ssf:" + s.JTI, Expires: time.Unix(*s.IssuedAt, 0).Add(r.cfg.MaxAge + r.cfg.Skew)}
	recorded, err := r.rec.RecordUpstreamSET(ctx, claim, rev)
	if err != nil {
		r.log.Warn("shared signals: logout could not be recorded; SET left for redelivery", "jti", s.JTI, "error", err.Error())
		return outcome{retry: true}
	}
	if recorded {
		r.m.lag.Observe(r.cfg.Now().Sub(time.Unix(*s.IssuedAt, 0)).Seconds())
		r.log.Info("logout recorded", "event", "logout", "reason", rev.Reason, "sid", rev.SID, "sub", rev.Sub, "jti", s.JTI)
	} else {
		r.log.Debug("shared signals: logout already on record (the SET came again, or back-channel logout was first)",
			"jti", s.JTI, "sid", rev.SID, "sub", rev.Sub)
	}
	return outcome{}
}

// revocation maps an event to the revocation it asks for: a session-revoked event naming a
// session revokes that session; every other event (and a session-revoked naming only the
// user) revokes every session of the user issued up to the event's timestamp.
func (r *Receiver) revocation(s set, uri string, body eventBody) (store.Revocation, outcome) {
	subj := s.SubID
	if subj == nil {
		subj = body.Subject
	}
	if subj == nil {
		return store.Revocation{}, refuse(errInvalidRequest, "no sub_id")
	}
	user, session := subj, (*subjectID)(nil)
	if subj.Format == "complex" {
		user, session = subj.User, subj.Session
	}
	rev := store.Revocation{At: r.cfg.Now(), Reason: "ssf:" + shortName(uri)}
	if user != nil {
		if user.Format != "iss_sub" {
			return store.Revocation{}, refuse(errInvalidRequest, "user subject format %q is not supported (want iss_sub)", user.Format)
		}
		if user.Issuer != r.cfg.Issuer || user.Subject == "" {
			return store.Revocation{}, refuse(errInvalidRequest, "user subject is not of issuer %q", r.cfg.Issuer)
		}
		rev.Sub = user.Subject
	}
	if uri == EventSessionRevoked && session != nil {
		if session.Format != "opaque" || session.ID == "" {
			return store.Revocation{}, refuse(errInvalidRequest, "session subject format %q is not supported (want opaque)", session.Format)
		}
		rev.SID = session.ID
		return rev, outcome{}
	}
	if rev.Sub == "" {
		return store.Revocation{}, refuse(errInvalidRequest, "event names no user")
	}
	// Refuse what was issued up to the event; a later login stays valid.
	at := *s.IssuedAt
	if body.EventTimestamp != nil {
		at = *body.EventTimestamp
	}
	if t := time.Unix(at, 0); t.Before(rev.At) {
		rev.At = t
	}
	return rev, outcome{}
}

// shortName is the configuration name of an event URI (its last path segment).
func shortName(uri string) string {
	if uri == "" {
		return "unknown"
	}
	if i := strings.LastIndexByte(uri, '/'); i >= 0 {
		return uri[i+1:]
	}
	return uri
}
