// Package procrun runs one program as a test's or a tool's child process: it starts it from a
// Spec, waits until a ready URL answers, keeps its output, and signals, stops or kills it
// (Process). It imports only the standard library, so that any test support may build on it:
// internal/proctest (the tokengate gateway), internal/store/etcd/etcdtest (etcd members),
// integration/services and internal/demostack.
package procrun

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultReadyTimeout bounds how long a starting process may take to become ready.
const DefaultReadyTimeout = 20 * time.Second

// Spec says how to run one process: tokengate (Gateway), tokengate-auth, the demo's
// programs, nginx, caddy, a script.
type Spec struct {
	// Name names the process in messages; the program's base name when empty.
	Name string
	// Argv is the command line: the program (a path, or a name looked up on the PATH) and its
	// arguments, with any prefix command (e.g. taskset) first.
	Argv []string
	// Env is added to the process's environment.
	Env []string
	// LogPath, when set, is the file the output is appended to; otherwise it is kept in memory.
	// Either way Output returns it.
	LogPath string
	// ReadyURL is asked with GET until it answers ReadyStatus; when empty the process counts as
	// ready once it runs.
	ReadyURL string
	// ReadyStatus is the status that means ready; http.StatusOK when zero.
	ReadyStatus int
	// ReadyTimeout bounds the wait for ReadyURL; DefaultReadyTimeout when zero.
	ReadyTimeout time.Duration
	// PollEvery is how often ReadyURL is asked while waiting; 10ms when zero (ReadyAfter is
	// only as precise as this).
	PollEvery time.Duration
}

// Process is a program run from a Spec, killed with the test or tool that started it (even
// when that one is killed). It may be stopped and started again on the same Spec; its output
// is kept across starts.
type Process struct {
	// ReadyAfter is how long the last start took from exec to the first ready answer.
	ReadyAfter time.Duration

	spec Spec
	out  *SyncBuffer // when spec.LogPath is empty

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// New returns the process of s, not started (Process.Start starts it).
func New(s Spec) *Process {
	if s.Name == "" && len(s.Argv) > 0 {
		s.Name = filepath.Base(s.Argv[0])
	}
	if s.ReadyStatus == 0 {
		s.ReadyStatus = http.StatusOK
	}
	if s.ReadyTimeout == 0 {
		s.ReadyTimeout = DefaultReadyTimeout
	}
	if s.PollEvery == 0 {
		s.PollEvery = 10 * time.Millisecond
	}
	p := &Process{spec: s}
	if s.LogPath == "" {
		p.out = &SyncBuffer{}
	}
	return p
}

// Start runs s and waits until it is ready (see Spec.ReadyURL). On error the process is not
// running.
func Start(ctx context.Context, s Spec) (*Process, error) {
	p := New(s)
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// StartT is Start for a test: it fails the test unless the process becomes
// ready, and when the test ends it stops the process (SIGTERM, SIGKILL after 5s) and logs its
// output if the test failed.
func StartT(t testing.TB, s Spec) *Process {
	t.Helper()
	p, err := Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = p.Stop(syscall.SIGTERM, 5*time.Second)
		if t.Failed() {
			t.Logf("%s output:\n%s", p.spec.Name, Tail(p.Output(), 20000))
		}
	})
	return p
}

// Name is the process's name in messages.
func (p *Process) Name() string { return p.spec.Name }

// SetReadyURL changes the URL the next Start waits for (none when empty); for a process whose
// address changes between starts. It must not be called while Start runs.
func (p *Process) SetReadyURL(url string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.spec.ReadyURL = url
}

// Start runs the process and waits until it is ready, ctx ends or the ready timeout passes; a
// process that is not ready is killed. It is an error to start a running process.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.cmd != nil && !closed(p.done) {
		p.mu.Unlock()
		return fmt.Errorf("procrun: %s is still running", p.spec.Name)
	}
	var out io.Writer = p.out
	var logFile *os.File
	if p.spec.LogPath != "" {
		f, err := os.OpenFile(p.spec.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			p.mu.Unlock()
			return err
		}
		logFile, out = f, f
	}
	cmd := exec.Command(p.spec.Argv[0], p.spec.Argv[1:]...)
	cmd.Env = append(os.Environ(), p.spec.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	// The process dies with the test or tool that started it, even when that one is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		if logFile != nil {
			logFile.Close()
		}
		return fmt.Errorf("procrun: start %s: %w", p.spec.Argv[0], err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(done)
	}()
	p.cmd, p.done = cmd, done
	readyURL := p.spec.ReadyURL
	p.mu.Unlock()
	if readyURL == "" {
		return nil
	}
	if err := p.waitReady(ctx, done, readyURL); err != nil {
		p.Kill()
		return err
	}
	p.ReadyAfter = time.Since(start)
	return nil
}

// waitReady polls ReadyURL until it answers ReadyStatus, the process exits, ctx ends or the
// timeout.
func (p *Process) waitReady(ctx context.Context, done chan struct{}, readyURL string) error {
	deadline := time.NewTimer(p.spec.ReadyTimeout)
	defer deadline.Stop()
	probe := &http.Client{Timeout: time.Second}
	defer probe.CloseIdleConnections()
	for {
		if Status(probe, readyURL) == p.spec.ReadyStatus {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited during start-up (exit code %d):\n%s", p.spec.Name, p.ExitCode(), Tail(p.Output(), 3000))
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%s not ready at %s within %s:\n%s", p.spec.Name, readyURL, p.spec.ReadyTimeout, Tail(p.Output(), 3000))
		case <-time.After(p.spec.PollEvery):
		}
	}
}

// Status asks url once with GET and returns the status, 0 when there is no answer.
func Status(hc *http.Client, url string) int {
	resp, err := hc.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (p *Process) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// Exited reports whether the last started process has exited (true when none was started).
func (p *Process) Exited() bool {
	cmd, done := p.current()
	return cmd == nil || closed(done)
}

// Done is closed when the last started process exits.
func (p *Process) Done() <-chan struct{} {
	_, done := p.current()
	return done
}

// Pid is the last started process's id.
func (p *Process) Pid() int {
	cmd, _ := p.current()
	return cmd.Process.Pid
}

// ExitCode is the exit code of the last process once it has exited, -1 before or when killed
// by a signal.
func (p *Process) ExitCode() int {
	cmd, done := p.current()
	if cmd == nil || !closed(done) {
		return -1
	}
	return cmd.ProcessState.ExitCode()
}

// Wait waits up to d for the process to exit and returns its exit code.
func (p *Process) Wait(d time.Duration) (code int, exited bool) {
	_, done := p.current()
	select {
	case <-done:
		return p.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

// Signal sends sig to the running process.
func (p *Process) Signal(sig os.Signal) error {
	cmd, _ := p.current()
	if cmd == nil {
		return fmt.Errorf("procrun: %s was not started", p.spec.Name)
	}
	return cmd.Process.Signal(sig)
}

// Kill sends SIGKILL (no signal handler, no deferred close, no graceful shutdown) and waits
// for the exit; it does nothing when the process is not running.
func (p *Process) Kill() {
	cmd, done := p.current()
	if cmd == nil || closed(done) {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Stop sends sig and waits up to bound for the exit, returning the exit code; past bound the
// process is killed and Stop returns an error.
func (p *Process) Stop(sig os.Signal, bound time.Duration) (int, error) {
	cmd, done := p.current()
	if cmd == nil || closed(done) {
		return p.ExitCode(), nil
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return 0, fmt.Errorf("procrun: %v: %w", sig, err)
	}
	if code, ok := p.Wait(bound); ok {
		return code, nil
	}
	p.Kill()
	return 0, fmt.Errorf("procrun: %s still running %s after %v (killed)", p.spec.Name, bound, sig)
}

// Output returns everything the process (every start of it) wrote to stdout and stderr.
func (p *Process) Output() string {
	if p.out != nil {
		return p.out.String()
	}
	b, _ := os.ReadFile(p.spec.LogPath)
	return string(b)
}

// Tail returns the last n bytes of s, marked as cut when they are not all of it.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// SyncBuffer collects a process's output; safe for the copying goroutines and the test at once.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
