// Package proctest runs the real tokengate binary as a subprocess, for the process tests, the
// multi-process integration tests, the benchmark and the soak: it builds the binary once per
// test binary (Run), writes a config.Config with config.Marshal, starts `tokengate serve` on
// free loopback addresses, waits for /readyz, signals and kills it, and keeps its output
// (Gateway, Start, StartT). SyncBuffer collects output, in-process tests' logs too.
package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/loopback"
)

// BuildTokengate builds cmd/tokengate into a new temporary directory, with the race detector
// when race is set, and returns the binary's path and a function that removes the directory.
// The compiler's output goes to stderr. It is meant for TestMain; Run does all of TestMain.
func BuildTokengate(race bool) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "tokengate-bin-")
	if err != nil {
		return "", nil, err
	}
	if err := Build(dir, race, "tokengate"); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, err
	}
	return filepath.Join(dir, "tokengate"), func() { _ = os.RemoveAll(dir) }, nil
}

// Build builds the module's commands (names under cmd/, e.g. "tokengate-auth") into the
// existing directory dir, one binary per name, with the race detector when race is set. The
// compiler's output goes to stderr.
func Build(dir string, race bool, names ...string) error {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if race {
		args = append(args, "-race")
	}
	for _, n := range names {
		args = append(args, "github.com/tokengate/tokengate/cmd/"+n)
	}
	cmd := exec.Command(goTool(), args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", strings.Join(names, " "), err)
	}
	return nil
}

// Run is a TestMain body: it builds the binary (see BuildTokengate) into *bin, runs the tests
// and removes the binary, returning the exit code for os.Exit.
func Run(m *testing.M, race bool, bin *string) int {
	path, cleanup, err := BuildTokengate(race)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proctest:", err)
		return 1
	}
	defer cleanup()
	*bin = path
	return m.Run()
}

// goTool finds the go command; go test puts its own GOROOT/bin first on the PATH of test binaries.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

// FreeAddr returns a 127.0.0.1 address that was free a moment ago, failing the test if there
// is none. A process started on it may still lose the race for it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
