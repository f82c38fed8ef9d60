package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/verifier/secevent"
)

// Errors of VerifySET. A refused SET wraps ErrInvalidSET; ErrReplayedSET means its jti was
// accepted before; ErrSETUnverifiable means it could not be checked now (keys unreachable) and
// should be tried again.
var (
	ErrInvalidSET      = errors.New("verifier: invalid SET")
	ErrReplayedSET     = errors.New("verifier: replayed SET")
	ErrSETUnverifiable = errors.New("verifier: SET cannot be verified now")
)

// setError is a refusal with its RFC 8935 error code.
type setError struct {
	code string
	msg  string
}

func (e *setError) Error() string { return "verifier: invalid SET: " + e.msg }
func (e *setError) Unwrap() error { return ErrInvalidSET }

func refuse(code, format string, a ...any) error {
	return &setError{code: code, msg: fmt.Sprintf(format, a...)}
}

// errCode returns the RFC 8935 code of a refusal.
func errCode(err error) string {
	var se *setError
	if errors.As(err, &se) {
		return se.code
	}
	return secevent.CodeInvalidRequest
}

// Revocation is what a session-revoked SET revokes: the tokens of session SessionID, or (when
// SessionID is empty) every token of Subject issued at or before Before; or, for a
// signing-key-revoked SET, every token signed with key KeyID.
type Revocation struct {
	JTI       string
	SessionID string
	Subject   string
	// KeyID is the kid of a revoked signing key (SessionID and Subject are then empty).
	KeyID string
	// Before is the cutoff of a subject-wide revocation: the later of the event's timestamp and
	// the SET's iat (when tokengate recorded it).
	Before time.Time
	// At is when the revocation happened (event_timestamp).
	At time.Time
}

// VerifySET checks a Security Event Token from this service's stream: signature by a key of
// tokengate's JWKS with a pinned algorithm, JOSE typ secevent+jwt, iss, aud (the stream's), a
// jti not seen before, no sub and no exp (SSF 1.0 §4.1), and one session-revoked event whose
// subject names a session or a user of this issuer, or one signing-key-revoked event naming a
// kid (Revocation.KeyID). Stream management events verify but
// revoke nothing (nil Revocation); any other event type is refused. VerifySET does not apply
// the revocation and does not record the jti; the feed does both.
func (v *Verifier) VerifySET(ctx context.Context, raw string) (*Revocation, error) {
	jws, err := jose.ParseSignedCompact(raw, v.algs)
	if err != nil {
		return nil, refuse(secevent.CodeInvalidRequest, "malformed or unexpected algorithm: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, refuse(secevent.CodeInvalidRequest, "want one signature")
	}
	if typ, _ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string); !secevent.IsSETType(typ) {
		return nil, refuse(secevent.CodeInvalidRequest, "JOSE typ %q is not secevent+jwt", typ)
	}
	payload, err := v.keySet.VerifySignature(ctx, raw)
	if err != nil {
		// A kid not fetched yet because the JWKS was fetched just before: judged when the SET
		// comes again, like one whose keys cannot be fetched now.
		if keysUnreachable(err) || errors.Is(err, errDeferred) {
			return nil, fmt.Errorf("%w: %v", ErrSETUnverifiable, err)
		}
		return nil, refuse(secevent.CodeInvalidKey, "signature does not verify with the issuer's keys")
	}
	var c secevent.SET
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, refuse(secevent.CodeInvalidRequest, "claims: %v", err)
	}
	switch {
	case c.Issuer != v.cfg.Issuer:
		return nil, refuse(secevent.CodeInvalidIssuer, "iss %q", c.Issuer)
	case !c.Audience.Contains(v.setAud):
		return nil, refuse(secevent.CodeInvalidAudience, "aud %v does not name %q", []string(c.Audience), v.setAud)
	case c.JTI == "":
		return nil, refuse(secevent.CodeInvalidRequest, "no jti")
	case c.IssuedAt == nil:
		return nil, refuse(secevent.CodeInvalidRequest, "no iat")
	case c.Subject != nil:
		return nil, refuse(secevent.CodeInvalidRequest, "a SET must not carry sub")
	case c.Expiry != nil:
		return nil, refuse(secevent.CodeInvalidRequest, "a SET must not carry exp")
	case len(c.Events) == 0:
		return nil, refuse(secevent.CodeInvalidRequest, "no events")
	}
	if v.revoked.seen(c.JTI) {
		return nil, fmt.Errorf("%w: jti %q", ErrReplayedSET, c.JTI)
	}
	if _, ok := c.Events[secevent.EventSigningKeyRevoked]; ok {
		if c.SubID == nil || c.SubID.Format != secevent.FormatOpaque || c.SubID.ID == "" {
			return nil, refuse(secevent.CodeInvalidRequest, "signing-key-revoked subject must be the kid (opaque)")
		}
		at := time.Unix(*c.IssuedAt, 0)
		return &Revocation{JTI: c.JTI, KeyID: c.SubID.ID, At: at, Before: at}, nil
	}
	body, ok := c.Events[secevent.EventSessionRevoked]
	if !ok {
		for typ := range c.Events {
			if typ == secevent.EventVerification || typ == secevent.EventStreamUpdated {
				return nil, nil
			}
		}
		return nil, refuse(secevent.CodeInvalidRequest, "unsupported event type %q", firstKey(c.Events))
	}
	// event_timestamp is a NumericDate (RFC 7519 §2), which may have a fraction: read as a
	// number here, not as secevent.Event's whole seconds, so such a SET is still accepted.
	var ev struct {
		EventTimestamp *float64 `json:"event_timestamp"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, refuse(secevent.CodeInvalidRequest, "session-revoked: %v", err)
	}
	iat := time.Unix(*c.IssuedAt, 0)
	r := &Revocation{JTI: c.JTI, At: iat, Before: iat}
	if ev.EventTimestamp != nil {
		r.At = time.Unix(int64(*ev.EventTimestamp), 0)
		if r.At.After(r.Before) {
			r.Before = r.At
		}
	}
	if err := v.subject(c.SubID, r); err != nil {
		return nil, err
	}
	return r, nil
}

// subject reads what a session-revoked subject names: a session (opaque id, alone or as the
// session member of a complex subject) or a user (iss_sub of this issuer).
func (v *Verifier) subject(s *secevent.SubjectID, r *Revocation) error {
	if s == nil {
		return refuse(secevent.CodeInvalidRequest, "no sub_id")
	}
	user := func(u *secevent.SubjectID) error {
		if u.Format != secevent.FormatIssSub || u.Iss != v.cfg.Issuer || u.Sub == "" {
			return refuse(secevent.CodeInvalidRequest, "user subject must be iss_sub of %s", v.cfg.Issuer)
		}
		r.Subject = u.Sub
		return nil
	}
	switch s.Format {
	case secevent.FormatOpaque:
		r.SessionID = s.ID
	case secevent.FormatIssSub:
		if err := user(s); err != nil {
			return err
		}
	case secevent.FormatComplex:
		if s.User != nil {
			if err := user(s.User); err != nil {
				return err
			}
		}
		if s.Session != nil {
			if s.Session.Format != secevent.FormatOpaque || s.Session.ID == "" {
				return refuse(secevent.CodeInvalidRequest, "session subject must be opaque")
			}
			r.SessionID = s.Session.ID
		}
	default:
		return refuse(secevent.CodeInvalidRequest, "subject format %q", s.Format)
	}
	if r.SessionID == "" && r.Subject == "" {
		return refuse(secevent.CodeInvalidRequest, "the subject names neither a session nor a user")
	}
	return nil
}

// keysUnreachable tells a failure to fetch the JWKS (try again later) from a bad signature:
// keySet.fetch wraps its failures as "fetching keys: …".
func keysUnreachable(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue) || strings.HasPrefix(err.Error(), "fetching keys")
}

func firstKey(m map[string]json.RawMessage) string {
	for k := range m {
		return k
	}
	return ""
}

// revokedSet remembers revoked sessions and users, and accepted SET ids, each until no token
// they concern can still be alive.
type revokedSet struct {
	mu    sync.RWMutex
	sids  map[string]time.Time  // sid → forget after
	subs  map[string]subjectCut // sub → cutoff
	jtis  map[string]time.Time  // jti → forget after
	prune time.Time
}

type subjectCut struct {
	before time.Time // tokens issued at or before this are revoked
	until  time.Time // forget after
}

// check returns why a token with these claims is revoked, or "".
func (s *revokedSet) check(sid, sub string, iat time.Time) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.sids[sid]; ok && sid != "" {
		return "session logged out"
	}
	if c, ok := s.subs[sub]; ok && !iat.After(c.before) {
		return "user logged out"
	}
	return ""
}

func (s *revokedSet) seen(jti string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.jtis[jti]
	return ok
}

// remember records a SET's jti; it reports false when the jti was recorded already.
func (s *revokedSet) remember(jti string, until time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jtis[jti]; ok {
		return false
	}
	s.jtis[jti] = until
	return true
}

// apply records a revocation, remembered until until. A key revocation is the key set's
// business, not this set's.
func (s *revokedSet) apply(r *Revocation, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.KeyID != "" {
		return
	}
	if r.SessionID != "" {
		if until.After(s.sids[r.SessionID]) {
			s.sids[r.SessionID] = until
		}
		return
	}
	c := s.subs[r.Subject]
	if r.Before.After(c.before) {
		c.before = r.Before
	}
	if until.After(c.until) {
		c.until = until
	}
	s.subs[r.Subject] = c
}

// forget drops entries past their time, at most once a second.
func (s *revokedSet) forget(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.prune) < time.Second {
		return
	}
	s.prune = now
	for k, t := range s.sids {
		if now.After(t) {
			delete(s.sids, k)
		}
	}
	for k, c := range s.subs {
		if now.After(c.until) {
			delete(s.subs, k)
		}
	}
	for k, t := range s.jtis {
		if now.After(t) {
			delete(s.jtis, k)
		}
	}
}

func (s *revokedSet) counts() (sessions, subjects int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.sids), len(s.subs)
}

// tokenCache keeps verified tokens by their text, so a token presented again costs a map
// lookup instead of a signature check. Bounded; expired entries go first.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]*Token
}

const tokenCacheSize = 10000

func (c *tokenCache) get(k string, now time.Time) *Token {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.m[k]
	if t != nil && !t.Expiry.After(now) {
		delete(c.m, k)
		return nil
	}
	return t
}

func (c *tokenCache) put(k string, t *Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*Token{}
	}
	if len(c.m) >= tokenCacheSize {
		now := time.Now()
		for key, old := range c.m {
			if !old.Expiry.After(now) || len(c.m) >= tokenCacheSize {
				delete(c.m, key)
			}
			if len(c.m) < tokenCacheSize/2 {
				break
			}
		}
	}
	c.m[k] = t
}

// prune drops expired tokens.
func (c *tokenCache) prune(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, t := range c.m {
		if !t.Expiry.After(now) {
			delete(c.m, k)
		}
	}
}
