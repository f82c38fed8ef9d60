package signals_test

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/internal/testwait"
	"github.com/tokengate/tokengate/internal/upstream/signals"
)

// TestReceiver_RefusesEndpointsOffTheIssuersOrigin: the receiver sends its client credentials
// to the token endpoint and its bearer token to the configuration, verification and poll
// endpoints, and trusts the keys at jwks_uri. Each must be on the issuer's origin (scheme,
// host, port): one elsewhere makes the receiver refuse the transmitter (a log line naming the
// field, the stream not used) and nothing is sent there.
func TestReceiver_RefusesEndpointsOffTheIssuersOrigin(t *testing.T) {
	for _, tc := range []struct {
		name, field string
		event       string // the log line that reports the refusal (default signals_down)
		tls         bool
		set         func(tx *transmitter)
	}{
		{name: "jwks_uri on another host", field: "jwks_uri",
			set: func(tx *transmitter) { tx.md = mdAt("jwks_uri", otherHost(tx)+"/realms/demo/certs") }},
		{name: "configuration_endpoint on another host", field: "configuration_endpoint",
			set: func(tx *transmitter) {
				tx.md = mdAt("configuration_endpoint", otherHost(tx)+"/realms/demo/ssf/streams")
			}},
		{name: "verification_endpoint on another host", field: "verification_endpoint",
			set: func(tx *transmitter) { tx.md = mdAt("verification_endpoint", otherHost(tx)+"/realms/demo/ssf/verify") }},
		{name: "token_endpoint on another host", field: "token_endpoint",
			set: func(tx *transmitter) { tx.tokenEndpoint = otherHost(tx) + "/realms/demo/token" }},
		{name: "stream endpoint_url on another host", field: "endpoint_url",
			set: func(tx *transmitter) { tx.pollBase = otherHost(tx) + "/realms/demo/ssf/poll/" }},
		{name: "jwks_uri on another port", field: "jwks_uri",
			set: func(tx *transmitter) { tx.md = mdAt("jwks_uri", "http://127.0.0.1:1/realms/demo/certs") }},
		{name: "jwks_uri on another scheme (https issuer, http keys)", field: "jwks_uri", tls: true,
			set: func(tx *transmitter) { tx.md = mdAt("jwks_uri", "http://"+tx.hostPort()+"/realms/demo/certs") }},
		{name: "jwks_uri redirected to another host", field: "redirect", event: "keys cannot be fetched",
			set: func(tx *transmitter) {
				tx.md = mdAt("jwks_uri", tx.issuer()+"/redirect/certs?to="+url.QueryEscape(otherHost(tx)+"/realms/demo/certs"))
			}},
		{name: "poll redirected to another host", field: "redirect",
			set: func(tx *transmitter) {
				tx.pollBase = tx.issuer() + "/redirect/poll?to=" + url.QueryEscape(otherHost(tx)+"/realms/demo/ssf/poll/") + "&id="
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := newTransmitter(t)
			if tc.tls {
				tx = newTransmitterTLS(t)
			}
			tc.set(tx)
			f := startWith(t, tx, nil, func(c *signals.Config) { c.HTTPClient = tx.client() })
			if tc.event == "" {
				tc.event = `"event":"signals_down"`
			}
			testwait.Eventually(t, wait, "the receiver refuses the transmitter", func() bool {
				for _, l := range strings.Split(f.logs.String(), "\n") {
					if strings.Contains(l, tc.event) && strings.Contains(l, tc.field) && strings.Contains(l, "origin") {
						return true
					}
				}
				return false
			})
			stream := tx.Stream()
			if stream != "" {
				tx.Enqueue(tx.SET(stream, "caep/event-type/session-revoked", map[string]any{},
					sessionSubject(tx.issuer(), "alice", "sid-1")))
			}
			time.Sleep(100 * time.Millisecond) // the receiver retries with backoff: it must stay refused
			if f.rcv.Verified() || len(f.rec.recorded()) > 0 {
				t.Errorf("the stream was used: verified %v, recorded %v", f.rcv.Verified(), f.rec.recorded())
			}
			for _, r := range tx.Requests() {
				if r.host != tx.hostPort() {
					t.Errorf("a request went to another origin: %+v", r)
				}
			}
		})
	}
}

// otherHost is an origin other than the issuer's that tx.client() still reaches (127.0.0.2 is
// loopback, so plain http to it passes the transport rule: only the origin rule refuses it).
func otherHost(tx *transmitter) string {
	_, port, _ := strings.Cut(tx.hostPort(), ":")
	return "http://127.0.0.2:" + port
}

func newStore(t *testing.T) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func mdAt(field, u string) func(map[string]any) {
	return func(md map[string]any) { md[field] = u }
}

// TestReceiver_AllowedOriginsAdmitEndpointsElsewhere: an origin listed in AllowedOrigins
// (upstream.shared_signals.allowed_origins, e.g. Keycloak's back-channel hostname) may serve
// the keys, the token endpoint and the poll URL; SETs verify and logouts are recorded.
func TestReceiver_AllowedOriginsAdmitEndpointsElsewhere(t *testing.T) {
	tx := newTransmitter(t)
	other := otherHost(tx)
	tx.md = mdAt("jwks_uri", other+"/realms/demo/certs")
	tx.tokenEndpoint = other + "/realms/demo/token"
	tx.pollBase = other + "/realms/demo/ssf/poll/"
	f := startWith(t, tx, nil, func(c *signals.Config) {
		c.HTTPClient = tx.client()
		c.AllowedOrigins = []string{strings.ToUpper(other) + "/"} // compared as origins
	})
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	jti := tx.Enqueue(tx.SET(tx.Stream(), "caep/event-type/session-revoked", map[string]any{},
		sessionSubject(tx.issuer(), "alice", "sid-1")))
	testwait.Eventually(t, wait, "the SET is acknowledged", func() bool { acked, _, _ := tx.Outcome(jti); return acked })
	if got := f.rec.recorded(); len(got) != 1 || got[0].SID != "sid-1" {
		t.Fatalf("recorded %+v", got)
	}
	otherSeen := false
	for _, r := range tx.Requests() {
		otherSeen = otherSeen || strings.HasPrefix(other, "http://"+r.host)
	}
	if !otherSeen {
		t.Fatal("test bug: nothing was asked of the allowed origin")
	}
}

// TestReceiver_PlainHTTPOffLoopbackNeedsInsecureHTTP: a transmitter on plain http at a host
// that is not a loopback address is refused by New unless InsecureHTTP
// (upstream.insecure_http) is set; then it is followed. An allowed origin is held to the same
// rule, and must be an origin.
func TestReceiver_PlainHTTPOffLoopbackNeedsInsecureHTTP(t *testing.T) {
	st := newStore(t)
	cfg := signals.Config{Issuer: "http://kc.example/realms/demo", ClientID: clientID, ClientSecret: clientSecret}
	if _, err := signals.New(cfg, st, &recorder{st: st}); err == nil || !strings.Contains(err.Error(), "insecure_http") {
		t.Errorf("http issuer off loopback: err = %v, want a refusal naming insecure_http", err)
	}
	for _, o := range []string{"http://keys.example", "https://keys.example/realms/demo", "keys.example", "https://u:p@keys.example",
		"https://keys.example?x", "ftp://keys.example", ""} {
		cfg := signals.Config{Issuer: "https://kc.example/realms/demo", ClientID: clientID, ClientSecret: clientSecret,
			AllowedOrigins: []string{o}}
		if _, err := signals.New(cfg, st, &recorder{st: st}); err == nil {
			t.Errorf("allowed origin %q was accepted", o)
		}
	}

	tx := newTransmitter(t)
	tx.base = "http://kc.example"
	f := startWith(t, tx, nil, func(c *signals.Config) { c.HTTPClient, c.InsecureHTTP = tx.client(), true })
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
}
