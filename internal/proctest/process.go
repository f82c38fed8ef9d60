package proctest

import (
	"context"
	"net/http"
	"testing"

	"github.com/tokengate/tokengate/internal/procrun"
)

// The process harness lives in internal/procrun (standard library only, so that etcdtest and
// other leaf test support can use it); these names keep it reachable from proctest.

// Spec says how to run one process (see procrun.Spec).
type Spec = procrun.Spec

// Process is a program run from a Spec (see procrun.Process).
type Process = procrun.Process

// SyncBuffer collects a process's output; safe for the copying goroutines and the test at once.
type SyncBuffer = procrun.SyncBuffer

// DefaultReadyTimeout bounds how long a starting gateway may take to answer /readyz.
const DefaultReadyTimeout = procrun.DefaultReadyTimeout

// NewProcess returns the process of s, not started (Start starts it).
func NewProcess(s Spec) *Process { return procrun.New(s) }

// StartProcess runs s and waits until it is ready (see Spec.ReadyURL). On error the process
// is not running.
func StartProcess(ctx context.Context, s Spec) (*Process, error) { return procrun.Start(ctx, s) }

// StartProcessT is StartProcess for a test (see procrun.StartT).
func StartProcessT(t testing.TB, s Spec) *Process {
	t.Helper()
	return procrun.StartT(t, s)
}

// Status asks url once with GET and returns the status, 0 when there is no answer.
func Status(hc *http.Client, url string) int { return procrun.Status(hc, url) }

// Tail returns the last n bytes of s, marked as cut when they are not all of it.
func Tail(s string, n int) string { return procrun.Tail(s, n) }
