package config

import (
	"strings"
	"testing"
	"time"
)

// base is a minimal valid configuration; tests append a store section.
const base = `listen: 127.0.0.1:8443
issuer: https://tokengate.test
data_dir: /var/lib/tokengate
upstream:
  issuer: https://kc.test/realms/demo
  client_id: tokengate
  client_secret: s3cret
  logout_audiences: [bff]
clients:
  - id: bff
    secret_sha256: 0000000000000000000000000000000000000000000000000000000000000000
    audiences: [api]
`

func parseWith(t *testing.T, extra string, env map[string]string) (*Config, error) {
	t.Helper()
	return Parse(strings.NewReader(base+extra), func(k string) string { return env[k] })
}

func TestStore_DefaultsToBolt(t *testing.T) {
	c, err := parseWith(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Backend != BackendBolt || c.Store.MaxStaleness.D() != 5*time.Second {
		t.Errorf("store = %+v, want bolt with max_staleness 5s", c.Store)
	}
}

func TestStore_Etcd(t *testing.T) {
	c, err := parseWith(t, `store:
  backend: etcd
  max_staleness: 2s
  etcd:
    endpoints: [http://127.0.0.1:2379, https://10.0.0.2:2379]
    username: tokengate
`, map[string]string{EnvEtcdPassword: "from-env"})
	if err != nil {
		t.Fatal(err)
	}
	e := c.Store.Etcd
	if c.Store.MaxStaleness.D() != 2*time.Second || e.Prefix != "/tokengate/" || e.DialTimeout.D() != 5*time.Second ||
		e.ElectionTTL.D() != 10*time.Second || e.Password != "from-env" || len(e.Endpoints) != 2 {
		t.Errorf("store = %+v", c.Store)
	}
}

func TestStore_BadValuesNameTheField(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, field string }{
		"unknown backend":   {"store:\n  backend: redis\n", "store.backend"},
		"no endpoints":      {"store:\n  backend: etcd\n", "store.etcd.endpoints"},
		"endpoint not URL":  {"store:\n  backend: etcd\n  etcd:\n    endpoints: [127.0.0.1:2379]\n", "store.etcd.endpoints[0]"},
		"prefix":            {"store:\n  backend: etcd\n  etcd:\n    endpoints: [http://a:2379]\n    prefix: tg\n", "store.etcd.prefix"},
		"staleness too low": {"store:\n  backend: etcd\n  max_staleness: 10ms\n  etcd:\n    endpoints: [http://a:2379]\n", "store.max_staleness"},
		"cert without key":  {"store:\n  backend: etcd\n  etcd:\n    endpoints: [http://a:2379]\n    cert_file: c.pem\n", "store.etcd.cert_file"},
		"user without pass": {"store:\n  backend: etcd\n  etcd:\n    endpoints: [http://a:2379]\n    username: u\n", "store.etcd.password"},
		"unknown key":       {"store:\n  backend: etcd\n  etcd:\n    endpoint: http://a:2379\n", "endpoint"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseWith(t, tc.yaml, nil)
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error = %v, want one naming %s", err, tc.field)
			}
		})
	}
}

func TestStore_EtcdPasswordEnvIgnoredWithoutUsername(t *testing.T) {
	c, err := parseWith(t, "store:\n  backend: etcd\n  etcd:\n    endpoints: [http://a:2379]\n",
		map[string]string{EnvEtcdPassword: "exported-for-another-deployment"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Etcd.Password != "" {
		t.Errorf("password %q set without a username", c.Store.Etcd.Password)
	}
}

// TestWriteTimeout: store.write_timeout defaults to 1s on both backends; a hostile or mistaken
// value — negative, zero-ish, absurdly long, not a duration — is refused naming the field,
// never clamped silently.
func TestWriteTimeout(t *testing.T) {
	c, err := parseWith(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.WriteTimeout.D() != time.Second {
		t.Errorf("default write_timeout %s, want 1s", c.Store.WriteTimeout.D())
	}
	c, err = parseWith(t, "store:\n  write_timeout: 250ms\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.WriteTimeout.D() != 250*time.Millisecond {
		t.Errorf("set: write_timeout %s", c.Store.WriteTimeout.D())
	}
	for name, tc := range map[string]struct{ yaml, field string }{
		"negative":       {"store:\n  write_timeout: -1s\n", "store.write_timeout"},
		"1ns":            {"store:\n  write_timeout: 1ns\n", "store.write_timeout"},
		"an hour":        {"store:\n  write_timeout: 1h\n", "store.write_timeout"},
		"not a duration": {"store:\n  write_timeout: soon\n", "not a duration"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseWith(t, tc.yaml, nil)
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error = %v, want one naming %s", err, tc.field)
			}
		})
	}
}

// TestShutdownGrace: shutdown_grace defaults to 0 (close at once); a negative or absurdly long
// grace, or one that is not a duration, is refused naming the field.
func TestShutdownGrace(t *testing.T) {
	c, err := parseWith(t, "shutdown_grace: 3s\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ShutdownGrace.D() != 3*time.Second {
		t.Errorf("shutdown_grace %s, want 3s", c.ShutdownGrace.D())
	}
	if c, err = parseWith(t, "", nil); err != nil || c.ShutdownGrace != 0 {
		t.Errorf("default shutdown_grace = %v, %v; want 0", c.ShutdownGrace, err)
	}
	for name, tc := range map[string]struct{ yaml, field string }{
		"negative":       {"shutdown_grace: -5s\n", "shutdown_grace"},
		"a day":          {"shutdown_grace: 24h\n", "shutdown_grace"},
		"not a duration": {"shutdown_grace: [5]\n", "duration"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseWith(t, tc.yaml, nil)
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error = %v, want one naming %s", err, tc.field)
			}
		})
	}
}
