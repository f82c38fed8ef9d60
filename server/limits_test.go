package server_test

import (
	"net/http"
	"net/url"
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
	// Failed authentications: two allowed, then the source is refused before its credentials are checked.
	for i := range 2 {
		if f := s.post("/token", "bff", "wrong-secret-0123456789-0123456789-x", exchangeForm("x")); f.Status != 401 {
			t.Fatalf("failure %d: %d", i, f.Status)
		}
	}
	if f := s.post("/token", "other", otherSecret, exchangeForm("x")); f.Status != http.StatusTooManyRequests {
		t.Errorf("after the failure budget, even good credentials from that source wait: %d %s", f.Status, f.Raw)
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
