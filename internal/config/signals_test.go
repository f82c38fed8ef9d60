package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// parseSignals parses base with an upstream.shared_signals section.
func parseSignals(t *testing.T, section string, env map[string]string) (*Config, error) {
	t.Helper()
	y := strings.Replace(base, "  logout_audiences: [bff]\n", "  logout_audiences: [bff]\n  shared_signals:\n"+section, 1)
	return Parse(strings.NewReader(y), func(k string) string { return env[k] })
}

func TestSharedSignals_OffByDefault(t *testing.T) {
	c, err := parseWith(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstream.SharedSignals.Enabled {
		t.Error("shared signals enabled by default")
	}
}

func TestSharedSignals_Defaults(t *testing.T) {
	c, err := parseSignals(t, "    enabled: true\n    client_id: tokengate-signals\n    client_secret: x\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Upstream.SharedSignals
	if s.PollInterval.D() != 2*time.Second {
		t.Errorf("poll_interval = %s, want 2s", s.PollInterval.D())
	}
	// What Keycloak 26.7.3 delivers of the events tokengate acts on by default: no RISC event
	// it would only log as undelivered at every start; credential-change stays opt-in.
	if strings.Join(s.Events, ",") != "session-revoked" {
		t.Errorf("events = %v, want [session-revoked]: credential-change is off by default, and Keycloak 26.7.3 delivers no RISC event", s.Events)
	}
}

func TestSharedSignals_SecretFromEnvOrFile(t *testing.T) {
	section := "    enabled: true\n    client_id: tokengate-signals\n"
	c, err := parseSignals(t, section, map[string]string{EnvSignalsClientSecret: "from-env"})
	if err != nil || c.Upstream.SharedSignals.ClientSecret != "from-env" {
		t.Fatalf("env secret: %+v, %v", c, err)
	}
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = parseSignals(t, section+"    client_secret_file: "+f+"\n", nil)
	if err != nil || c.Upstream.SharedSignals.ClientSecret != "from-file" {
		t.Fatalf("file secret: %+v, %v", c, err)
	}
	if _, err := parseSignals(t, section+"    client_secret_file: /nonexistent/secret\n", nil); err == nil ||
		!strings.Contains(err.Error(), "client_secret_file") {
		t.Errorf("unreadable secret file: %v", err)
	}
}

func TestSharedSignals_BadValuesNameTheField(t *testing.T) {
	ok := "    enabled: true\n    client_id: tokengate-signals\n    client_secret: x\n"
	for name, tc := range map[string]struct{ section, field string }{
		"no client":            {"    enabled: true\n    client_secret: x\n", "upstream.shared_signals.client_id"},
		"introspection client": {"    enabled: true\n    client_id: tokengate\n    client_secret: x\n", "upstream.shared_signals.client_id"},
		"no secret":            {"    enabled: true\n    client_id: tokengate-signals\n", "upstream.shared_signals.client_secret"},
		"unknown event":        {ok + "    events: [session-revoked, user-deleted]\n", "upstream.shared_signals.events[1]"},
		"event twice":          {ok + "    events: [credential-change, credential-change]\n", "upstream.shared_signals.events[1]"},
		"poll too fast":        {ok + "    poll_interval: 10ms\n", "upstream.shared_signals.poll_interval"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseSignals(t, tc.section, nil)
			if err == nil || !strings.Contains(err.Error(), tc.field+":") {
				t.Errorf("error = %v, want one naming %s", err, tc.field)
			}
		})
	}
}
