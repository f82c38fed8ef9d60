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
	"github.com/tokengate/tokengate/verifier/jwksfetch"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// outcome is what became of one SET: acknowledged (neither field set), refused (err) or left
// for redelivery (retry).
type outcome struct {
	err   *secevent.SETError
	retry bool
}

func refuse(code, format string, a ...any) outcome {
	return outcome{err: &secevent.SETError{Code: code, Description: fmt.Sprintf(format, a...)}}
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
			"err", o.err.Code, "reason", o.err.Description)
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
func (r *Receiver) verify(ctx context.Context, c *conn, jti, raw string) (s secevent.SET, failed bool, o outcome) {
	jws, err := jose.ParseSignedCompact(raw, jwksfetch.Algorithms) // asymmetric only, never none or HS*
	if err != nil {
		return s, true, refuse(secevent.CodeInvalidRequest, "not a JWS with an accepted algorithm: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return s, true, refuse(secevent.CodeInvalidRequest, "want exactly one signature")
	}
	if typ, ok := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType]; ok {
		if t, _ := typ.(string); !secevent.IsSETType(t) {
			return s, true, refuse(secevent.CodeInvalidRequest, "JOSE typ %v is not secevent+jwt", typ)
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
		return s, true, refuse(secevent.CodeInvalidKey, "signature does not verify with Keycloak's keys")
	}
	if err := json.Unmarshal(payload, &s); err != nil {
		return s, true, refuse(secevent.CodeInvalidRequest, "claims: %v", err)
	}
	now := r.cfg.Now()
	switch {
	case s.Issuer != r.cfg.Issuer:
		return s, true, refuse(secevent.CodeInvalidIssuer, "iss %q is not %q", s.Issuer, r.cfg.Issuer)
	case !s.Audience.Is(c.stream.Audience):
		return s, true, refuse(secevent.CodeInvalidAudience, "aud %v is not the stream's %q", []string(s.Audience), c.stream.Audience)
	case s.JTI == "" || s.JTI != jti:
		return s, true, refuse(secevent.CodeInvalidRequest, "jti %q does not match the poll answer's key", s.JTI)
	case s.IssuedAt == nil:
		return s, true, refuse(secevent.CodeInvalidRequest, "no iat")
	case time.Unix(*s.IssuedAt, 0).After(now.Add(r.cfg.Skew)):
		return s, true, refuse(secevent.CodeInvalidRequest, "iat is in the future")
	case time.Unix(*s.IssuedAt, 0).Before(now.Add(-r.cfg.MaxAge)):
		return s, true, refuse(secevent.CodeInvalidRequest, "iat is older than %s", r.cfg.MaxAge)
	}
	return s, false, outcome{}
}

// singleEvent returns the SET's one event (SSF 1.0 §4.1: one event per SET).
func singleEvent(s secevent.SET) (string, secevent.Event, outcome) {
	if len(s.Events) != 1 {
		return "", secevent.Event{}, refuse(secevent.CodeInvalidRequest, "want exactly one event, got %d", len(s.Events))
	}
	for uri, raw := range s.Events {
		var b secevent.Event
		if err := json.Unmarshal(raw, &b); err != nil {
			return uri, secevent.Event{}, refuse(secevent.CodeInvalidRequest, "event %s is not a JSON object", uri)
		}
		return uri, b, outcome{}
	}
	panic("unreachable")
}

// apply acts on a verified SET's event.
func (r *Receiver) apply(ctx context.Context, c *conn, s secevent.SET, uri string, body secevent.Event) outcome {
	switch uri {
	case secevent.EventVerification:
		if c.state != "" && body.State == c.state && !r.Verified() {
			r.setVerified(true)
			r.log.Info("shared signals: stream verified: Keycloak delivers on it", "event", "signals_verified",
				"stream", c.stream.StreamID)
		}
		return outcome{}
	case secevent.EventStreamUpdated:
		r.log.Warn("shared signals: Keycloak changed the stream's status", "event", "signals_stream_updated",
			"stream", c.stream.StreamID, "status", body.Status)
		return outcome{}
	}
	if !r.actOn[uri] {
		if Events[shortName(uri)] == uri {
			return outcome{} // an event type tokengate knows but is configured to ignore
		}
		return refuse(secevent.CodeInvalidRequest, "event type %s is not understood", uri)
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
func (r *Receiver) revocation(s secevent.SET, uri string, body secevent.Event) (store.Revocation, outcome) {
	subj := s.SubID
	if subj == nil {
		subj = body.Subject
	}
	if subj == nil {
		return store.Revocation{}, refuse(secevent.CodeInvalidRequest, "no sub_id")
	}
	user, session := subj, (*secevent.SubjectID)(nil)
	if subj.Format == secevent.FormatComplex {
		user, session = subj.User, subj.Session
	}
	rev := store.Revocation{At: r.cfg.Now(), Reason: "ssf:" + shortName(uri)}
	if user != nil {
		if user.Format != secevent.FormatIssSub {
			return store.Revocation{}, refuse(secevent.CodeInvalidRequest, "user subject format %q is not supported (want iss_sub)", user.Format)
		}
		if user.Iss != r.cfg.Issuer || user.Sub == "" {
			return store.Revocation{}, refuse(secevent.CodeInvalidRequest, "user subject is not of issuer %q", r.cfg.Issuer)
		}
		rev.Sub = user.Sub
	}
	if uri == secevent.EventSessionRevoked && session != nil {
		if session.Format != secevent.FormatOpaque || session.ID == "" {
			return store.Revocation{}, refuse(secevent.CodeInvalidRequest, "session subject format %q is not supported (want opaque)", session.Format)
		}
		rev.SID = session.ID
		return rev, outcome{}
	}
	if rev.Sub == "" {
		return store.Revocation{}, refuse(secevent.CodeInvalidRequest, "event names no user")
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
