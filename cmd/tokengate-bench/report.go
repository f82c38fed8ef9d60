package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/mdblock"
)

// Machine describes where the run happened.
type Machine struct {
	CPUs         int     `json:"cpus"`
	CPUModel     string  `json:"cpu_model"`
	MemGiB       float64 `json:"mem_gib"`
	Go           string  `json:"go"`
	Keycloak     string  `json:"keycloak"`
	ServerCores  int     `json:"server_cores"`
	ServerPinned bool    `json:"server_pinned"`
	LoadStart    string  `json:"loadavg_start"`
	LoadEnd      string  `json:"loadavg_end"`
}

// Target is one goal of the issue and whether this run met it.
type Target struct {
	ID     string `json:"id"`
	What   string `json:"what"`
	Goal   string `json:"goal"`
	Value  string `json:"value"`
	Met    bool   `json:"met"`
	Detail string `json:"detail,omitempty"`
}

// Profile is a CPU profile taken under load, with its pprof -top summary.
type Profile struct {
	Name string `json:"name"`
	File string `json:"file"`
	Top  string `json:"top"`
}

// Results is everything one run measured; the docs/performance.md section is rendered from it.
type Results struct {
	Mode     string  `json:"mode"`
	Started  string  `json:"started_utc"`
	Finished string  `json:"finished_utc"`
	Command  string  `json:"command"`
	Machine  Machine `json:"machine"`
	Plan     struct {
		Seconds      float64 `json:"seconds_per_throughput_run"`
		ColdTokens   int     `json:"cold_exchanges"`
		Sessions     int     `json:"revocation_sessions"`
		RenewWorkers int     `json:"renewal_concurrency"`
		KCWorkers    int     `json:"keycloak_refresh_concurrency"`
	} `json:"plan"`

	Introspect1  Dist `json:"introspection_c1"`
	Introspect32 Dist `json:"introspection_c32"`
	Verify       Dist `json:"local_verification"`
	RawVerify    Dist `json:"raw_es256_verify"`

	BareIntrospect         Dist `json:"bare_introspection"`
	ExchangeColdClient     Dist `json:"exchange_cold_client"`
	ExchangeColdServer     Dist `json:"exchange_cold_server"`
	ExchangeColdIntrospect Dist `json:"exchange_cold_introspection"`
	ExchangeColdOverhead   Dist `json:"exchange_cold_overhead"`
	ExchangeWarmClient     Dist `json:"exchange_warm_client"`
	ExchangeWarmServer     Dist `json:"exchange_warm_server"`

	Renewal       Dist `json:"renewal_http"`
	RenewalServer Dist `json:"renewal_server_c1"`
	RawSign       Dist `json:"raw_es256_sign"`
	// RenewalServerBusy is the fraction of its one core the gateway used during the renewal run;
	// below 1 the load generator (on the other core) was the limit. The per-CPU-second rates
	// compare renewal and signing independently of that and of other load on the machine.
	RenewalServerBusy   float64 `json:"renewal_server_core_busy"`
	RenewalPerCPUSecond float64 `json:"renewals_per_server_cpu_second"`
	RawSignPerCPUSecond float64 `json:"raw_signatures_per_cpu_second"`
	KCRefresh           Dist    `json:"keycloak_refresh_grant"`

	// Delegation is (4d), measured like Renewal on the same gateway.
	Delegation             Dist    `json:"delegation_http"`
	DelegationServerBusy   float64 `json:"delegation_server_core_busy"`
	DelegationPerCPUSecond float64 `json:"delegations_per_server_cpu_second"`

	Revocation      Dist       `json:"revocation_window"`
	RevocationBy    []Dist     `json:"revocation_window_by_logout"`
	RevocationStale int        `json:"renewals_accepted_after_logout_returned"`
	DownLogout      DownLogout `json:"logout_while_down"`

	Scale        []ScalePoint `json:"scale"`
	LiveSessions string       `json:"live_sessions"`

	Targets  []Target  `json:"targets"`
	Profiles []Profile `json:"profiles"`
}

const liveSessionsNote = "A live session costs tokengate no record on disk: it is a sealed refresh token " +
	"(JWE) that the BFF holds and presents; renewal unseals it and checks the store for a logout of its " +
	"sid (one B+tree lookup, no scan; a miss for a live session) and never writes. A million live sessions therefore " +
	"add nothing to the data file or to start-up; in memory the issuer keeps, per session seen recently, one " +
	"recheck timestamp (until its next check) and one packed introspection answer (until the Keycloak token " +
	"expires), both bounded by limits.caches; the RSS per live session is measured below (Memory per live session)."

func newResults(o options) *Results {
	r := &Results{Mode: "full", Started: time.Now().UTC().Format(time.RFC3339), Command: o.command,
		LiveSessions: liveSessionsNote}
	if o.quick {
		r.Mode, r.Command = "quick", "BENCH=quick "+o.command
	}
	r.Machine = Machine{CPUs: runtime.NumCPU(), CPUModel: cpuModel(), MemGiB: memGiB(), Go: runtime.Version(),
		Keycloak: keycloakVersion() + " (start-dev, KC_JIT=full, same machine)", ServerCores: 1}
	return r
}

// keycloakVersion is the version scripts/keycloak.sh starts (KEYCLOAK_VERSION or its default).
func keycloakVersion() string {
	out, err := exec.Command("scripts/keycloak.sh", "version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

func memGiB() float64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return kb / (1 << 20)
		}
	}
	return 0
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// evaluate compares the run with the targets.
func (r *Results) evaluate() {
	r.Finished = time.Now().UTC().Format(time.RFC3339)
	r.Targets = nil
	add := func(id, what, goal, value string, met bool, detail string) {
		r.Targets = append(r.Targets, Target{ID: id, What: what, Goal: goal, Value: value, Met: met, Detail: detail})
	}
	if r.Verify.P50us > 0 {
		ratio := r.Introspect1.P50us / r.Verify.P50us
		add("2", "local verification vs introspection at Keycloak (p50, c=1)", "≥ 100× lower", fmt.Sprintf("%.0f× lower", ratio), ratio >= 100,
			fmt.Sprintf("%.0f× lower than introspection at c=32", r.Introspect32.P50us/r.Verify.P50us))
	}
	add("3-cold", "cold exchange overhead over its introspection (p99, in the server)", "< 1 ms",
		fmtUs(r.ExchangeColdOverhead.P99us), r.ExchangeColdOverhead.N > 0 && r.ExchangeColdOverhead.P99us < 1000, "")
	add("3-warm", "warm exchange (cached introspection), p50 in the server", "< 100 µs",
		fmtUs(r.ExchangeWarmServer.P50us), r.ExchangeWarmServer.N > 0 && r.ExchangeWarmServer.P50us < 100, "")
	if r.RawSignPerCPUSecond > 0 && r.RenewalPerCPUSecond > 0 {
		ratio := r.RenewalPerCPUSecond / r.RawSignPerCPUSecond
		wall := r.Renewal.PerSecond / r.RawSign.PerSecond
		add("4", "renewal over HTTP vs raw ES256 signing, per CPU-second of one core", "≥ 50 %", fmt.Sprintf("%.0f %%", 100*ratio), ratio >= 0.5,
			fmt.Sprintf("wall-clock throughput ratio %.0f %% with the server core %.0f %% busy", 100*wall, 100*r.RenewalServerBusy))
	}
	if r.DelegationPerCPUSecond > 0 && r.RenewalPerCPUSecond > 0 && r.RawVerify.P50us > 0 {
		extra := 1e6/r.DelegationPerCPUSecond - 1e6/r.RenewalPerCPUSecond
		add("4d", "delegation over HTTP vs renewal, server CPU per request", "≤ 1 ES256 verification more",
			fmt.Sprintf("+%s (%.1f× a raw ES256 verification)", fmtUs(extra), extra/r.RawVerify.P50us), extra <= r.RawVerify.P50us,
			fmt.Sprintf("%s vs %s of server CPU per request", fmtUs(1e6/r.DelegationPerCPUSecond), fmtUs(1e6/r.RenewalPerCPUSecond)))
	}
	add("5", "revocation window p99 (logout returned → first refused renewal)", "≤ 100 ms",
		fmtUs(r.Revocation.P99us), r.Revocation.N > 0 && r.Revocation.P99us <= 100_000 && r.RevocationStale == 0,
		fmt.Sprintf("%d sessions, %d renewals accepted after the logout returned", r.Revocation.N, r.RevocationStale))
	if d := r.DownLogout; d.Sessions > 0 {
		add("5-down", "logout while tokengate was down → renewal refused after restart", "every first renewal refused",
			fmt.Sprintf("%d / %d", d.Refused, d.Sessions), d.Refused == d.Sessions,
			fmt.Sprintf("restart → ready %.0f ms (drains Keycloak's Shared Signals stream first)", d.RestartReadyMs))
	}
	if n := len(r.Scale); n > 0 {
		first, last := r.Scale[0], r.Scale[n-1]
		add("6-start", fmt.Sprintf("cold start to ready at %s recorded logouts", count(last.Records)), "< 2 s",
			fmt.Sprintf("%.0f ms", last.ColdStartMs), last.ColdStartMs < 2000, "")
		rss := max(last.RSSReadyMiB, last.RSSLoadedMiB)
		add("6-rss", fmt.Sprintf("RSS at %s recorded logouts", count(last.Records)), "< 300 MiB",
			fmt.Sprintf("%.0f MiB", rss), rss < 300, fmt.Sprintf("after renewals: %.0f MiB anonymous, %.0f MiB file-backed (mmapped data file)", last.RSSAnonMiB, last.RSSFileMiB))
		flat := last.LookupHit.P99us / first.LookupHit.P99us
		add("6-flat", fmt.Sprintf("revocation check p99, %s → %s records", count(first.Records), count(last.Records)), "flat (≤ 2×)",
			fmt.Sprintf("%s → %s (%.2f×)", fmtUs(first.LookupHit.P99us), fmtUs(last.LookupHit.P99us), flat), flat <= 2, "")
	}
}

func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}

func pcts(d Dist) string { return fmtUs(d.P50us) + " / " + fmtUs(d.P99us) }

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func (r *Results) target(id string) Target {
	for _, t := range r.Targets {
		if t.ID == id {
			return t
		}
	}
	return Target{ID: id, Value: "n/a"}
}

// Markdown renders the tables: ratios first, this machine's absolute figures after.
func (r *Results) Markdown(png string) string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Command: `%s` (%s run, %s → %s). Machine: %d cores (%s), %.0f GiB RAM, load average %s at start, %s at end. "+
		"Keycloak %s. tokengate is the real binary pinned to **%d core** (taskset, `GOMAXPROCS=1`); raw signing is measured on one goroutine to match; "+
		"this tool (load generator) is pinned to the other core(s); Keycloak runs unpinned. Absolute times are this machine's; the ratios are the point.\n\n",
		r.Command, r.Mode, r.Started, r.Finished, m.CPUs, m.CPUModel, m.MemGiB,
		m.LoadStart, m.LoadEnd, m.Keycloak, m.ServerCores)
	if r.Mode == "quick" {
		b.WriteString("**Quick mode** (`BENCH=quick`): short runs and fewer sessions; scale stops at 100k. Not the full run.\n\n")
	}
	b.WriteString("| | Measure | Ratio | Target | | This machine: p50 / p99, throughput (concurrency) |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| 1 | Service introspects every request at Keycloak (baseline) | 1× | — | | %s, %.0f/s (c=1); %s, %.0f/s (c=32) |\n",
		pcts(r.Introspect1), r.Introspect1.PerSecond, pcts(r.Introspect32), r.Introspect32.PerSecond)
	t := r.target("2")
	fmt.Fprintf(&b, "| 2 | Service verifies the internal token locally (go-oidc, cached JWKS) | p50 **%s** than (1) at c=1 (%s); %.1f× a bare P-256 verification | ≥ 100× lower | %s | %s, %.0f/s (c=1); raw ES256 verify %s |\n",
		t.Value, t.Detail, r.Verify.P50us/r.RawVerify.P50us, met(t.Met), pcts(r.Verify), r.Verify.PerSecond, pcts(r.RawVerify))
	t = r.target("3-cold")
	fmt.Fprintf(&b, "| 3 | Exchange, cold: overhead over its one introspection, in the server | p99 **%s** (cold exchange p50 %.2f× a bare introspection's) | p99 < 1 ms | %s | overhead %s; exchange at the client %s; bare introspection %s (c=1, %d tokens) |\n",
		t.Value, r.ExchangeColdClient.P50us/r.BareIntrospect.P50us, met(t.Met), pcts(r.ExchangeColdOverhead), pcts(r.ExchangeColdClient), pcts(r.BareIntrospect), r.ExchangeColdClient.N)
	t = r.target("3-warm")
	fmt.Fprintf(&b, "| 3 | Exchange, warm (introspection cached), in the server | p50 **%s** (%.0f× below a bare introspection) | p50 < 100 µs | %s | in the server %s; at the client %s, %.0f/s (c=1) |\n",
		t.Value, r.BareIntrospect.P50us/r.ExchangeWarmServer.P50us, met(t.Met), pcts(r.ExchangeWarmServer), pcts(r.ExchangeWarmClient), r.ExchangeWarmClient.PerSecond)
	t = r.target("4")
	kcRatio := 0.0
	if r.KCRefresh.PerSecond > 0 {
		kcRatio = r.Renewal.PerSecond / r.KCRefresh.PerSecond
	}
	fmt.Fprintf(&b, "| 4 | Renewal over HTTP, loopback keep-alive, server on 1 core | **%s** of raw ES256 signing, per CPU-second of one core (%s); **%.0f×** Keycloak's refresh-grant throughput | ≥ 50 %% of signing | %s | renewal %s, %.0f/s (c=%d), %.0f per server CPU-second; in the server %s (c=1); raw signing %.0f/s wall, %.0f per CPU-second (1 goroutine); Keycloak refresh grant %s, %.0f/s (c=%d, all cores) |\n",
		t.Value, t.Detail, kcRatio, met(t.Met), pcts(r.Renewal), r.Renewal.PerSecond, r.Renewal.Concurrency, r.RenewalPerCPUSecond,
		pcts(r.RenewalServer), r.RawSign.PerSecond, r.RawSignPerCPUSecond, pcts(r.KCRefresh), r.KCRefresh.PerSecond, r.KCRefresh.Concurrency)
	r.delegationRow(&b)
	t = r.target("5")
	var by []string
	for _, d := range r.RevocationBy {
		by = append(by, fmt.Sprintf("%s %s", d.Name, pcts(d)))
	}
	fmt.Fprintf(&b, "| 5 | Revocation window: Keycloak logout returned → first refused renewal | p99 **%s**, max %s | p99 ≤ 100 ms | %s | %s over %d password-grant sessions (%s); renewals accepted after the logout returned: %d |\n",
		t.Value, fmtUs(r.Revocation.MaxUs), met(t.Met), pcts(r.Revocation), r.Revocation.N, strings.Join(by, "; "), r.RevocationStale)
	if d := r.DownLogout; d.Sessions > 0 {
		t = r.target("5-down")
		fmt.Fprintf(&b, "| 5b | Logout while tokengate was down → renewal refused after restart | **%s** first renewals refused | all | %s | %s; %d sessions logged out at Keycloak (end_session) while tokengate was stopped |\n",
			t.Value, met(t.Met), t.Detail, d.Sessions)
	} else if d.Note != "" {
		fmt.Fprintf(&b, "| 5b | Logout while tokengate was down → renewal refused after restart | — | all | — | %s |\n", d.Note)
	}
	if n := len(r.Scale); n > 0 {
		ts, tr, tf := r.target("6-start"), r.target("6-rss"), r.target("6-flat")
		fmt.Fprintf(&b, "| 6 | Scale: %s recorded logouts in bbolt | start %s, RSS %s, check p99 %s | < 2 s, < 300 MiB, flat | %s, %s, %s | see below |\n",
			count(r.Scale[n-1].Records), ts.Value, tr.Value, tf.Value, met(ts.Met), met(tr.Met), met(tf.Met))
		b.WriteString("\n| Recorded logouts | Data file | Cold start → ready | RSS ready → after renewals (anonymous + mmapped file) | Revocation check, recorded sid p50 / p99 | Live sid p50 / p99 | Renewal over HTTP p50 / p99 (c=1) |\n|---|---|---|---|---|---|---|\n")
		for _, p := range r.Scale {
			fmt.Fprintf(&b, "| %s | %.1f MiB | %.0f ms | %.1f → %.1f MiB (%.1f + %.1f) | %s | %s | %s |\n", count(p.Records), float64(p.FileBytes)/(1<<20),
				p.ColdStartMs, p.RSSReadyMiB, p.RSSLoadedMiB, p.RSSAnonMiB, p.RSSFileMiB, pcts(p.LookupHit), pcts(p.LookupMiss), pcts(p.Renewal))
		}
		b.WriteString("\nCold start is exec to the first `200` from `/readyz` with the data file in the page cache. " +
			"Live sessions: " + r.LiveSessions + "\n")
	}
	fmt.Fprintf(&b, "\nHow each figure is taken (%.0f s per throughput run): "+
		"(1) `POST` to Keycloak's introspection endpoint as client `tokengate`, keep-alive. "+
		"(2) go-oidc `IDTokenVerifier.Verify` of an internal token from the binary, JWKS fetched once. "+
		"(3) the gateway's packages composed in this process exactly as `tokengate serve` composes them; each of the %d cold exchanges "+
		"uses a Keycloak access token never exchanged before; server time is taken around the handler, the introspection round trip in the "+
		"upstream HTTP transport of the same request, and the overhead is their difference; the bare introspection of the same token is timed just before. "+
		"(4) the binary, c=%d keep-alive clients renewing after a warm-up; raw signing is `ecdsa.SignASN1` of a SHA-256 digest on one goroutine; "+
		"Keycloak's refresh grant runs c=%d sessions each refreshing its latest refresh token. "+
		"(4d) the same gateway right after (4), c=%d keep-alive clients as the service `demo-service` delegating four tokens it received "+
		"(exchanged just before) to `payments` after a warm-up; the extra CPU is per server CPU-second against (4), next to (2)'s raw ES256 verification. "+
		"(5) %d sessions by password grant at client `bff`, each exchanged; alternately RP-initiated logout (`end_session` with the refresh token) and "+
		"the admin API's session delete; when the call returns, renewals are sent back to back until `invalid_grant` "+
		"(Keycloak delivers the back-channel logout before its call returns). "+
		"(6) the binary's bbolt file, loaded through `store/bolt` (one sorted transaction per step); checks through the store API on random "+
		"recorded sids and on unknown (live) sids; then the binary started on it.\n",
		r.Plan.Seconds, r.Plan.ColdTokens, r.Plan.RenewWorkers, r.Plan.KCWorkers, r.Plan.RenewWorkers, r.Plan.Sessions)
	if png != "" {
		fmt.Fprintf(&b, "\n![Latency CDFs of (1)–(4) and the revocation window (5)](%s)\n", png)
	}
	var missed []Target
	for _, t := range r.Targets {
		if !t.Met {
			missed = append(missed, t)
		}
	}
	if len(missed) > 0 {
		b.WriteString("\n**Targets missed in this run:**\n\n")
		for _, t := range missed {
			detail := ""
			if t.Detail != "" {
				detail = " (" + t.Detail + ")"
			}
			fmt.Fprintf(&b, "- %s: %s, target %s%s. %s\n", t.What, t.Value, t.Goal, detail, r.missedNote(t))
		}
		b.WriteString("\nWhere the time goes — CPU profiles taken under load (c=8) over loopback HTTP against the gateway's packages in this " +
			"process, restricted to the server's handler (`go tool pprof -top -cum -focus=serverHandler`; the percentages are of all samples, " +
			"which include the load generator's client side; files in `results/bench/`):\n")
		for _, p := range r.Profiles {
			fmt.Fprintf(&b, "\n<details><summary>%s</summary>\n\n```\n%s```\n</details>\n", p.Name, trimTop(p.Top, 22))
		}
	}
	return b.String()
}

// delegationRow writes the (4d) row when the run measured delegation.
func (r *Results) delegationRow(b *strings.Builder) {
	if r.Delegation.N == 0 {
		return
	}
	t := r.target("4d")
	fmt.Fprintf(b, "| 4d | Delegation over HTTP ([delegation](delegation.md): the service's token verified, a token for the next service signed), server on 1 core | **%s** server CPU per request over a renewal (%s) | %s | %s | delegation %s, %.0f/s (c=%d), %.0f per server CPU-second (renewal %.0f), server core %.0f %% busy |\n",
		t.Value, t.Detail, t.Goal, met(t.Met), pcts(r.Delegation), r.Delegation.PerSecond, r.Delegation.Concurrency,
		r.DelegationPerCPUSecond, r.RenewalPerCPUSecond, 100*r.DelegationServerBusy)
}

// onlyMarkdown renders what -only delegation measured: rows (4) and (4d) with their raw
// crypto floors.
func (r *Results) onlyMarkdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Command: `%s` (-only %s, %s run, %s → %s). Machine: %d cores (%s), load average %s at start, %s at end. Keycloak %s.\n\n",
		r.Command, "delegation", r.Mode, r.Started, r.Finished, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.LoadStart, r.Machine.LoadEnd, r.Machine.Keycloak)
	b.WriteString("| | Measure | Ratio | Target | | This machine: p50 / p99, throughput (concurrency) |\n|---|---|---|---|---|---|\n")
	t := r.target("4")
	fmt.Fprintf(&b, "| 4 | Renewal over HTTP, loopback keep-alive, server on 1 core | **%s** of raw ES256 signing, per CPU-second of one core (%s) | ≥ 50 %% of signing | %s | renewal %s, %.0f/s (c=%d), %.0f per server CPU-second; raw signing %.0f per CPU-second; raw ES256 verify %s |\n",
		t.Value, t.Detail, met(t.Met), pcts(r.Renewal), r.Renewal.PerSecond, r.Renewal.Concurrency, r.RenewalPerCPUSecond,
		r.RawSignPerCPUSecond, pcts(r.RawVerify))
	r.delegationRow(&b)
	if t := r.target("4d"); !t.Met {
		fmt.Fprintf(&b, "\n%s\n", r.missedNote(t))
	}
	return b.String()
}

// trimTop keeps the header and the first n rows of pprof -top output.
func trimTop(top string, n int) string {
	lines := strings.Split(top, "\n")
	var out []string
	rows := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID") || strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		if strings.Contains(l, "flat%") {
			rows = 0
		} else if rows >= 0 && strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "Duration") && !strings.HasPrefix(l, "Showing") {
			rows++
			if rows > n {
				continue
			}
		}
		out = append(out, l)
	}
	return strings.TrimRight(strings.Join(out, "\n"), "\n") + "\n"
}

// plotted names the distributions whose raw samples the plot needs.
func (r *Results) plotted() map[string]*Dist {
	m := map[string]*Dist{"introspection_c1": &r.Introspect1, "introspection_c32": &r.Introspect32,
		"local_verification": &r.Verify, "exchange_cold_client": &r.ExchangeColdClient,
		"exchange_cold_overhead": &r.ExchangeColdOverhead, "exchange_warm_server": &r.ExchangeWarmServer,
		"renewal_http": &r.Renewal, "renewal_server_c1": &r.RenewalServer, "keycloak_refresh_grant": &r.KCRefresh,
		"revocation_window": &r.Revocation}
	for i := range r.RevocationBy {
		m["revocation_window_by_logout/"+r.RevocationBy[i].Name] = &r.RevocationBy[i]
	}
	return m
}

// loadResults reads a run back from dir (bench.json and its samples), for -render.
func loadResults(dir string) (*Results, error) {
	b, err := os.ReadFile(filepath.Join(dir, "bench.json"))
	if err != nil {
		return nil, err
	}
	r := &Results{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, err
	}
	b, err = os.ReadFile(filepath.Join(dir, "bench-samples.json"))
	if err != nil {
		return nil, err
	}
	samples := map[string][]float64{}
	if err := json.Unmarshal(b, &samples); err != nil {
		return nil, err
	}
	for k, d := range r.plotted() {
		d.samples = samples[k]
	}
	return r, nil
}

// save writes bench.json and the plotted distributions' samples to dir.
func (r *Results) save(dir string) error {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.json"), js, 0o644); err != nil {
		return err
	}
	samples := map[string][]float64{}
	for k, d := range r.plotted() {
		samples[k] = d.samples
	}
	js, err = json.Marshal(samples)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "bench-samples.json"), js, 0o644)
}

// write saves JSON, markdown and PNG under o.out and, with -publish, the -doc section and the
// -png plot, linked from the section by its path relative to the page.
func (r *Results) write(o options) error {
	if err := r.save(o.out); err != nil {
		return err
	}
	pngOut := filepath.Join(o.out, "bench.png")
	if err := r.plot(pngOut); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	md := r.Markdown("bench.png")
	if err := os.WriteFile(filepath.Join(o.out, "bench.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	logf("wrote %s, %s, %s", filepath.Join(o.out, "bench.json"), filepath.Join(o.out, "bench.md"), pngOut)
	if !o.publish {
		return nil
	}
	png, err := os.ReadFile(pngOut)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.png), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(o.png, png, 0o644); err != nil {
		return err
	}
	link, err := filepath.Rel(filepath.Dir(o.doc), o.png)
	if err != nil {
		return err
	}
	if err := publish(o.doc, r.Markdown(filepath.ToSlash(link))); err != nil {
		return err
	}
	logf("rewrote the <!-- bench --> section of %s and %s", o.doc, o.png)
	return nil
}

// benchBlock names the page's generated block: <!-- bench --> … <!-- /bench -->.
const benchBlock = "bench"

// publish replaces the part of the page between the bench markers (adding the section after the
// bench-core block when the markers are not there yet).
func publish(doc, md string) error {
	src, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	body := "_Generated by `cmd/tokengate-bench` from `results/bench/bench.json`; do not edit by hand._\n\n" + md
	out, err := mdblock.Replace(src, benchBlock, body)
	if errors.Is(err, mdblock.ErrMissing) {
		// The first run: the section goes after the bench-core block.
		anchor := []byte("<!-- /bench-core -->\n")
		k := bytes.Index(src, anchor)
		if k < 0 {
			return errors.New(doc + ": neither bench markers nor <!-- /bench-core --> found")
		}
		k += len(anchor)
		head := "\n### Side by side with per-request introspection, against a real Keycloak: `make bench`\n\n"
		out = append(append(append([]byte{}, src[:k]...), head+mdblock.Block(benchBlock, body)+"\n"...), src[k:]...)
		err = nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", doc, err)
	}
	return os.WriteFile(doc, out, 0o644)
}
