package app_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/kctest"
)

// clockOffset is tokengate_upstream_clock_offset_seconds as /metrics would serve it.
func clockOffset(t *testing.T, reg *prometheus.Registry) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "tokengate_upstream_clock_offset_seconds" {
			return mf.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// A replica whose clock is 30 s ahead of Keycloak's says so: the gauge reads about -30 from
// the Date of Keycloak's introspection answers, one WARN is logged however many answers come,
// and nothing is refused (exchanges 200, /readyz 200). A client's own Date header (here, year
// 1970 on every request to tokengate) is never measured: only Keycloak's answers are.
func TestUpstreamClockOffset_FromKeycloaksAnswersOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newStackOpts(t, stackOptions{registry: reg})
	s.clock.Advance(30 * time.Second)
	for i := range 3 {
		tok := s.realm.AccessToken(kctest.Token{Subject: "kim", SID: "sid-clock-" + string(rune('a'+i)), IssuedAt: time.Now()})
		req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/token", strings.NewReader(exchangeForm(tok).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Date", "Thu, 01 Jan 1970 00:00:00 GMT")
		req.SetBasicAuth("bff", bffSecret)
		if r := s.do(req); r.Status != http.StatusOK {
			t.Fatalf("exchange with this clock 30 s ahead: %d %s (an offset must never refuse load)", r.Status, r.Raw)
		}
	}
	off, ok := clockOffset(t, reg)
	if !ok || off < -31.5 || off > -28.5 {
		t.Fatalf("tokengate_upstream_clock_offset_seconds = %v (exported %v), want about -30", off, ok)
	}
	ready, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/readyz", nil)
	if r := s.do(ready); r.Status != http.StatusOK {
		t.Fatalf("/readyz %d with the clock 30 s off: readiness must not depend on it", r.Status)
	}
	if n := strings.Count(s.logs.String(), `"event":"upstream_clock_offset"`); n != 1 {
		t.Fatalf("%d upstream_clock_offset log lines, want 1:\n%s", n, s.logs.String())
	}
	if !strings.Contains(s.logs.String(), `"level":"WARN","msg":"this clock is ahead of Keycloak's`) {
		t.Fatalf("no WARN naming the side:\n%s", s.logs.String())
	}
}
