package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPublish_InsertsAfterBenchCoreThenReplacesBetweenMarkers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "performance.md")
	orig := "# x\n\n## Performance\n\n<!-- bench-core -->\ncore table\n<!-- /bench-core -->\n\n## Next\n"
	if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := publish(path, "first run\n"); err != nil {
		t.Fatal(err)
	}
	if err := publish(path, "second run\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	for _, want := range []string{"core table\n<!-- /bench-core -->\n", "second run\n<!-- /bench -->", "## Next\n"} {
		if !strings.Contains(got, want) {
			t.Fatalf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "first run") || strings.Count(got, "<!-- bench -->") != 1 {
		t.Fatalf("section not replaced exactly once:\n%s", got)
	}
	if strings.Index(got, "<!-- /bench-core -->") > strings.Index(got, "<!-- bench -->") || strings.Index(got, "<!-- bench -->") > strings.Index(got, "## Next") {
		t.Fatalf("section not between bench-core and the next heading:\n%s", got)
	}
}

func TestPublish_ProseQuotingTheMarkersIsNotAMarker(t *testing.T) {
	path := filepath.Join(t.TempDir(), "performance.md")
	orig := "# x\n\n`make bench` rewrites the block between the `<!-- bench -->` markers.\n\n" +
		"<!-- bench-core -->\ncore table\n<!-- /bench-core -->\n\n<!-- bench -->\nold run\n<!-- /bench -->\n\n## Next\n"
	if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := publish(path, "new run\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	for _, want := range []string{"between the `<!-- bench -->` markers.\n", "core table\n", "new run\n<!-- /bench -->\n\n## Next\n"} {
		if !strings.Contains(got, want) {
			t.Fatalf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old run") {
		t.Fatalf("old section kept:\n%s", got)
	}
}

func TestPercentile_NearestRank(t *testing.T) {
	xs := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[float64]float64{50: 5, 99: 10, 100: 10, 10: 1, 0: 1} {
		if got := percentile(xs, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("empty")
	}
}

func TestEvaluate_MissedTargetsAreReported(t *testing.T) {
	r := &Results{
		Introspect1: Dist{P50us: 5000}, Verify: Dist{P50us: 100},
		ExchangeColdOverhead: Dist{N: 10, P99us: 1500}, ExchangeWarmServer: Dist{N: 10, P50us: 80},
		Renewal: Dist{PerSecond: 4000}, RawSign: Dist{PerSecond: 10000}, RenewalPerCPUSecond: 4000, RawSignPerCPUSecond: 10000,
		Revocation: Dist{N: 200, P99us: 900},
	}
	r.evaluate()
	got := map[string]bool{}
	for _, tg := range r.Targets {
		got[tg.ID] = tg.Met
	}
	want := map[string]bool{"2": false, "3-cold": false, "3-warm": true, "4": false, "5": true}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("target %s met=%v, want %v", id, got[id], w)
		}
	}
	if md := r.Markdown(""); !strings.Contains(md, "Targets missed") {
		t.Error("markdown does not list missed targets")
	}
}

func TestCumSeconds_ReadsPprofTop(t *testing.T) {
	top := `      flat  flat%   sum%        cum   cum%
         0     0%     0%      6.77s 67.90%  github.com/tokengate/tokengate/server.(*Server).token
         0     0%   0.1%      310ms 31.80%  github.com/tokengate/tokengate/upstream.(*Client).VerifyAccessToken
`
	if got := cumSeconds(top, "github.com/tokengate/tokengate/server.(*Server).token"); got != 6.77 {
		t.Errorf("token = %v", got)
	}
	if got := cumSeconds(top, fnVerifyUpstream); got < 0.3099 || got > 0.3101 {
		t.Errorf("verify = %v", got)
	}
	if got := cumSeconds(top, "absent"); got != 0 {
		t.Errorf("absent = %v", got)
	}
}

// TestDelegationRow: row 4d appears only when delegation was measured, with the extra server CPU
// against a renewal in raw verifications, and -only delegation renders rows 4 and 4d.
func TestDelegationRow(t *testing.T) {
	r := &Results{Mode: "full"}
	r.RawVerify = Dist{P50us: 80}
	r.RenewalPerCPUSecond, r.RawSignPerCPUSecond = 5000, 25000 // 200 µs per renewal
	r.evaluate()
	if md := r.Markdown(""); strings.Contains(md, "| 4d |") {
		t.Fatalf("row 4d without a delegation run:\n%s", md)
	}
	r.Delegation = Dist{N: 100, Concurrency: 16, PerSecond: 900, P50us: 1000, P99us: 2000}
	r.DelegationPerCPUSecond = 1e6 / 260 // 60 µs more than a renewal: under one verification
	r.evaluate()
	if tg := r.target("4d"); !tg.Met || !strings.Contains(tg.Value, "+60.0 µs (0.8×") {
		t.Fatalf("target 4d: %+v", tg)
	}
	r.DelegationPerCPUSecond = 1e6 / 400 // 200 µs more: 2.5 verifications
	r.evaluate()
	md := r.onlyMarkdown()
	if tg := r.target("4d"); tg.Met || !strings.Contains(md, "| 4d |") || !strings.Contains(md, "| 4 |") || !strings.Contains(md, "2.5 raw verifications") {
		t.Fatalf("target %+v; -only markdown:\n%s", tg, md)
	}
}
