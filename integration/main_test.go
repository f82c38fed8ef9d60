// Package integration runs the logout story against a real Keycloak (scripts/keycloak.sh),
// the real tokengate, demo-bff and demo-service binaries, headless Chromium (chromedp) and
// npm jose run by node. It runs when TOKENGATE_INTEGRATION=1 (make test); without it every
// test skips saying so. With it, a missing dependency (Java ≥ 21, Maven or the cached Keycloak,
// Chromium, node/npm, curl, unzip) fails every test with a message naming it.
//
// One Keycloak serves the whole package (TestMain starts it once, on a free port, with its
// own KC_RUN_DIR and TOKENGATE_URL pointing at the tokengate started here). Tests run in file
// order; the one that restarts Keycloak (a fresh realm import: new keys, user ids, sessions)
// comes last.
package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/demostack"
)

const envIntegration = "TOKENGATE_INTEGRATION"

// Timing of the tokengate under test: short so expiry and recheck are observable quickly.
const (
	ttl          = 5 * time.Second
	recheckAfter = 10 * time.Second
)

var (
	skipReason string
	setupErr   error
	st         *demostack.Stack
	chromium   string
	root       string
	artifacts  string
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	if os.Getenv(envIntegration) != "1" {
		skipReason = "real-Keycloak integration suite: set " + envIntegration + "=1 (make test does) to run it"
		return m.Run()
	}
	work, err := os.MkdirTemp("", "tokengate-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	t0 := time.Now()
	stop, err := setup(ctx, work)
	if err != nil {
		setupErr = err
		fmt.Fprintln(os.Stderr, "integration: setup failed:", err)
	} else {
		fmt.Fprintf(os.Stderr, "integration: Keycloak, tokengate, demo-bff, demo-service up after %s (work dir %s)\n",
			time.Since(t0).Round(100*time.Millisecond), work)
	}
	code := m.Run()
	if stop != nil {
		stop()
	}
	if code == 0 {
		_ = os.RemoveAll(work)
	} else {
		fmt.Fprintf(os.Stderr, "integration: logs kept in %s\n", work)
	}
	return code
}

// setup checks the dependencies, builds the binaries and starts everything; stop undoes it.
func setup(ctx context.Context, work string) (stop func(), err error) {
	if root, err = demostack.RepoRoot(); err != nil {
		return nil, err
	}
	artifacts = filepath.Join(root, "artifacts", "integration")
	for _, dep := range []struct{ bin, why string }{
		{"curl", "scripts/keycloak.sh waits for Keycloak with it"},
		{"node", "runs the npm jose verifier (test 6)"},
		{"npm", "installs the pinned npm jose (test 6)"},
	} {
		if _, err := exec.LookPath(dep.bin); err != nil {
			return nil, fmt.Errorf("missing dependency %q (%s): install it", dep.bin, dep.why)
		}
	}
	for _, sub := range []string{"fetch", "java"} {
		out, err := exec.CommandContext(ctx, filepath.Join(root, "scripts", "keycloak.sh"), sub).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("missing dependency for Keycloak (scripts/keycloak.sh %s): %s", sub, strings.TrimSpace(string(out)))
		}
	}
	if chromium, err = demostack.Chromium(root); err != nil {
		return nil, fmt.Errorf("missing dependency: %w", err)
	}
	bin, err := demostack.Build(ctx, root, filepath.Join(work, "bin"))
	if err != nil {
		return nil, err
	}
	if st, err = demostack.NewStack(root, work, bin, ttl, recheckAfter); err != nil {
		return nil, err
	}
	st.Out = os.Stderr // scripts/keycloak.sh progress lines
	if _, err := st.StartKeycloak(ctx); err != nil {
		return nil, fmt.Errorf("keycloak: %w (log: %s)", err, st.KeycloakLog())
	}
	stop = func() {
		st.StopAll()
		if err := st.StopKeycloak(); err != nil {
			fmt.Fprintln(os.Stderr, "integration: stopping Keycloak:", err)
		}
	}
	for _, start := range []func(context.Context) error{st.StartTokengate, st.StartService, st.StartBFF} {
		if err := start(ctx); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

// need skips without TOKENGATE_INTEGRATION=1 and fails when the setup failed.
func need(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if setupErr != nil {
		t.Fatalf("integration setup: %v", setupErr)
	}
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls f every interval until it returns nil or d passes; it returns f's last error.
func eventually(d, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

var errNotYet = errors.New("not yet")
