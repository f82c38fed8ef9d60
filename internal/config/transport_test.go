package config

import (
	"strconv"
	"strings"
	"testing"
)

// withUpstream parses base with upstream.issuer replaced and extra lines added to upstream.
func withUpstream(t *testing.T, issuer, extra string) (*Config, error) {
	t.Helper()
	y := strings.Replace(base, "  issuer: https://kc.test/realms/demo\n", "  issuer: "+issuer+"\n"+extra, 1)
	return Parse(strings.NewReader(y), func(string) string { return "" })
}

func hasWarning(c *Config, parts ...string) bool {
	for _, w := range c.Warnings() {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(w, p)
		}
		if all {
			return true
		}
	}
	return false
}

// TestUpstream_PlainHTTPIssuer: an http upstream.issuer on a host that is not a loopback address
// is refused unless upstream.insecure_http is true, which is accepted with a warning; a
// loopback http issuer (the demo, the tests) is accepted with a warning of its own.
func TestUpstream_PlainHTTPIssuer(t *testing.T) {
	for _, iss := range []string{"http://kc.test/realms/demo", "http://10.0.0.5:8080/realms/demo", "http://localhost:8080/realms/demo",
		"HTTP://kc.test/realms/demo"} {
		if _, err := withUpstream(t, iss, ""); err == nil || !strings.Contains(err.Error(), "upstream.issuer:") ||
			!strings.Contains(err.Error(), "upstream.insecure_http") {
			t.Errorf("%s: err = %v, want a refusal naming upstream.issuer and upstream.insecure_http", iss, err)
		}
	}
	c, err := withUpstream(t, "http://kc.test/realms/demo", "  insecure_http: true\n")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Upstream.InsecureHTTP || !hasWarning(c, "upstream.insecure_http is true") {
		t.Errorf("insecure_http: %v, warnings %q; want true and a warning naming it", c.Upstream.InsecureHTTP, c.Warnings())
	}
	for _, iss := range []string{"http://127.0.0.1:18080/realms/demo", "http://[::1]:18080/realms/demo", "http://127.0.0.2/realms/demo"} {
		c, err := withUpstream(t, iss, "")
		if err != nil {
			t.Fatalf("%s: %v", iss, err)
		}
		if !hasWarning(c, "upstream.issuer", "plain http", "loopback") {
			t.Errorf("%s: warnings %q, want one about plain http on loopback", iss, c.Warnings())
		}
	}
	if c, err := withUpstream(t, "https://kc.test/realms/demo", ""); err != nil || len(c.Warnings()) != 0 {
		t.Errorf("https issuer: err %v, warnings %v", err, c.Warnings())
	}
}

// TestSharedSignals_AllowedOrigins: entries are origins (scheme://host[:port], nothing else);
// a plain http one off loopback needs upstream.insecure_http as the issuer does.
func TestSharedSignals_AllowedOrigins(t *testing.T) {
	ok := "    enabled: true\n    client_id: tokengate-signals\n    client_secret: x\n"
	c, err := parseSignals(t, ok+"    allowed_origins: [https://kc-backchannel.internal:8443, https://keys.example, http://127.0.0.1:18080]\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Upstream.SharedSignals.AllowedOrigins; len(got) != 3 || got[0] != "https://kc-backchannel.internal:8443" {
		t.Errorf("allowed_origins = %q", got)
	}
	for name, entry := range map[string]string{
		"a path":            "https://kc.example/realms/demo",
		"no scheme":         "kc.example",
		"another scheme":    "ftp://kc.example",
		"user info":         "https://user:pw@kc.example",
		"a query":           "https://kc.example?x=1",
		"a fragment":        "https://kc.example#x",
		"no host":           "https://",
		"a wildcard":        "https://*.example",
		"empty":             `""`,
		"http off loopback": "http://kc.example",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseSignals(t, ok+"    allowed_origins: [https://keys.example, "+strconv.Quote(entry)+"]\n", nil)
			if err == nil || !strings.Contains(err.Error(), "upstream.shared_signals.allowed_origins[1]:") {
				t.Errorf("error = %v, want one naming upstream.shared_signals.allowed_origins[1]", err)
			}
		})
	}
	y := strings.Replace(base, "  logout_audiences: [bff]\n", "  logout_audiences: [bff]\n  insecure_http: true\n  shared_signals:\n"+ok+
		"    allowed_origins: [http://kc.example]\n", 1)
	if _, err := Parse(strings.NewReader(y), func(string) string { return "" }); err != nil {
		t.Errorf("http origin with upstream.insecure_http: %v", err)
	}
}
