package chaos

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/proctest"
)

const (
	// EnvIntegration enables the short scenarios (make test sets it).
	EnvIntegration = "TOKENGATE_INTEGRATION"
	// EnvChaos=full enables every scenario at its full length (make chaos sets it).
	EnvChaos = "TOKENGATE_CHAOS"
)

// binPath is the tokengate binary built by TestMain.
var binPath string

func TestMain(m *testing.M) {
	if os.Getenv(EnvIntegration) != "1" && !full() {
		os.Exit(m.Run()) // only the checkers' own tests run; the scenarios skip themselves
	}
	results.Started, results.LoadStart, results.Machine = time.Now(), loadavg(), machine()
	results.Mode = "short"
	if full() {
		results.Mode = "full"
	}
	results.Command = "make chaos"
	if c := os.Getenv("TOKENGATE_CHAOS_COMMAND"); c != "" {
		results.Command = c
	}
	// Built without -race on purpose, as integration/replicas: the scenarios measure windows
	// across processes, and three race-instrumented gateways would measure the detector.
	code := proctest.Run(m, false, &binPath)
	results.LoadEnd = loadavg()
	if out, doc := os.Getenv(EnvOut), os.Getenv(EnvPublish); (out != "" || doc != "") && len(results.Rows) > 0 {
		if doc != "" && !full() {
			doc = "" // the page shows the full run only
		}
		if err := writeResults(results.run, out, doc); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: write results:", err)
			code = 1
		}
	}
	fmt.Print(results.markdown())
	os.Exit(code)
}

// full reports whether every scenario runs at its full length.
func full() bool { return strings.EqualFold(os.Getenv(EnvChaos), "full") }

// short skips a scenario of make test's subset unless integration tests (or make chaos) run.
func short(t *testing.T) {
	t.Helper()
	if os.Getenv(EnvIntegration) != "1" && !full() {
		t.Skipf("chaos scenario: set %s=1 (make test) or %s=full (make chaos)", EnvIntegration, EnvChaos)
	}
}

// long skips a scenario that only make chaos runs.
func long(t *testing.T) {
	t.Helper()
	if !full() {
		t.Skipf("long chaos scenario: set %s=full (make chaos)", EnvChaos)
	}
}

// pick returns s in the short run and f in the full one.
func pick[T any](s, f T) T {
	if full() {
		return f
	}
	return s
}
