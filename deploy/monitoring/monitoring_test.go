// Package monitoring holds the Prometheus alert rules and Grafana dashboard for tokengate; its
// test checks that every metric they query is one tokengate exports.
package monitoring

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gopkg.in/yaml.v3"

	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/upstream/signals"
)

// noSignalsState lets a Shared Signals receiver be built (never run) for its metrics.
type noSignalsState struct{}

func (noSignalsState) ReceiverStream(context.Context) ([]byte, error)  { return nil, store.ErrNotFound }
func (noSignalsState) PutReceiverStream(context.Context, []byte) error { return nil }
func (noSignalsState) RecordUpstreamSET(context.Context, store.Claim, store.Revocation) (bool, error) {
	return true, nil
}

// exported lists every metric family name tokengate's /metrics can serve.
func exported(t *testing.T) map[string]bool {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	metrics.KeyAge(reg, time.Now)
	metrics.PendingRevocations(reg, func() int { return 0 })
	metrics.UpstreamClockOffset(reg, func() (time.Duration, bool) { return 0, true })
	// Touch every vector so it appears in Gather.
	m.Exchange("ok", "")
	m.Renewal("ok", "")
	m.Logout("backchannel", "recorded", "")
	m.Introspection("active", time.Millisecond)
	m.CacheLookup(true)
	m.Limited("token_per_client")
	m.Request("/token", 200, time.Millisecond)
	m.StoreCommitTime.WithLabelValues("revoke_session").Observe(0.001)
	m.RevocationRecords.WithLabelValues("sessions").Set(0)
	if _, err := signals.New(signals.Config{Issuer: "https://kc.test/realms/demo", ClientID: "c", ClientSecret: "s",
		Registerer: reg}, noSignalsState{}, noSignalsState{}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		n := mf.GetName()
		out[n] = true
		if mf.GetType().String() == "HISTOGRAM" {
			out[n+"_bucket"], out[n+"_count"], out[n+"_sum"] = true, true, true
		}
	}
	return out
}

var metricName = regexp.MustCompile(`\b(tokengate_[a-z_]+|go_[a-z_]+|process_[a-z_]+)\b`)

func checkExpr(t *testing.T, where, expr string, have map[string]bool) {
	names := metricName.FindAllString(expr, -1)
	if len(names) == 0 {
		t.Errorf("%s: no metric in %q", where, expr)
	}
	for _, n := range names {
		if !have[n] {
			t.Errorf("%s: %s is not exported by tokengate", where, n)
		}
	}
}

func TestAlertRulesQueryExportedMetrics(t *testing.T) {
	have := exported(t)
	raw, err := os.ReadFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytesReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v lacks alert, severity or summary", r)
			}
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q", r.Alert, r.For)
			}
			checkExpr(t, r.Alert, r.Expr, have)
		}
	}
	if n < 5 {
		t.Errorf("%d rules", n)
	}
}

func TestDashboardQueriesExportedMetrics(t *testing.T) {
	have := exported(t)
	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || len(d.Panels) < 8 {
		t.Fatalf("dashboard %q with %d panels", d.Title, len(d.Panels))
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			checkExpr(t, p.Title, tg.Expr, have)
		}
	}
}
