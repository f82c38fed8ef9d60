package app_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
)

func TestRateLimits_429WithRetryAfterAndNoStateChange(t *testing.T) {
	s := newStackOpts(t, stackOptions{configure: func(c *config.Config) {
		c.Limits = config.Limits{
			Token:        &config.Limit{Rate: 0.5, Burst: 3},
			Logout:       &config.Limit{Rate: 0.5, Burst: 2},
			AuthFailures: &config.Limit{Rate: 0.1, Burst: 2},
		}
	}})
	m := s.app.Metrics()
	r := s.mustExchange("kim", "sid-rl") // 1 of the client's 3
	for range 2 {
		if rn := s.renew(r.str("refresh_token")); rn.Status != 200 {
			t.Fatalf("within the burst: %d %s", rn.Status, rn.Raw)
		}
	}
	rn := s.renew(r.str("refresh_token"))
	if rn.Status != http.StatusTooManyRequests || rn.Header.Get("Retry-After") != "2" || rn.str("error") != "temporarily_unavailable" {
		t.Errorf("over the client's budget: %d %q %s", rn.Status, rn.Header.Get("Retry-After"), rn.Raw)
	}
	// Another client has its own bucket.
	if o := s.post("/token", "other", otherSecret, exchangeForm(s.realm.AccessToken(kctest.Token{AZP: "other"}))); o.Status != 200 {
		t.Errorf("another client: %d %s", o.Status, o.Raw)
	}
	// Failed authentications: two answered 401, then the source's next failure is 429; good
	// credentials from that source are still served.
	for i := range 2 {
		if f := s.post("/token", "bff", "wrong-secret-0123456789-0123456789-x", exchangeForm("x")); f.Status != 401 {
			t.Fatalf("failure %d: %d", i, f.Status)
		}
	}
	if f := s.post("/token", "bff", "wrong-secret-0123456789-0123456789-x", exchangeForm("x")); f.Status != http.StatusTooManyRequests ||
		f.Header.Get("Retry-After") != "10" || f.str("error") != "temporarily_unavailable" {
		t.Errorf("a failure over the source's budget: %d %q %s", f.Status, f.Header.Get("Retry-After"), f.Raw)
	}
	if o := s.post("/token", "other", otherSecret, exchangeForm(s.realm.AccessToken(kctest.Token{AZP: "other"}))); o.Status != 200 {
		t.Errorf("good credentials from a source over its failure budget: %d %s", o.Status, o.Raw)
	}
	// Refused logouts per source: two refusals (400), then 429; a valid logout from the same
	// source is still recorded.
	for i := range 2 {
		if lo := s.logout("junk-" + string(rune('a'+i))); lo.Status != http.StatusBadRequest {
			t.Fatalf("junk logout %d: %d %s", i, lo.Status, lo.Raw)
		}
	}
	if lo := s.logout("junk-z"); lo.Status != http.StatusTooManyRequests || lo.Header.Get("Retry-After") == "" {
		t.Errorf("refused logout over budget: %d %s", lo.Status, lo.Raw)
	}
	if lo := s.logout(s.realm.LogoutToken("kim", "sid-lz")); lo.Status != http.StatusOK {
		t.Errorf("valid logout after the source's refusal budget is spent: %d %s", lo.Status, lo.Raw)
	}
	if _, err := s.store.SessionRevocation(t.Context(), "sid-lz"); err != nil {
		t.Errorf("the valid logout was not recorded: %v", err)
	}
	for _, l := range []string{"token_per_client", "auth_failures_per_source", "logout_per_source"} {
		if v := testutil.ToFloat64(m.RateLimited.WithLabelValues(l)); v < 1 {
			t.Errorf("tokengate_rate_limited_total{limiter=%q} = %v", l, v)
		}
	}
}

// TestAuthFailures_CostTheFailerNotTheCaller: limits.auth_failures counts failed credentials
// per source address and refuses the source's next failures with 429 (and Retry-After), in the
// endpoint's error shape; it never refuses a caller whose credentials are good. 1,000 wrong
// secrets from the BFF's and the services' address (a NAT, a proxy) at /token, /revoke and the
// Shared Signals endpoints; then the BFF renews, exchanges and revokes, the service polls, and
// the receiver creates, reads and deletes its stream, all from that address.
func TestAuthFailures_CostTheFailerNotTheCaller(t *testing.T) {
	s := newStackOpts(t, stackOptions{configure: func(c *config.Config) {
		c.Limits.AuthFailures = &config.Limit{Rate: 0.2, Burst: 20} // the default
	}})
	m := s.app.Metrics()
	r := s.mustExchange("kim", "sid-af1")
	victim := s.mustExchange("lea", "sid-af2")
	bearer := func(method, path, secret, body string) response {
		req, _ := http.NewRequest(method, s.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+secret)
		return s.do(req)
	}
	wrong := "wrong-secret-0123456789-0123456789-"
	statuses := map[int]int{}
	for i := range 1000 {
		w := wrong + strconv.Itoa(i)
		var a response
		switch i % 6 {
		case 0:
			a = s.post("/token", "bff", w, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}})
		case 1:
			a = s.post("/revoke", "bff", w, url.Values{"token": {victim.str("refresh_token")}})
		case 2:
			a = bearer(http.MethodPost, "/ssf/poll/orders", w, `{"returnImmediately":true}`)
		case 3:
			a = bearer(http.MethodPost, "/ssf/poll/no-such-stream-"+strconv.Itoa(i), w, `{"returnImmediately":true}`)
		case 4:
			a = bearer(http.MethodGet, "/ssf/streams", w, "")
		default:
			a = bearer(http.MethodPost, "/ssf/streams", w, `{}`)
		}
		statuses[a.Status]++
	}
	if statuses[http.StatusUnauthorized] < 20 || statuses[http.StatusUnauthorized] > 22 || statuses[http.StatusTooManyRequests] < 978 {
		t.Fatalf("1,000 wrong secrets answered %v, want about 20 × 401, then 429", statuses)
	}

	for i := range 5 {
		if rn := s.renew(r.str("refresh_token")); rn.Status != http.StatusOK {
			t.Fatalf("the BFF's renewal %d: %d %s", i, rn.Status, rn.Raw)
		}
	}
	s.mustExchange("max", "sid-af3")
	if rv := s.post("/revoke", "bff", bffSecret, url.Values{"token": {victim.str("refresh_token")}}); rv.Status != http.StatusOK {
		t.Fatalf("the BFF's revocation: %d %s", rv.Status, rv.Raw)
	}
	if rn := s.renew(victim.str("refresh_token")); rn.Status != http.StatusBadRequest {
		t.Fatalf("renewal of the session the BFF revoked: %d %s", rn.Status, rn.Raw)
	}
	if a := bearer(http.MethodPost, "/ssf/poll/orders", ordersSecret, `{"returnImmediately":true}`); a.Status != http.StatusOK {
		t.Fatalf("the service's poll: %d %s", a.Status, a.Raw)
	}
	if a := bearer(http.MethodGet, "/ssf/streams", ordersSecret, ""); a.Status != http.StatusOK {
		t.Fatalf("the service's stream configuration: %d %s", a.Status, a.Raw)
	}
	created := bearer(http.MethodPost, "/ssf/streams", receiverSecret, `{"delivery":{"method":"urn:ietf:rfc:8936"}}`)
	if created.Status != http.StatusCreated {
		t.Fatalf("the receiver's new stream: %d %s", created.Status, created.Raw)
	}
	id := created.str("stream_id")
	if a := bearer(http.MethodGet, "/ssf/streams?stream_id="+id, receiverSecret, ""); a.Status != http.StatusOK {
		t.Fatalf("the receiver's stream by id: %d %s", a.Status, a.Raw)
	}
	if a := bearer(http.MethodPost, "/ssf/poll/"+id, receiverSecret, `{"returnImmediately":true}`); a.Status != http.StatusOK {
		t.Fatalf("the receiver's poll: %d %s", a.Status, a.Raw)
	}
	if a := bearer(http.MethodDelete, "/ssf/streams?stream_id="+id, receiverSecret, ""); a.Status != http.StatusNoContent {
		t.Fatalf("the receiver's stream deletion: %d %s", a.Status, a.Raw)
	}

	// The attacker's next wrong secret is still refused, in each endpoint's error shape.
	f := s.post("/token", "bff", wrong+"next", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}})
	if f.Status != http.StatusTooManyRequests || f.Header.Get("Retry-After") != "5" || f.str("error") != "temporarily_unavailable" {
		t.Errorf("the next wrong secret at /token: %d %q %s", f.Status, f.Header.Get("Retry-After"), f.Raw)
	}
	if f := s.post("/token", "", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}); f.Status != http.StatusTooManyRequests {
		t.Errorf("no credentials at all from the spent source: %d %s", f.Status, f.Raw)
	}
	for _, path := range []string{"/ssf/poll/orders", "/ssf/poll/no-such-stream"} {
		a := bearer(http.MethodPost, path, wrong+"next", `{"returnImmediately":true}`)
		if a.Status != http.StatusTooManyRequests || a.Header.Get("Retry-After") != "5" || a.str("err") != "temporarily_unavailable" {
			t.Errorf("the next wrong secret at %s: %d %q %s", path, a.Status, a.Header.Get("Retry-After"), a.Raw)
		}
	}
	if v := testutil.ToFloat64(m.RateLimited.WithLabelValues("auth_failures_per_source")); v < 978 {
		t.Errorf("tokengate_rate_limited_total{limiter=\"auth_failures_per_source\"} = %v", v)
	}
}

func TestMetrics_CountWhatHappened(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newStackOpts(t, stackOptions{registry: reg})
	tok := s.realm.AccessToken(kctest.Token{SID: "sid-m", Subject: "lee"})
	r := s.exchange(tok)
	s.exchange(tok)
	s.renew(r.str("refresh_token"))
	s.logout(s.realm.LogoutToken("lee", "sid-m"))
	s.renew(r.str("refresh_token"))
	s.post("/token", "bff", bffSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"junk"}})
	s.logout("junk")
	want := map[string]float64{
		`tokengate_exchanges_total{reason="",result="ok"}`:                                2,
		`tokengate_introspection_cache_total{result="hit"}`:                               1,
		`tokengate_introspection_cache_total{result="miss"}`:                              1,
		`tokengate_renewals_total{reason="",result="ok"}`:                                 1,
		`tokengate_renewals_total{reason="logged_out",result="refused"}`:                  1,
		`tokengate_renewals_total{reason="malformed",result="refused"}`:                   1,
		`tokengate_logouts_total{reason="",result="recorded",source="backchannel"}`:       1,
		`tokengate_logouts_total{reason="invalid",result="refused",source="backchannel"}`: 1,
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			var labels []string
			for _, lp := range mm.GetLabel() {
				labels = append(labels, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			if c := mm.GetCounter(); c != nil {
				got[key] = c.GetValue()
			}
			if h := mm.GetHistogram(); h != nil {
				got[key] = float64(h.GetSampleCount())
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if got[`tokengate_introspection_duration_seconds{outcome="active"}`] != 1 {
		t.Errorf("introspection histogram: %v", got)
	}
}
