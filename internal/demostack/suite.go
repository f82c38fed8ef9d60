package demostack

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EnvIntegration turns the real-Keycloak test packages on (make test sets it to 1).
const EnvIntegration = "TOKENGATE_INTEGRATION"

// Tool is a command a suite needs on the PATH, and why.
type Tool struct{ Bin, Why string }

// SuiteOptions say what a real-Keycloak test package runs against.
type SuiteOptions struct {
	// Name prefixes the suite's messages (e.g. "integration").
	Name string
	// KeycloakVersion selects the Keycloak distribution; empty: scripts/keycloak.sh's default.
	KeycloakVersion string
	// TTL and RecheckAfter configure the tokengate under test.
	TTL, RecheckAfter time.Duration
	// Tools are commands the tests need besides curl (which scripts/keycloak.sh needs).
	Tools []Tool
	// MoreClients are BFFs registered at tokengate besides bff.
	MoreClients []Client
}

// Suite is the stack one test package runs against: Keycloak, tokengate, demo-service and
// demo-bff, started once by RunSuite, plus the Chromium to drive them with.
type Suite struct {
	*Stack
	// Chromium is the browser binary (scripts/chromium.sh path; make test installs it).
	Chromium string

	skip string
	err  error
}

// RunSuite is the TestMain body of a real-Keycloak test package. Without
// TOKENGATE_INTEGRATION=1 every test skips saying so (Need). With it, a missing dependency
// or a failed start fails every test with the reason. It fills s, runs the tests, stops
// everything and returns the exit code; the work directory (logs) is kept when a test failed.
func RunSuite(m *testing.M, o SuiteOptions, s *Suite) int {
	if os.Getenv(EnvIntegration) != "1" {
		s.skip = "real-Keycloak suite: set " + EnvIntegration + "=1 (make test does) to run it"
		return m.Run()
	}
	work, err := os.MkdirTemp("", "tokengate-"+o.Name+"-")
	if err != nil {
		fmt.Fprintln(os.Stderr, o.Name+":", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	t0 := time.Now()
	stop, err := s.start(ctx, work, o)
	if err != nil {
		s.err = err
		fmt.Fprintf(os.Stderr, "%s: setup failed: %v\n", o.Name, err)
	} else {
		fmt.Fprintf(os.Stderr, "%s: Keycloak %s, tokengate, demo-bff, demo-service up after %s (work dir %s)\n",
			o.Name, s.KeycloakVersionRunning(), time.Since(t0).Round(100*time.Millisecond), work)
	}
	code := m.Run()
	if stop != nil {
		stop()
	}
	if code == 0 {
		_ = os.RemoveAll(work)
	} else {
		fmt.Fprintf(os.Stderr, "%s: logs kept in %s\n", o.Name, work)
	}
	return code
}

// start checks the dependencies, builds the binaries and starts everything; stop undoes it.
func (s *Suite) start(ctx context.Context, work string, o SuiteOptions) (stop func(), err error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	for _, dep := range append([]Tool{{"curl", "scripts/keycloak.sh waits for Keycloak with it"}}, o.Tools...) {
		if _, err := exec.LookPath(dep.Bin); err != nil {
			return nil, fmt.Errorf("missing dependency %q (%s): install it", dep.Bin, dep.Why)
		}
	}
	// The stack's ports are picked before the build so that the Keycloak script calls below
	// already see the chosen version.
	st, err := NewStack(root, work, Binaries{}, o.TTL, o.RecheckAfter)
	if err != nil {
		return nil, err
	}
	st.KeycloakVersion, st.MoreClients = o.KeycloakVersion, o.MoreClients
	for _, sub := range []string{"fetch", "java"} {
		if _, err := st.KeycloakScript(ctx, sub); err != nil {
			return nil, fmt.Errorf("missing dependency for Keycloak: %w", err)
		}
	}
	if s.Chromium, err = Chromium(root); err != nil {
		return nil, fmt.Errorf("missing dependency: %w", err)
	}
	if st.Bin, err = Build(filepath.Join(work, "bin")); err != nil {
		return nil, err
	}
	s.Stack = st
	st.Out = os.Stderr // scripts/keycloak.sh progress lines
	if _, err := st.StartKeycloak(ctx); err != nil {
		return nil, fmt.Errorf("keycloak: %w (log: %s)", err, st.KeycloakLog())
	}
	stop = func() {
		st.StopAll()
		if err := st.StopKeycloak(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: stopping Keycloak: %v\n", o.Name, err)
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

// Need skips t without TOKENGATE_INTEGRATION=1 and fails it when the suite did not start.
func (s *Suite) Need(t *testing.T) {
	t.Helper()
	if s.skip != "" {
		t.Skip(s.skip)
	}
	if s.err != nil {
		t.Fatalf("suite setup: %v", s.err)
	}
}

// KeycloakVersionRunning is the Keycloak version the stack starts.
func (s *Stack) KeycloakVersionRunning() string {
	v, err := s.KeycloakScript(context.Background(), "version")
	if err != nil {
		return "(unknown version)"
	}
	return v
}

// LoginT logs user in with the password grant (client bff, password user+"-password") and
// exchanges the Keycloak access token at tokengate as bff, failing t unless both succeed and
// Keycloak's answer names the session (session_state, the sid).
func (s *Stack) LoginT(t testing.TB, ctx context.Context, user string) (kc, internal TokenResponse) {
	t.Helper()
	kc, err := s.PasswordGrant(ctx, user, user+"-password")
	if err != nil {
		t.Fatal(err)
	}
	if kc.SessionState == "" {
		t.Fatal("Keycloak token response has no session_state (sid)")
	}
	internal, err = s.Exchange(ctx, kc.AccessToken)
	if err != nil || internal.Status != http.StatusOK {
		t.Fatalf("exchange: %v HTTP %d %s %s", err, internal.Status, internal.Error, internal.Description)
	}
	return kc, internal
}

// LiveBFFSessionT returns demo-bff's live session of username after a browser login through
// the BFF, failing t unless there is one and the service call the BFF made with the exchanged
// token answered 200 for username.
func (s *Stack) LiveBFFSessionT(t testing.TB, ctx context.Context, username string) *BFFSession {
	t.Helper()
	sessions, err := s.BFFSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var live *BFFSession
	for i := range sessions {
		if sessions[i].Username == username && !sessions[i].Ended {
			live = &sessions[i]
		}
	}
	if live == nil {
		t.Fatalf("no live %s session at the BFF after login: %+v", username, sessions)
	}
	if live.LastStatus != http.StatusOK || !strings.Contains(live.LastAnswer, `"username":"`+username+`"`) {
		t.Fatalf("service call after login (the BFF exchanged the Keycloak token): HTTP %d %s", live.LastStatus, live.LastAnswer)
	}
	return live
}
