package procrun

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testwait"
)

// A program that exits while Start waits for it is an error naming it, its exit code and its
// output; it is not left running.
func TestProcess_ExitDuringStartUpIsAnError(t *testing.T) {
	_, err := Start(context.Background(), Spec{Name: "quitter", Argv: []string{"sh", "-c", "echo bye; exit 3"},
		ReadyURL: "http://127.0.0.1:1/never", ReadyTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "quitter exited during start-up (exit code 3)") || !strings.Contains(err.Error(), "bye") {
		t.Fatalf("err = %v", err)
	}
}

// Ready means the ready URL answers the ready status (here 401, as caddy's), not any answer;
// the output goes to LogPath, appended across starts; Stop ends the process with a signal.
func TestProcess_ReadyOnItsStatusLogsAndStops(t *testing.T) {
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if asked.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	log := filepath.Join(t.TempDir(), "p.log")
	p, err := Start(context.Background(), Spec{Argv: []string{"sh", "-c", "echo started; exec sleep 30"},
		LogPath: log, ReadyURL: srv.URL, ReadyStatus: http.StatusUnauthorized})
	if err != nil {
		t.Fatal(err)
	}
	if asked.Load() < 3 || p.Name() != "sh" || p.Exited() {
		t.Fatalf("ready after %d answers, name %q, exited %v", asked.Load(), p.Name(), p.Exited())
	}
	if _, err := p.Stop(syscall.SIGTERM, 5*time.Second); err != nil || !p.Exited() {
		t.Fatalf("stop: %v, exited %v", err, p.Exited())
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The second start is ready at once (the server answers 401 by now), maybe before the
	// shell wrote its line: wait for it, then kill.
	testwait.Eventually(t, 10*time.Second, "the second start's line", func() bool { return strings.Count(p.Output(), "started") == 2 })
	p.Kill()
	if got := p.Output(); strings.Count(got, "started") != 2 {
		t.Fatalf("output of two starts = %q", got)
	}
}
