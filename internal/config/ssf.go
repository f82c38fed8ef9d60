package config

import (
	"fmt"
	"regexp"
	"time"
)

// SSF configures the Shared Signals transmitter: logout events (CAEP session-revoked SETs)
// delivered to services by RFC 8936 polling.
type SSF struct {
	// PollTimeout is the longest a poll with returnImmediately false is held open waiting for
	// an event (25s default, at most 30s). A receiver may ask for less with "Prefer: wait=N".
	PollTimeout Duration `yaml:"poll_timeout,omitempty"`
	// Retention is how long an event stays in the log for streams that have not acknowledged
	// it: no internal token it could stop outlives tokens.ttl, so the default is tokens.ttl
	// plus a minute of clock skew.
	Retention Duration `yaml:"retention,omitempty"`
	// Streams are receivers defined by configuration (more can be created with the admin API).
	Streams []SSFStream `yaml:"streams,omitempty"`
	// Receivers are service credentials that create their own streams, one per service process
	// (SSF stream creation): every instance of a scaled-out service gets every event, and a
	// restarted one gets the events still in the log.
	Receivers []SSFReceiver `yaml:"receivers,omitempty"`
	// InactivityTimeout is how long a receiver-created stream lives without a poll (10m).
	InactivityTimeout Duration `yaml:"inactivity_timeout,omitempty"`
}

// SSFReceiver is a service allowed to create streams for its audience.
type SSFReceiver struct {
	// ID names the receiver; its streams are named ID.<random>.
	ID string `yaml:"id,omitempty"`
	// Audience is the aud of the SETs on its streams (required).
	Audience string `yaml:"audience,omitempty"`
	// SecretSHA256 is the hex SHA-256 of the receiver's bearer secret.
	SecretSHA256 string `yaml:"secret_sha256,omitempty"`
}

// SecretHash returns the decoded secret hash (valid after Validate).
func (r SSFReceiver) SecretHash() [32]byte { return sha256Of(r.SecretSHA256) }

// SSFStream is one receiving service.
type SSFStream struct {
	// ID names the stream (letters, digits, '.', '_', '~', '-'; at most 64).
	ID string `yaml:"id,omitempty"`
	// Audience is the aud of the SETs on this stream; the id when empty.
	Audience string `yaml:"audience,omitempty"`
	// SecretSHA256 is the hex SHA-256 of the stream's bearer secret (tokengate hash-secret).
	SecretSHA256 string `yaml:"secret_sha256,omitempty"`
	// Description is shown in the admin API.
	Description string `yaml:"description,omitempty"`
}

// SecretHash returns the decoded secret hash (valid after Validate).
func (s SSFStream) SecretHash() [32]byte { return sha256Of(s.SecretSHA256) }

// StreamIDPattern is what a stream id may look like (RFC 3986 unreserved characters).
var StreamIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,64}$`)

func (s *SSF) setDefaults(ttl Duration) {
	if s.PollTimeout == 0 {
		s.PollTimeout = Duration(25 * time.Second)
	}
	if s.Retention == 0 {
		s.Retention = ttl + Duration(time.Minute)
	}
	if s.InactivityTimeout == 0 {
		s.InactivityTimeout = Duration(10 * time.Minute)
	}
	for i := range s.Streams {
		if s.Streams[i].Audience == "" {
			s.Streams[i].Audience = s.Streams[i].ID
		}
	}
}

func (s *SSF) validate(bad func(field, format string, a ...any), ttl time.Duration) {
	if d := s.PollTimeout.D(); d < time.Second || d > 30*time.Second {
		bad("ssf.poll_timeout", "%s is outside the allowed range 1s–30s", d)
	}
	if d := s.Retention.D(); d < ttl || d > 24*time.Hour {
		bad("ssf.retention", "%s is outside the allowed range tokens.ttl (%s)–24h: a shorter log could drop an event while a token it must stop is alive", d, ttl)
	}
	seen := map[string]bool{}
	for n, st := range s.Streams {
		f := fmt.Sprintf("ssf.streams[%d]", n)
		switch {
		case !StreamIDPattern.MatchString(st.ID):
			bad(f+".id", "%q must be 1–64 letters, digits, '.', '_', '~' or '-'", st.ID)
		case seen[st.ID]:
			bad(f+".id", "%q is listed twice", st.ID)
		}
		seen[st.ID] = true
		if !validSHA256(st.SecretSHA256) {
			bad(f+".secret_sha256", hashHint)
		}
	}
	if d := s.InactivityTimeout.D(); d < time.Minute || d > 24*time.Hour {
		bad("ssf.inactivity_timeout", "%s is outside the allowed range 1m–24h", d)
	}
	receivers := map[string]bool{}
	for n, r := range s.Receivers {
		f := fmt.Sprintf("ssf.receivers[%d]", n)
		switch {
		case !ReceiverIDPattern.MatchString(r.ID):
			bad(f+".id", "%q must be 1–50 letters, digits, '_', '~' or '-'", r.ID)
		case receivers[r.ID]:
			bad(f+".id", "%q is listed twice", r.ID)
		}
		receivers[r.ID] = true
		if r.Audience == "" {
			bad(f+".audience", "is required")
		}
		if !validSHA256(r.SecretSHA256) {
			bad(f+".secret_sha256", hashHint)
		}
	}
}

// ReceiverIDPattern is what a receiver id may look like: its streams are named id.<random>.
var ReceiverIDPattern = regexp.MustCompile(`^[A-Za-z0-9_~-]{1,50}$`)
