package proctest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/loopback"
)

// DefaultReadyTimeout bounds how long a starting gateway may take to answer /readyz.
const DefaultReadyTimeout = 20 * time.Second

// Options say how to run a gateway; the configuration itself is a config.Config.
type Options struct {
	// Bin is the tokengate binary (BuildTokengate, Run).
	Bin string
	// Dir receives tokengate.yaml (created if missing). When empty, Start makes a temporary
	// directory that the caller removes (the directory of Gateway.ConfigPath); StartT uses
	// t.TempDir.
	Dir string
	// Prefix is a command the binary runs under, e.g. {"taskset", "-c", "1"}.
	Prefix []string
	// Env is added to the process's environment.
	Env []string
	// LogPath, when set, is the file the output is appended to; otherwise it is kept in memory.
	// Either way Output returns it.
	LogPath string
	// ReadyTimeout bounds the wait for /readyz; DefaultReadyTimeout when zero.
	ReadyTimeout time.Duration
	// PollEvery is how often /readyz is asked while waiting; 10ms when zero (ReadyAfter is only
	// as precise as this).
	PollEvery time.Duration
	// NoWait returns as soon as the process runs, for an admin listener the harness cannot
	// ask (mTLS): the caller decides when it is ready.
	NoWait bool
}

// Gateway is a `tokengate serve` process run from a config.Config that Start wrote with
// config.Marshal. It may be stopped and started again on the same file (same addresses, same
// data directory).
type Gateway struct {
	// Config is the configuration as written, with the addresses Start chose.
	Config config.Config
	// ConfigPath is the file it was written to.
	ConfigPath string
	// Base and Admin are the URLs of the public and the admin listener (http://host:port).
	Base, Admin string
	// ReadyAfter is how long the last start took from exec to the first 200 from /readyz.
	ReadyAfter time.Duration

	opts Options
	out  *SyncBuffer // when opts.LogPath is empty

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// UpstreamFor returns the upstream section for the fake Keycloak realm (internal/kctest) at
// issuer: its introspection client and logout audience, with a 2s timeout.
func UpstreamFor(issuer string) config.Upstream {
	return config.Upstream{Issuer: issuer, ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret,
		LogoutAudiences: []string{kctest.LogoutAudience}, Timeout: config.Duration(2 * time.Second)}
}

// Start writes c to Options.Dir/tokengate.yaml and runs `tokengate serve` on it, returning once
// /readyz answers 200 on the admin listener (unless Options.NoWait). An empty Listen or
// AdminListen gets a free loopback address, and a start that loses the race for one is
// retried on new addresses; an empty Issuer becomes the public listener's URL. On error the
// process is not running.
func Start(ctx context.Context, c config.Config, o Options) (*Gateway, error) {
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "tokengate-proc-")
		if err != nil {
			return nil, err
		}
		o.Dir = dir
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.PollEvery == 0 {
		o.PollEvery = 10 * time.Millisecond
	}
	pickListen, pickAdmin, pickIssuer := c.Listen == "", c.AdminListen == "", c.Issuer == ""
	g := &Gateway{opts: o, ConfigPath: filepath.Join(o.Dir, "tokengate.yaml")}
	if o.LogPath == "" {
		g.out = &SyncBuffer{}
	}
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		var err error
		if pickListen {
			if c.Listen, err = loopback.FreeAddr(); err != nil {
				return nil, err
			}
		}
		if pickAdmin {
			if c.AdminListen, err = loopback.FreeAddr(); err != nil {
				return nil, err
			}
		}
		if pickIssuer {
			c.Issuer = "http://" + c.Listen
		}
		g.Config, g.Base, g.Admin = c, "http://"+c.Listen, "http://"+c.AdminListen
		b, err := config.Marshal(&c)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(g.ConfigPath, append([]byte("# written by internal/proctest\n"), b...), 0o600); err != nil {
			return nil, err
		}
		before := len(g.Output())
		last = g.Restart(ctx)
		// A gateway that lost the race for an address it was given fails to bind: try others.
		if last == nil || !(pickListen || pickAdmin) || !strings.Contains(g.Output()[before:], "address already in use") {
			break
		}
	}
	if last != nil {
		return nil, last
	}
	return g, nil
}

// Restart starts the process again on the same configuration file and waits as Start does. It
// is an error to restart a running gateway.
func (g *Gateway) Restart(ctx context.Context) error {
	g.mu.Lock()
	if g.cmd != nil && !closed(g.done) {
		g.mu.Unlock()
		return errors.New("proctest: the gateway is still running")
	}
	var out io.Writer = g.out
	var logFile *os.File
	if g.opts.LogPath != "" {
		f, err := os.OpenFile(g.opts.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			g.mu.Unlock()
			return err
		}
		logFile, out = f, f
	}
	args := append(append([]string(nil), g.opts.Prefix...), g.opts.Bin, "serve", "--config", g.ConfigPath)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), g.opts.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	// The gateway dies with the test or tool that started it, even when that one is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		g.mu.Unlock()
		if logFile != nil {
			logFile.Close()
		}
		return fmt.Errorf("proctest: start %s: %w", g.opts.Bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(done)
	}()
	g.cmd, g.done = cmd, done
	g.mu.Unlock()
	if g.opts.NoWait {
		return nil
	}
	if err := g.waitReady(ctx, done); err != nil {
		g.Kill()
		return err
	}
	g.ReadyAfter = time.Since(start)
	return nil
}

// waitReady polls /readyz until it answers 200, the process exits, ctx ends or the timeout.
func (g *Gateway) waitReady(ctx context.Context, done chan struct{}) error {
	deadline := time.NewTimer(g.opts.ReadyTimeout)
	defer deadline.Stop()
	probe := &http.Client{Timeout: time.Second}
	defer probe.CloseIdleConnections()
	for {
		if g.ReadyStatus(probe) == http.StatusOK {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("tokengate exited during start-up (exit code %d):\n%s", g.ExitCode(), Tail(g.Output(), 3000))
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("tokengate not ready at %s/readyz within %s:\n%s", g.Admin, g.opts.ReadyTimeout, Tail(g.Output(), 3000))
		case <-time.After(g.opts.PollEvery):
		}
	}
}

// ReadyStatus asks /readyz once with hc and returns the status, 0 when there is no answer.
func (g *Gateway) ReadyStatus(hc *http.Client) int {
	resp, err := hc.Get(g.Admin + "/readyz")
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

func (g *Gateway) current() (*exec.Cmd, chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cmd, g.done
}

// Exited reports whether the last started process has exited (true when none was started).
func (g *Gateway) Exited() bool {
	cmd, done := g.current()
	return cmd == nil || closed(done)
}

// Done is closed when the last started process exits.
func (g *Gateway) Done() <-chan struct{} {
	_, done := g.current()
	return done
}

// Pid is the last started process's id.
func (g *Gateway) Pid() int {
	cmd, _ := g.current()
	return cmd.Process.Pid
}

// ExitCode is the exit code of the last process once it has exited, -1 before or when killed
// by a signal.
func (g *Gateway) ExitCode() int {
	cmd, done := g.current()
	if cmd == nil || !closed(done) {
		return -1
	}
	return cmd.ProcessState.ExitCode()
}

// Wait waits up to d for the process to exit and returns its exit code.
func (g *Gateway) Wait(d time.Duration) (code int, exited bool) {
	_, done := g.current()
	select {
	case <-done:
		return g.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

// Signal sends sig to the running process.
func (g *Gateway) Signal(sig os.Signal) error {
	cmd, _ := g.current()
	if cmd == nil {
		return errors.New("proctest: the gateway was not started")
	}
	return cmd.Process.Signal(sig)
}

// Kill sends SIGKILL (no signal handler, no deferred close, no graceful shutdown) and waits
// for the exit; it does nothing when the process is not running.
func (g *Gateway) Kill() {
	cmd, done := g.current()
	if cmd == nil || closed(done) {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Stop sends sig and waits up to bound for the exit, returning the exit code; past bound the
// process is killed and Stop returns an error.
func (g *Gateway) Stop(sig os.Signal, bound time.Duration) (int, error) {
	cmd, done := g.current()
	if cmd == nil || closed(done) {
		return g.ExitCode(), nil
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return 0, fmt.Errorf("proctest: %v: %w", sig, err)
	}
	if code, ok := g.Wait(bound); ok {
		return code, nil
	}
	g.Kill()
	return 0, fmt.Errorf("proctest: tokengate still running %s after %v (killed)", bound, sig)
}

// Output returns everything the process (every start of it) wrote to stdout and stderr.
func (g *Gateway) Output() string {
	if g.out != nil {
		return g.out.String()
	}
	b, _ := os.ReadFile(g.opts.LogPath)
	return string(b)
}

// PostForm posts form to path on the public listener, with HTTP Basic credentials when
// clientID is not empty, decodes a JSON answer into reply (an answer that is not JSON leaves
// it as it was) and returns the HTTP status.
func (g *Gateway) PostForm(hc *http.Client, path string, form url.Values, clientID, secret string, reply any) (int, error) {
	req, err := http.NewRequest(http.MethodPost, g.Base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientID != "" {
		req.SetBasicAuth(clientID, secret)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, reply)
	return resp.StatusCode, nil
}

// StartT is Start for a test: it fails the test unless the gateway becomes ready, and when
// the test ends it kills the process, fails the test if the race detector reported in its
// output, and logs the output (the end of it) if the test failed.
func StartT(t testing.TB, c config.Config, o Options) *Gateway {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	g, err := Start(context.Background(), c, o)
	if err != nil {
		t.Fatal(err)
	}
	g.CleanupT(t)
	return g
}

// CleanupT does StartT's end-of-test work for a gateway from Start (which, unlike StartT, may
// be called from any goroutine): when t ends, the process is killed, a race detector report in
// its output fails t, and the output is logged if t failed.
func (g *Gateway) CleanupT(t testing.TB) {
	t.Cleanup(func() {
		g.Kill()
		out := g.Output()
		if strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("the race detector fired in tokengate serve (%s)", g.Base)
		}
		if t.Failed() {
			t.Logf("tokengate serve (%s) output:\n%s", g.Base, Tail(out, 20000))
		}
	})
}

// Tail returns the last n bytes of s, marked as cut when they are not all of it.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// StartAll starts one gateway per configuration at once — a replica set sharing a store — and
// returns them in the order of cs once every one answers /readyz. opts(i) gives the options of
// the i-th (each needs its own Dir). On error every gateway it started is killed.
func StartAll(ctx context.Context, cs []config.Config, opts func(i int) Options) ([]*Gateway, error) {
	gs := make([]*Gateway, len(cs))
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { gs[i], errs[i] = Start(ctx, c, opts(i)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, g := range gs {
			if g != nil {
				g.Kill()
			}
		}
		return nil, err
	}
	return gs, nil
}
