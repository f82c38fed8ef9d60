// Package kcsignals proves tokengate's receiver of Keycloak's Shared Signals stream against a
// real Keycloak 26.7 (feature ssf, realm transmitter on, receiver client tokengate-signals from
// deploy/keycloak/realm-demo.json) and the real tokengate binary. It runs when
// TOKENGATE_INTEGRATION=1; KEYCLOAK_VERSION selects the Keycloak (26.7.3 when unset; older
// versions have no transmitter).
package kcsignals

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/demostack"
	"github.com/tokengate/tokengate/internal/testwait"
)

const envIntegration = "TOKENGATE_INTEGRATION"

// tokengate's timing: recheck_after is an hour, so nothing here is caught by re-introspection.
const (
	ttl          = 30 * time.Second
	recheckAfter = time.Hour
)

var (
	skipReason string
	setupErr   error
	st         *demostack.Stack
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	if os.Getenv(envIntegration) != "1" {
		skipReason = "real-Keycloak Shared Signals test: set " + envIntegration + "=1 (make test does) to run it"
		return m.Run()
	}
	work, err := os.MkdirTemp("", "tokengate-kcsignals-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "kcsignals:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	stop, err := setup(ctx, work)
	if err != nil {
		setupErr = err
		fmt.Fprintln(os.Stderr, "kcsignals: setup failed:", err)
	}
	code := m.Run()
	if stop != nil {
		stop()
	}
	if code == 0 && setupErr == nil {
		_ = os.RemoveAll(work)
	} else {
		fmt.Fprintf(os.Stderr, "kcsignals: logs kept in %s\n", work)
	}
	return code
}

func setup(ctx context.Context, work string) (stop func(), err error) {
	root, err := demostack.RepoRoot()
	if err != nil {
		return nil, err
	}
	bin, err := demostack.Build(filepath.Join(work, "bin"))
	if err != nil {
		return nil, err
	}
	if st, err = demostack.NewStack(root, work, bin, ttl, recheckAfter); err != nil {
		return nil, err
	}
	st.KeycloakVersion = os.Getenv("KEYCLOAK_VERSION")
	if st.KeycloakVersion == "" {
		st.KeycloakVersion = "26.7.3"
	}
	st.SharedSignals = true
	st.Out = os.Stderr
	if _, err := st.StartKeycloak(ctx); err != nil {
		return nil, fmt.Errorf("keycloak %s: %w (log: %s)", st.KeycloakVersion, err, st.KeycloakLog())
	}
	stop = func() {
		st.StopAll()
		if err := st.StopKeycloak(); err != nil {
			fmt.Fprintln(os.Stderr, "kcsignals: stopping Keycloak:", err)
		}
	}
	if err := st.StartTokengate(ctx); err != nil {
		return stop, err
	}
	if err := waitVerified(ctx); err != nil {
		return stop, err
	}
	return stop, nil
}

// waitVerified waits until tokengate's receiver got the verification event it asked for: the
// stream exists and Keycloak delivers on it.
func waitVerified(ctx context.Context) error {
	return testwait.Poll(ctx, 60*time.Second, 50*time.Millisecond, func() error {
		v, err := st.TokengateMetric(ctx, "tokengate_upstream_signals_verified")
		if err != nil {
			return err
		}
		if v != 1 {
			return fmt.Errorf("tokengate's Shared Signals stream is not verified (Keycloak %s: the transmitter needs 26.7+ with --features=ssf)", st.KeycloakVersion)
		}
		return nil
	})
}

func need(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if setupErr != nil {
		t.Fatalf("kcsignals setup: %v", setupErr)
	}
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
