package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/proctest"
)

var binPath string

func TestMain(m *testing.M) { os.Exit(proctest.Run(m, false, &binPath)) }

// TestStartGateway_ReadyMeasuredAndStopped: the benchmark's gateway (pinned when taskset is
// there, one GOMAXPROCS) starts on its configuration even with Keycloak unreachable, reports
// its cold start, CPU and RSS, and stops on SIGTERM with its log kept next to the data.
func TestStartGateway_ReadyMeasuredAndStopped(t *testing.T) {
	dir := t.TempDir()
	listen := proctest.FreeAddr(t)
	g, err := startGateway(context.Background(), binPath, listen, "http://127.0.0.1:1/realms/bench", filepath.Join(dir, "gateway", "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Kill)
	if g.Base != "http://"+listen || g.ReadyAfter <= 0 {
		t.Fatalf("base %s, ready after %s", g.Base, g.ReadyAfter)
	}
	if total, _, _ := g.rss(); total <= 0 {
		t.Errorf("no RSS read for pid %d", g.Pid())
	}
	if _, err := cpuSeconds(g.Pid()); err != nil {
		t.Errorf("cpu seconds: %v", err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("Cpus_allowed_list:\t%d\n", serverCPU()); g.pinned && !strings.Contains(string(status), want) {
		t.Errorf("pinned, but /proc/%d/status lacks %q", g.Pid(), want)
	}
	g.stop()
	if code := g.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, g.Output())
	}
	log, err := os.ReadFile(filepath.Join(dir, "gateway", "tokengate.log"))
	if err != nil || !strings.Contains(string(log), `"msg":`) {
		t.Fatalf("log next to the data: %v\n%s", err, log)
	}
}
