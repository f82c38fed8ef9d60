package config_test

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
)

// validConfig is docs/configuration.md's reference with real-looking values.
const validConfig = `listen: 0.0.0.0:8443
admin_listen: 127.0.0.1:9090
issuer: https://tokengate.internal
data_dir: /var/lib/tokengate
log_level: info
upstream:
  issuer: https://keycloak.example/realms/demo
  client_id: tokengate
  client_secret: s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t
  logout_audiences: [bff]
  max_token_lifetime: 1h
  timeout: 5s
tokens:
  ttl: 30s
  recheck_after: 60s
keys:
  algorithm: ES256
  jwks_max_age: 5m
  rotate_every: 24h
  kek_file: /etc/tokengate/kek
admin:
  tokens:
    - name: ops
      sha256: 3f1c0b5e4c9c2a7e0d6a8b1f2e3d4c5b6a7980f1e2d3c4b5a69788796a5b4c3d
  tls:
    cert_file: /etc/tokengate/admin.crt
    key_file: /etc/tokengate/admin.key
    client_ca_file: /etc/tokengate/ops-ca.crt
clients:
  - id: bff
    secret_sha256: 9b1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0
    audiences: [orders, payments]
`

// FuzzParse feeds arbitrary bytes to config.Parse, the loader of the configuration file.
// Invariants: no panic; a refusal is an error starting with "config:"; an accepted configuration
// validates again, has every required field and every duration inside its documented range.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validConfig), "")
	f.Add([]byte(validConfig), "from-env-secret")
	minimal := `listen: :8443
issuer: http://127.0.0.1:8443/tg
data_dir: ./data
upstream: {issuer: "http://127.0.0.1:18080/realms/demo", client_id: tokengate, logout_audiences: [bff]}
clients: [{id: bff, secret_sha256: "` + strings.Repeat("ab", 32) + `", audiences: [demo-service]}]
`
	f.Add([]byte(minimal), "s")
	f.Add([]byte(strings.Replace(validConfig, "  max_token_lifetime: 1h\n", "  require_audience: false\n  max_token_lifetime: 1h\n", 1)), "")
	f.Add([]byte(strings.Replace(validConfig, "  max_token_lifetime: 1h\n", "  require_audience: maybe\n  max_token_lifetime: 1h\n", 1)), "")
	f.Add([]byte(validConfig+"    upstream_clients: [bff-web, bff-spa]\n"), "")
	f.Add([]byte(strings.Replace(validConfig, "https://keycloak.example", "http://keycloak.example", 1)), "")
	f.Add([]byte(strings.Replace(validConfig, "https://keycloak.example", "http://keycloak.example", 1)+"upstream:\n  insecure_http: true\n"), "")
	f.Add([]byte(strings.Replace(validConfig, "  timeout: 5s\n", "  timeout: 5s\n  insecure_http: true\n  shared_signals:\n    enabled: true\n"+
		"    client_id: sig\n    client_secret: x\n    allowed_origins: [\"http://kc-back:8080\", \"https://[::1]:8443/\"]\n", 1)), "")
	f.Add([]byte(validConfig+"    upstream_clients: []\n"), "")
	f.Add([]byte(validConfig+"    delegate_to: [ledger]\n    max_delegation_depth: 2\n    service_audience: orders\n"), "")
	f.Add([]byte(validConfig+"  - {id: orders, secret_sha256: "+strings.Repeat("12", 32)+", delegate_to: [payments]}\n"), "")
	f.Add([]byte(validConfig+"  - {id: orders, secret_sha256: "+strings.Repeat("12", 32)+", delegate_to: [orders, \" x\"], max_delegation_depth: 99}\n"), "")
	f.Add([]byte(validConfig+"    max_delegation_depth: 3\n"), "")
	f.Add([]byte(validConfig+"    upstream_clients: [\" x\"]\n"), "")
	f.Add([]byte(strings.Replace(validConfig, "ttl: 30s", "ttl: 30", 1)), "")
	f.Add([]byte(strings.Replace(validConfig, "ttl: 30s", "ttl: [30s]", 1)), "")
	f.Add([]byte(strings.Replace(validConfig, "log_level: info", "log_levle: info", 1)), "")
	f.Add([]byte(validConfig+"---\nlisten: x\n"), "")
	f.Add([]byte("a: &a [*a, *a]\n"), "")
	f.Add([]byte("listen: &x 1.2.3.4:5\nadmin_listen: *x\n"), "")
	f.Add([]byte("clients: !!binary aGVsbG8=\n"), "")
	f.Add([]byte("tokens: {ttl: !!int 3}\n"), "")
	f.Add([]byte(validConfig+"tracing: {otlp_endpoint: \"http://otel:4318\", sample_ratio: 0.1}\n"), "")
	f.Add([]byte(validConfig+"tracing: {otlp_endpoint: \"https://u:p@otel:4318\", follow_traceparent: false}\n"), "")
	f.Add([]byte(validConfig+"tracing: {sample_ratio: .nan}\n"), "")
	f.Add([]byte("{"), "")
	f.Add([]byte(""), "")
	f.Add([]byte("\xef\xbb\xbf\x00"), "")

	f.Fuzz(func(t *testing.T, data []byte, envSecret string) {
		getenv := func(k string) string {
			if k == config.EnvUpstreamClientSecret {
				return envSecret
			}
			return ""
		}
		c, err := config.Parse(bytes.NewReader(data), getenv)
		if err != nil {
			if c != nil {
				t.Fatalf("error with a config: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "config:") {
				t.Fatalf("error does not name its origin: %q", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate again: %v", err)
		}
		if c.Listen == "" || c.AdminListen == "" || c.Issuer == "" || c.DataDir == "" ||
			c.Upstream.Issuer == "" || c.Upstream.ClientID == "" || c.Upstream.ClientSecret == "" ||
			len(c.Upstream.LogoutAudiences) == 0 || len(c.Clients) == 0 {
			t.Fatalf("accepted config misses a required field: %+v", c)
		}
		if envSecret != "" && c.Upstream.ClientSecret != envSecret {
			t.Fatal("the environment's client secret does not override the file's")
		}
		in := func(d config.Duration, lo, hi time.Duration) bool { return d.D() >= lo && d.D() <= hi }
		if !in(c.Tokens.TTL, 5*time.Second, 5*time.Minute) || !in(c.Tokens.RecheckAfter, time.Second, time.Hour) ||
			!in(c.Upstream.MaxTokenLifetime, time.Minute, 24*time.Hour) || c.Keys.RotateEvery.D() < 2*c.Keys.JWKSMaxAge.D() {
			t.Fatalf("accepted out-of-range durations: %+v", c)
		}
		for _, cl := range c.Clients {
			if b, err := hex.DecodeString(cl.SecretSHA256); err != nil || len(b) != 32 || cl.ID == "" ||
				(len(cl.Audiences) == 0 && len(cl.DelegateTo) == 0) {
				t.Fatalf("accepted client %+v", cl)
			}
			if cl.UpstreamClients != nil && len(cl.UpstreamClients) == 0 {
				t.Fatalf("accepted an empty upstream_clients list: %+v", cl)
			}
			if d := cl.MaxDelegationDepth; (len(cl.DelegateTo) > 0) != (d >= 1 && d <= config.MaxDelegationDepth) ||
				(len(cl.DelegateTo) == 0 && (d != 0 || cl.ServiceAudience != "")) {
				t.Fatalf("accepted delegation settings %+v", cl)
			}
			for _, a := range cl.DelegateTo {
				if a == "" || a != strings.TrimSpace(a) || a == cl.ServiceAudienceOf() {
					t.Fatalf("accepted delegate_to %q of client %+v", a, cl)
				}
			}
			for _, u := range cl.UpstreamClients {
				if u == "" || u != strings.TrimSpace(u) {
					t.Fatalf("accepted upstream client %q", u)
				}
			}
		}
		if c.Upstream.RequireAudience == nil {
			t.Fatal("require_audience has no value after defaults")
		}
		warned := func(part string) bool {
			for _, w := range c.Warnings() {
				if strings.Contains(w, part) {
					return true
				}
			}
			return false
		}
		if warned("upstream.require_audience") == c.Upstream.AudienceRequired() {
			t.Fatalf("require_audience %v but warnings %q", c.Upstream.AudienceRequired(), c.Warnings())
		}
		// Plain http to Keycloak off loopback only with insecure_http, and always with a warning.
		if u, err := url.Parse(c.Upstream.Issuer); err == nil && u.Scheme != "https" {
			if ip := net.ParseIP(u.Hostname()); !c.Upstream.InsecureHTTP && (ip == nil || !ip.IsLoopback()) {
				t.Fatalf("accepted plain http issuer %q off loopback without insecure_http", c.Upstream.Issuer)
			}
			if !warned("plain http") {
				t.Fatalf("plain http issuer %q without a warning: %q", c.Upstream.Issuer, c.Warnings())
			}
		}
		if c.Upstream.InsecureHTTP && !warned("upstream.insecure_http") {
			t.Fatalf("insecure_http without a warning: %q", c.Warnings())
		}
		for _, o := range c.Upstream.SharedSignals.AllowedOrigins {
			u, err := url.Parse(o)
			if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
				t.Fatalf("accepted allowed origin %q", o)
			}
		}
		if tr := c.Tracing; tr.Enabled() {
			if !(tr.SampleRatio > 0 && tr.SampleRatio <= 1) || tr.FollowTraceparent == nil {
				t.Fatalf("accepted tracing %+v", tr)
			}
			if u, err := url.Parse(tr.ExportURL()); err != nil || u.User != nil || (u.Scheme != "http" && u.Scheme != "https") {
				t.Fatalf("accepted tracing endpoint %q", tr.OTLPEndpoint)
			}
		} else if tr.SampleRatio != 0 || tr.FollowTraceparent != nil {
			t.Fatalf("accepted tracing settings without an endpoint: %+v", tr)
		}
		roundTrip(t, c, getenv)
	})
}

// FuzzKEK feeds arbitrary TOKENGATE_KEK values to Config.KEK. Invariants: no panic; the key is
// exactly 32 bytes or an error that names where it came from, never quoting the value.
func FuzzKEK(f *testing.F) {
	f.Add("q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng=")
	f.Add("q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng")
	f.Add("q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng_-")
	f.Add(strings.Repeat("0f", 32))
	f.Add(strings.Repeat("0f", 31))
	f.Add(" \n" + strings.Repeat("ab", 32) + "\n")
	f.Add("short")
	f.Fuzz(func(t *testing.T, v string) {
		var c config.Config
		kek, err := c.KEK(func(k string) string {
			if k == config.EnvKEK {
				return v
			}
			return ""
		})
		switch {
		case v == "":
			if kek != nil || err != nil {
				t.Fatalf("unset KEK gave %x, %v", kek, err)
			}
		case err != nil:
			if kek != nil || !strings.HasPrefix(err.Error(), config.EnvKEK+":") {
				t.Fatalf("error %q with key %x", err, kek)
			}
			if tv := strings.TrimSpace(v); len(tv) >= 8 && strings.Contains(err.Error(), tv) {
				t.Fatalf("error quotes the secret: %q", err)
			}
		case len(kek) != 32:
			t.Fatalf("KEK of %d bytes", len(kek))
		}
	})
}

// roundTrip checks that Marshal writes c as a file Parse reads back into the same Config.
func roundTrip(t *testing.T, c *config.Config, getenv func(string) string) {
	t.Helper()
	b, err := config.Marshal(c)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	again, err := config.Parse(bytes.NewReader(b), getenv)
	if err != nil {
		t.Fatalf("Parse refused what Marshal wrote: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(c, again) {
		t.Fatalf("round trip changed the configuration:\n before %+v\n after  %+v\nfile:\n%s", c, again, b)
	}
}
