package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/tokengate/internal/mdblock"
)

// Where the results go: make chaos sets both (absolute paths).
const (
	// EnvOut is a directory that receives chaos.json and chaos.md after the run.
	EnvOut = "TOKENGATE_CHAOS_OUT"
	// EnvPublish is the page (docs/reliability.md) whose block between the chaos markers is
	// rewritten with the table after a run in which every scenario ran.
	EnvPublish = "TOKENGATE_CHAOS_PUBLISH"
)

// row is one scenario's line in the published table.
type row struct {
	N          int           `json:"n"`
	Fault      string        `json:"fault"`
	Invariants string        `json:"invariants"`
	Figures    figures       `json:"figures"`
	Unavail    string        `json:"longest_unavailability"`
	Recover    string        `json:"time_to_recover"`
	Notes      string        `json:"notes"`
	Took       time.Duration `json:"took_ns"`
}

// run is what one `go test` of the package measured.
type run struct {
	Started   time.Time `json:"started"`
	Mode      string    `json:"mode"` // short or full
	Command   string    `json:"command"`
	Machine   string    `json:"machine"`
	LoadStart string    `json:"load_start"`
	LoadEnd   string    `json:"load_end"`
	Rows      []row     `json:"rows"`
}

var results = struct {
	sync.Mutex
	run
}{}

// addRow records a scenario's figures for the report.
func addRow(r row) {
	results.Lock()
	results.Rows = append(results.Rows, r)
	results.Unlock()
}

// invariantsCell says which invariants held, from the violations found.
func invariantsCell(checked string, violations []string) string {
	if len(violations) == 0 {
		return checked + " held"
	}
	count := map[string]int{}
	for _, v := range violations {
		count[strings.SplitN(v, ":", 2)[0]]++
	}
	var parts []string
	for _, k := range []string{"I1", "I2", "I3"} {
		if count[k] > 0 {
			parts = append(parts, fmt.Sprintf("**%s violated ×%d**", k, count[k]))
		}
	}
	return strings.Join(parts, ", ")
}

// counts writes a tally as "a ×2, b ×1", largest first.
func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", strings.TrimSpace(k), m[k])
	}
	return strings.Join(parts, ", ")
}

func pct(n, total int) string {
	if total == 0 {
		return "0 / 0"
	}
	return fmt.Sprintf("%d / %d (%.2f %%)", n, total, 100*float64(n)/float64(total))
}

// ms formats d for the table.
func ms(d time.Duration) string {
	switch {
	case d < 0:
		return "never"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

// markdown renders the table with the command and the machine.
func (r run) markdown() string {
	rows := append([]row(nil), r.Rows...)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].N < rows[j].N })
	var b strings.Builder
	fmt.Fprintf(&b, "Run %s (%s scenarios), `%s`, %s; load average %s at start, %s at end.\n\n",
		r.Started.UTC().Format(time.RFC3339), r.Mode, r.Command, r.Machine, r.LoadStart, r.LoadEnd)
	b.WriteString("| # | Fault | Invariants | Renewals failed / total, no retry | … with one retry on another replica | Longest unavailability | Time to recover | Logouts acknowledged / sent, longest held | Notes |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range rows {
		f := x.Figures
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %d / %d, %s | %s |\n",
			x.N, x.Fault, x.Invariants, pct(f.FailedNoRetry, f.Renewals), pct(f.FailedRetry, f.Renewals),
			x.Unavail, x.Recover, f.LogoutsAcked, f.Logouts, ms(f.LongestLogout), x.Notes)
	}
	return b.String()
}

// machine describes the host in one line.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%d cores (%s), %s", runtime.NumCPU(), model, runtime.Version())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// writeResults saves chaos.json and chaos.md under dir and, when doc is set, rewrites its
// block between the chaos markers.
func writeResults(r run, dir, doc string) error {
	md := r.markdown()
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		js, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "chaos.json"), js, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "chaos.md"), []byte(md), 0o644); err != nil {
			return err
		}
	}
	if doc == "" {
		return nil
	}
	return publish(doc, md)
}

// publish replaces the chaos block of doc (<!-- chaos --> … <!-- /chaos -->) with md.
func publish(doc, md string) error {
	return mdblock.ReplaceFile(doc, "chaos",
		"_Generated by `make chaos` (`integration/chaos`) from `results/chaos/chaos.json`; do not edit by hand._\n\n"+md)
}
