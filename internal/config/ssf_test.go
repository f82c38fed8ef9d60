package config

import (
	"strings"
	"testing"
	"time"
)

const streamHash = "1111111111111111111111111111111111111111111111111111111111111111"

func TestSSF_Defaults(t *testing.T) {
	c, err := parseWith(t, "tokens:\n  ttl: 45s\nssf:\n  streams:\n    - id: orders\n      secret_sha256: "+streamHash+"\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.SSF
	if s.PollTimeout.D() != 25*time.Second || s.Retention.D() != 105*time.Second {
		t.Errorf("ssf = %+v, want poll_timeout 25s and retention ttl+1m", s)
	}
	if s.InactivityTimeout.D() != 10*time.Minute {
		t.Errorf("inactivity_timeout = %s, want 10m", s.InactivityTimeout.D())
	}
	if len(s.Streams) != 1 || s.Streams[0].Audience != "orders" || s.Streams[0].SecretHash()[0] != 0x11 {
		t.Errorf("streams = %+v, want audience defaulted to the id", s.Streams)
	}
}

func TestSSF_BadValuesNameTheField(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, field string }{
		"poll timeout too long": {"ssf:\n  poll_timeout: 31s\n", "ssf.poll_timeout"},
		"retention below ttl":   {"ssf:\n  retention: 10s\n", "ssf.retention"},
		"bad stream id":         {"ssf:\n  streams:\n    - id: 'a/b'\n      secret_sha256: " + streamHash + "\n", "ssf.streams[0].id"},
		"duplicate stream": {"ssf:\n  streams:\n    - id: a\n      secret_sha256: " + streamHash +
			"\n    - id: a\n      secret_sha256: " + streamHash + "\n", "ssf.streams[1].id"},
		"bad secret hash":           {"ssf:\n  streams:\n    - id: a\n      secret_sha256: nope\n", "ssf.streams[0].secret_sha256"},
		"receiver with a dot":       {"ssf:\n  receivers:\n    - id: a.b\n      audience: x\n      secret_sha256: " + streamHash + "\n", "ssf.receivers[0].id"},
		"receiver without audience": {"ssf:\n  receivers:\n    - id: a\n      secret_sha256: " + streamHash + "\n", "ssf.receivers[0].audience"},
		"inactivity too short":      {"ssf:\n  inactivity_timeout: 10s\n", "ssf.inactivity_timeout"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseWith(t, tc.yaml, nil)
			if err == nil || !strings.Contains(err.Error(), tc.field+":") {
				t.Errorf("error = %v, want one naming %s", err, tc.field)
			}
		})
	}
}
