// Package quickstart runs the README's quick start as written, on a copy of the working tree:
// make build, a real Keycloak started by scripts/keycloak.sh, tokengate serving
// deploy/local/tokengate.yaml, then the README's exchange. The quick start uses fixed loopback
// ports (Keycloak 18080, tokengate 18443), as on a laptop; the test runs it in a network
// namespace of its own (unshare -rn) so that those ports are free and nothing else on the host
// answers on them. It runs when TOKENGATE_INTEGRATION=1 (make test).
package quickstart

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/demostack"
)

// readmeQuickStart returns the sh blocks of README.md's "## Quick start" section, in order.
func readmeQuickStart(t *testing.T, root string) []string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Quick start\n")
	if !ok {
		t.Fatal("README.md has no ## Quick start section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) != 2 {
		t.Fatalf("README.md's quick start has %d sh blocks; the test runs two: start, then the exchange", len(blocks))
	}
	return blocks
}

// copyTree copies the working tree's tracked and untracked, not ignored, files of root into
// dst (no bin/, data/ or other build output), keeping their modes.
func copyTree(t *testing.T, root, dst string) {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, name)
		fi, err := os.Lstat(src)
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// runner runs, inside the network namespace, the quick start's first block (it ends serving,
// in the foreground) in the background, waits for tokengate's readiness, runs the second
// block, and stops what the first started. $1, $2: the blocks' files; $3: the readiness URL.
const runner = `ip link set lo up
setsid bash -euo pipefail "$1" > start.log 2>&1 &
started=$!
stop() { kill -- -"$started" 2>/dev/null; scripts/keycloak.sh stop >/dev/null 2>&1 || true; }
trap stop EXIT
until curl -fs -o /dev/null "$3"; do
  kill -0 "$started" 2>/dev/null || { echo "the quick start's first block ended before tokengate was ready" >&2; exit 1; }
  sleep 1
done
bash -euo pipefail "$2" > try.out 2> try.err
`

// Issue 24: the README's quick start runs as written on a laptop — the commands of its two sh
// blocks, verbatim, from a fresh copy of the tree: make build, Keycloak from
// scripts/keycloak.sh, a KEK file, check-config and serve of deploy/local/tokengate.yaml; then
// the exchange block gets an internal token for alice, and tokengate keeps its keys encrypted
// with the quick start's KEK in ./data.
func TestReadmeQuickStart_RunsAsWritten(t *testing.T) {
	if os.Getenv(demostack.EnvIntegration) != "1" {
		t.Skip("real-Keycloak test: set " + demostack.EnvIntegration + "=1 (make test does) to run it")
	}
	root, err := demostack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ip := "ip"
	for _, bin := range []string{"unshare", "setsid", "ip", "curl", "jq", "make", "go", "git"} {
		p, err := exec.LookPath(bin)
		if err != nil && bin == "ip" {
			p, err = exec.LookPath("/usr/sbin/ip")
		}
		if err != nil {
			t.Fatalf("missing dependency %q (the quick start, or its network namespace, needs it): install it", bin)
		}
		if bin == "ip" {
			ip = p
		}
	}
	if out, err := exec.Command("unshare", "-rn", "true").CombinedOutput(); err != nil {
		t.Fatalf("unshare -rn (an unprivileged user and network namespace) is refused here: %v %s", err, out)
	}
	blocks := readmeQuickStart(t, root)
	work := t.TempDir()
	tree := filepath.Join(work, "tree")
	copyTree(t, root, tree)
	f, err := os.Open(filepath.Join(tree, "deploy", "local", "tokengate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(f, func(string) string { return "x" })
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range blocks {
		if err := os.WriteFile(filepath.Join(work, []string{"start.sh", "try.sh"}[i]), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The laptop's environment: scripts/keycloak.sh's defaults (not a suite's port or version),
	// its run directory under a TMPDIR of the test's own.
	tmp := filepath.Join(work, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "KC_PORT", "KC_RUN_DIR", "KEYCLOAK_VERSION", "TOKENGATE_URL", "KC_REALM_FILE", "TMPDIR",
			config.EnvUpstreamClientSecret, config.EnvKEK:
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "TMPDIR="+tmp, "PATH="+os.Getenv("PATH")+string(os.PathListSeparator)+filepath.Dir(ip))
	t.Cleanup(func() { // a Keycloak left by a killed run (its own process group)
		stop := exec.Command(filepath.Join(tree, "scripts", "keycloak.sh"), "stop")
		stop.Dir, stop.Env = tree, env
		_ = stop.Run()
	})

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, "unshare", "-rn", "bash", "-euo", "pipefail", "-c", runner, "runner",
		filepath.Join(work, "start.sh"), filepath.Join(work, "try.sh"), "http://"+cfg.AdminListen+"/readyz")
	cmd.Dir, cmd.Env = tree, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	startLog, _ := os.ReadFile(filepath.Join(tree, "start.log"))
	try, _ := os.ReadFile(filepath.Join(tree, "try.out"))
	tryErr, _ := os.ReadFile(filepath.Join(tree, "try.err"))
	if err != nil {
		t.Fatalf("the quick start: %v\n%s\n--- first block's output (end):\n%s\n--- second block: %s %s",
			err, out.String(), tail(string(startLog), 40), try, tryErr)
	}
	t.Logf("README quick start ran in %s", time.Since(t0).Round(time.Second))

	var x struct {
		AccessToken     string `json:"access_token"`
		IssuedTokenType string `json:"issued_token_type"`
		RefreshToken    string `json:"refresh_token"`
	}
	if err := json.Unmarshal(try, &x); err != nil || x.AccessToken == "" || x.RefreshToken == "" ||
		x.IssuedTokenType != "urn:ietf:params:oauth:token-type:access_token" {
		t.Fatalf("the exchange block's answer is not an internal token (%v):\n%s\n%s", err, try, tryErr)
	}
	if !strings.Contains(string(startLog), "configuration is valid") {
		t.Errorf("check-config did not pass in the quick start:\n%s", tail(string(startLog), 40))
	}
	if strings.Contains(string(startLog), "unencrypted") {
		t.Errorf("tokengate stored its keys unencrypted: the quick start's KEK was not used:\n%s", tail(string(startLog), 40))
	}
	kek, err := os.Stat(filepath.Join(tree, "data", "kek"))
	if err != nil || kek.Mode().Perm() != 0o600 {
		t.Errorf("data/kek: %v, mode %v; want 0600", err, kek.Mode().Perm())
	}
	db, err := os.Open(filepath.Join(tree, "data", "tokengate.db"))
	if err != nil {
		t.Fatalf("no data/tokengate.db: %v", err)
	}
	defer db.Close()
	raw, _ := io.ReadAll(db)
	if bytes.Contains(raw, []byte(`"d":"`)) {
		t.Error("private key material in clear in data/tokengate.db")
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
