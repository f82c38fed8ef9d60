package config

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// EnvSignalsClientSecret overrides upstream.shared_signals.client_secret.
const EnvSignalsClientSecret = "TOKENGATE_SIGNALS_CLIENT_SECRET"

// SignalEvents are the event names upstream.shared_signals.events accepts: session-revoked
// revokes the session it names; the others revoke every session of the user issued up to the
// event.
var SignalEvents = []string{"session-revoked", "credential-change", "account-disabled", "account-purged", "credential-compromise"}

// SharedSignals configures tokengate as a receiver of Keycloak's Shared Signals stream (Keycloak
// 26.7+ started with --features=ssf, realm attribute ssf.transmitterEnabled): logouts wait in
// Keycloak's outbox until tokengate polls and acknowledges them, so one that happens while
// tokengate is down is not lost. See docs/keycloak-signals.md.
type SharedSignals struct {
	// Enabled turns the receiver on.
	Enabled bool `yaml:"enabled,omitempty"`
	// ClientID and ClientSecret are the receiver client's in the realm (a confidential client
	// with a service account, ssf.enabled and the ssf.read and ssf.manage scopes). The secret
	// may come from ClientSecretFile or env TOKENGATE_SIGNALS_CLIENT_SECRET instead.
	ClientID         string `yaml:"client_id,omitempty"`
	ClientSecret     string `yaml:"client_secret,omitempty"`
	ClientSecretFile string `yaml:"client_secret_file,omitempty"`
	// Events are the events acted on; session-revoked is always requested and acted on, even
	// when omitted. Default: session-revoked alone, what Keycloak 26.7.3 delivers of them
	// (it offers no RISC event: account-disabled, account-purged, credential-compromise are
	// acted on once a Keycloak delivers them). credential-change (a password changed or reset)
	// is off by default: add it to end every session at a credential change. The receiver
	// updates a stream it reuses to request exactly these events when one is missing.
	Events []string `yaml:"events,omitempty"`
	// PollInterval is the pause between polls that found nothing (Keycloak answers at once):
	// the window of a logout that only this channel delivers. Default 2s.
	PollInterval Duration `yaml:"poll_interval,omitempty"`
	// AllowedOrigins are origins (scheme://host[:port]) besides upstream.issuer's that the
	// transmitter's metadata (jwks_uri, configuration and verification endpoints), the realm's
	// token endpoint and the stream's poll URL may be on, e.g. Keycloak's back-channel
	// hostname. Every other origin is refused: the receiver's client credentials and token
	// go to these endpoints, and the keys at jwks_uri decide which SETs are Keycloak's.
	AllowedOrigins []string `yaml:"allowed_origins,omitempty"`
}

func (s *SharedSignals) setDefaults() {
	if !s.Enabled {
		return
	}
	if len(s.Events) == 0 {
		s.Events = []string{"session-revoked"}
	}
	if s.PollInterval == 0 {
		s.PollInterval = Duration(2 * time.Second)
	}
}

// loadSecret applies the env override and reads client_secret_file.
func (s *SharedSignals) loadSecret(getenv func(string) string) error {
	if v := getenv(EnvSignalsClientSecret); v != "" {
		s.ClientSecret = v
		return nil
	}
	if s.ClientSecretFile == "" || !s.Enabled {
		return nil
	}
	b, err := os.ReadFile(s.ClientSecretFile)
	if err != nil {
		return fmt.Errorf("config: upstream.shared_signals.client_secret_file: %w", err)
	}
	s.ClientSecret = strings.TrimSpace(string(b))
	return nil
}

func (s *SharedSignals) validate(bad func(field, format string, a ...any), upstreamClientID string, insecureHTTP bool) {
	if !s.Enabled {
		return
	}
	const f = "upstream.shared_signals"
	if s.ClientID == "" {
		bad(f+".client_id", "is required when shared signals are enabled (the realm's receiver client)")
	} else if s.ClientID == upstreamClientID {
		bad(f+".client_id", "must be its own client, not upstream.client_id (%q): Keycloak keeps one stream per client", upstreamClientID)
	}
	if s.ClientSecret == "" {
		bad(f+".client_secret", "is required (or client_secret_file, or set %s)", EnvSignalsClientSecret)
	}
	seen := map[string]bool{}
	for i, e := range s.Events {
		known := false
		for _, k := range SignalEvents {
			known = known || k == e
		}
		switch {
		case !known:
			bad(fmt.Sprintf("%s.events[%d]", f, i), "%q is not one of %s", e, strings.Join(SignalEvents, ", "))
		case seen[e]:
			bad(fmt.Sprintf("%s.events[%d]", f, i), "%q is listed twice", e)
		}
		seen[e] = true
	}
	if d := s.PollInterval.D(); d < 100*time.Millisecond || d > time.Minute {
		bad(f+".poll_interval", "%s is outside the allowed range 100ms–1m0s", d)
	}
	for i, o := range s.AllowedOrigins {
		field := fmt.Sprintf("%s.allowed_origins[%d]", f, i)
		u, err := url.Parse(o)
		switch {
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(o, "#") ||
			strings.ContainsAny(u.Host, "*"):
			bad(field, "%q is not an origin: want scheme://host[:port] (https, no path, query, user or wildcard)", o)
		case u.Scheme == "http" && !insecureHTTP && !isLoopback(u.Hostname()):
			bad(field, "%q is plain http to a host that is not a loopback address: use https, or set upstream.insecure_http: true", o)
		}
	}
}
