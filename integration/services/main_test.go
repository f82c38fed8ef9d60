// Package services proves that services in other languages get tokengate's guarantee, with
// real processes only: a `tokengate serve` process (with the in-process fake Keycloak,
// internal/kctest), the tokengate-auth binary behind Debian's nginx (auth_request) and
// Debian's caddy (forward_auth, deploy/forward-auth/Caddyfile) in front of a Python
// standard-library service, and the plain-library proofs examples/verify-java
// (Nimbus JOSE+JWT) and examples/verify-python (PyJWT). It measures, through nginx and caddy,
// the revocation window after a back-channel logout, and the latency nginx + tokengate-auth add.
//
// It runs when TOKENGATE_INTEGRATION=1 (make test); without it every test skips saying so.
// With it, a missing dependency fails the tests with a message naming the script that
// installs it (before go test starts): scripts/nginx.sh ensure (nginx), scripts/caddy.sh
// ensure (caddy), scripts/examples.sh ensure (PyJWT's virtualenv, the Nimbus jar); python3 and
// java must be on the PATH.
package services

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/demostack"
	"github.com/tokengate/tokengate/internal/proctest"
)

// EnvIntegration enables these tests.
const EnvIntegration = "TOKENGATE_INTEGRATION"

// deps are the programs the tests run.
var deps struct {
	tokengate, auth string // built here, without -race (the test measures across processes)
	nginx           string
	caddy           string
	python          string // the service's interpreter: any python3
	venvPython      string // the interpreter of PyJWT's virtualenv (scripts/examples.sh)
	java, javac     string
	nimbusJar       string
	root            string
}

var setupErr error

func TestMain(m *testing.M) {
	if os.Getenv(EnvIntegration) != "1" {
		os.Exit(m.Run()) // every test skips itself
	}
	dir, err := os.MkdirTemp("", "tokengate-services-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "services:", err)
		os.Exit(1)
	}
	setupErr = setup(dir)
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func setup(bin string) error {
	root, err := demostack.RepoRoot()
	if err != nil {
		return err
	}
	deps.root = root
	script := func(name string, args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(root, "scripts", name), args...).Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = strings.TrimSpace(string(ee.Stderr))
			}
			return "", fmt.Errorf("missing dependency: scripts/%s %s: %v: %s (install it with scripts/%s ensure; make test does)",
				name, strings.Join(args, " "), err, stderr, name)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if deps.nginx, err = script("nginx.sh", "path"); err != nil {
		return err
	}
	if deps.caddy, err = script("caddy.sh", "path"); err != nil {
		return err
	}
	if deps.venvPython, err = script("examples.sh", "python"); err != nil {
		return err
	}
	if deps.nimbusJar, err = script("examples.sh", "java-classpath"); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		to   *string
	}{{"python3", &deps.python}, {"java", &deps.java}, {"javac", &deps.javac}} {
		if *d.to, err = exec.LookPath(d.name); err != nil {
			return fmt.Errorf("missing dependency %s (Debian: python3, openjdk-17-jdk-headless or later): %w", d.name, err)
		}
	}
	if err := proctest.Build(bin, false, "tokengate", "tokengate-auth"); err != nil {
		return err
	}
	deps.tokengate, deps.auth = filepath.Join(bin, "tokengate"), filepath.Join(bin, "tokengate-auth")
	return nil
}

// integration skips without TOKENGATE_INTEGRATION=1 and fails when a dependency is missing.
func integration(t *testing.T) {
	t.Helper()
	if os.Getenv(EnvIntegration) != "1" {
		t.Skip("nginx/caddy + tokengate-auth + Java/Python proofs: set TOKENGATE_INTEGRATION=1 (make test does)")
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}
