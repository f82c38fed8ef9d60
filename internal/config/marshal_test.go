package config_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/config"
)

// everyField sets every field of the file to something other than its default, so a field
// that Marshal would drop or misspell fails the round trip.
var everyField = validConfig + `trusted_proxies: [10.0.0.0/8, 192.0.2.1]
tls: {cert_file: /etc/tokengate/tls.crt, key_file: /etc/tokengate/tls.key}
limits:
  token: {rate: 1000000, burst: 1000000}
  logout: {rate: 0.5, burst: 3}
  auth_failures: {rate: 0.2, burst: 20}
  caches: {recheck_schedule: 2000000, introspection: 50000, refresh_tokens: 1024}
shutdown_grace: 3s
store:
  backend: etcd
  max_staleness: 2s
  write_timeout: 500ms
  etcd:
    endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379]
    prefix: /tg/
    dial_timeout: 3s
    election_ttl: 7s
    cert_file: /etc/tokengate/etcd.crt
    key_file: /etc/tokengate/etcd.key
    ca_file: /etc/tokengate/etcd-ca.crt
    username: tokengate
    password: "yes"
ssf:
  poll_timeout: 10s
  retention: 1h30m
  inactivity_timeout: 15m
  streams:
    - {id: orders, audience: orders-api, secret_sha256: ` + strings.Repeat("cd", 32) + `, description: "the orders service: 'null'"}
  receivers:
    - {id: payments, audience: payments, secret_sha256: ` + strings.Repeat("ef", 32) + `}
tracing:
  otlp_endpoint: https://otel.internal:4318/v1/traces
  sample_ratio: 0.25
  follow_traceparent: false
`

func TestMarshal_RoundTrip(t *testing.T) {
	everything := strings.Replace(everyField, "  timeout: 5s\n", "  timeout: 5s\n  forward_logout_to: [https://bff.internal/backchannel-logout]\n"+
		"  insecure_http: true\n  shared_signals:\n    enabled: true\n    client_id: tokengate-signals\n    client_secret: x\n"+
		"    events: [session-revoked, credential-change]\n    poll_interval: 5s\n"+
		"    allowed_origins: [https://kc-backchannel.internal:8443, http://kc.internal]\n", 1)
	delegation := validConfig + "  - {id: orders, secret_sha256: " + strings.Repeat("12", 32) + ", delegate_to: [payments]}\n" +
		"  - {id: payments, secret_sha256: " + strings.Repeat("34", 32) + ", audiences: [reports], delegate_to: [ledger, \"https://ledger.internal\"], " +
		"max_delegation_depth: 5, service_audience: https://payments.internal}\n"
	for name, file := range map[string]string{"reference": validConfig, "every field": everything, "delegation": delegation} {
		t.Run(name, func(t *testing.T) {
			getenv := func(string) string { return "" }
			c, err := config.Parse(strings.NewReader(file), getenv)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, c, getenv)
		})
	}
	c, err := config.Parse(strings.NewReader(everything), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Etcd.Password != "yes" || c.SSF.Streams[0].Description != "the orders service: 'null'" ||
		len(c.Upstream.ForwardLogoutTo) != 1 || c.Limits.Logout.Rate != 0.5 || !c.Upstream.InsecureHTTP ||
		len(c.Upstream.SharedSignals.AllowedOrigins) != 2 || c.Tracing.SampleRatio != 0.25 ||
		c.Tracing.FollowsTraceparent() {
		t.Fatalf("test bug: the file did not set what it means to: %+v", c)
	}
}

// TestMarshal_LeavesDefaultsOut: a Config with only the required fields marshals to a short
// file, and Parse gives the rest their defaults.
func TestMarshal_LeavesDefaultsOut(t *testing.T) {
	c := &config.Config{
		Listen: "127.0.0.1:8443", Issuer: "https://tokengate.test", DataDir: "/tmp/x",
		Upstream: config.Upstream{Issuer: "https://kc.test/realms/demo", ClientID: "tokengate", ClientSecret: "s",
			LogoutAudiences: []string{"bff"}},
		Clients: []config.Client{{ID: "bff", SecretSHA256: strings.Repeat("ab", 32), Audiences: []string{"api"}}},
	}
	b, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"tls", "store", "limits", "ssf", "admin", "keys", "tokens", "0s"} {
		if bytes.Contains(b, []byte(absent)) {
			t.Errorf("the file names %q, which was not set:\n%s", absent, b)
		}
	}
	got, err := config.Parse(bytes.NewReader(b), func(string) string { return "" })
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if got.Tokens.TTL.D().String() != "30s" || got.AdminListen != "127.0.0.1:9090" || got.Store.Backend != config.BackendBolt {
		t.Fatalf("defaults not applied: %+v", got)
	}
}
