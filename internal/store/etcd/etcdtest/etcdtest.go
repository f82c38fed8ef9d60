// Package etcdtest runs real etcd server processes on loopback for tests: one member or a
// cluster, each with its own temporary data directory, stopped when the test ends.
//
// The server is Debian's etcd-server package (/usr/bin/etcd); scripts/etcd.sh installs it.
// TOKENGATE_ETCD_BIN names another binary. A missing server fails the test with a message
// naming the package: it is never a reason to skip.
package etcdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/internal/procrun"
	"github.com/tokengate/tokengate/internal/testwait"
)

// EnvBinary overrides the etcd server binary.
const EnvBinary = "TOKENGATE_ETCD_BIN"

// DefaultBinary is where Debian's etcd-server package installs the server.
const DefaultBinary = "/usr/bin/etcd"

// startTimeout bounds how long a cluster may take to become healthy.
const startTimeout = 30 * time.Second

// Binary returns the etcd server to run, or an error that says how to install it.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("etcdtest: %s=%s: %w", EnvBinary, p, err)
		}
		return p, nil
	}
	if _, err := os.Stat(DefaultBinary); err == nil {
		return DefaultBinary, nil
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("etcdtest: no etcd server at %s: install the Debian package etcd-server "+
		"(scripts/etcd.sh, or apt-get install -y etcd-server etcd-client) or set %s", DefaultBinary, EnvBinary)
}

// Options tune a cluster. The zero value is etcd's defaults.
type Options struct {
	// HeartbeatInterval and ElectionTimeout are etcd's raft timings (100ms and 1s when zero).
	HeartbeatInterval, ElectionTimeout time.Duration
}

// Cluster is a set of etcd members started together.
type Cluster struct {
	Members []*Member
}

// Member is one etcd server process.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	Dir       string // data directory
	bin       string
	args      []string
	logPath   string

	mu   sync.Mutex
	proc *procrun.Process // nil until the first Start
}

// Start runs a cluster of n members on loopback and waits until every member is healthy. It
// fails the test if the server is missing or does not come up; cleanup kills every member and
// removes its data (and logs the members' output when the test failed).
func Start(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	c, err := StartCluster(n, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range c.Members {
				t.Logf("etcd member %s log (tail):\n%s", m.Name, m.LogTail(4000))
			}
		}
		c.Stop()
	})
	return c
}

// StartCluster is Start for callers without a testing.TB (TestMain); they must call Stop.
func StartCluster(n int, opts Options) (*Cluster, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c, err := start(bin, n, opts)
		if err == nil {
			return c, nil
		}
		lastErr = err // most likely a port taken between probing and binding: try new ones
	}
	return nil, fmt.Errorf("etcdtest: start %d-member cluster: %w", n, lastErr)
}

func start(bin string, n int, opts Options) (*Cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	token := fmt.Sprintf("etcdtest-%d-%d", os.Getpid(), time.Now().UnixNano())
	c := &Cluster{}
	var initial []string
	for i := range n {
		dir, err := os.MkdirTemp("", "etcdtest-")
		if err != nil {
			c.Stop()
			return nil, err
		}
		m := &Member{
			Name:      fmt.Sprintf("m%d", i+1),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			Dir:       dir,
			bin:       bin,
		}
		m.logPath = filepath.Join(m.Dir, "etcd.log")
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name,
			"--data-dir", filepath.Join(m.Dir, "data"),
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--logger", "zap",
			"--log-outputs", "stderr",
		}
		if opts.HeartbeatInterval > 0 {
			m.args = append(m.args, "--heartbeat-interval", fmt.Sprint(opts.HeartbeatInterval.Milliseconds()))
		}
		if opts.ElectionTimeout > 0 {
			m.args = append(m.args, "--election-timeout", fmt.Sprint(opts.ElectionTimeout.Milliseconds()))
		}
		if err := m.Start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Endpoints returns every member's client URL.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// WaitHealthy waits until every member answers its /health endpoint with a leader.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	for _, m := range c.Members {
		if err := m.WaitHealthy(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Stop kills every member and removes its data directory.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		_ = m.Kill()
		_ = os.RemoveAll(m.Dir)
	}
}

// Start starts the member's process (again, after Kill: it rejoins with its data directory).
func (m *Member) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		// No ready URL: a member of a new cluster is healthy only once a quorum runs, so the
		// cluster starts every member first and then waits (WaitHealthy).
		m.proc = procrun.New(procrun.Spec{Name: "etcd member " + m.Name, Argv: append([]string{m.bin}, m.args...), LogPath: m.logPath})
	}
	if err := m.proc.Start(context.Background()); err != nil {
		return fmt.Errorf("etcdtest: start member %s: %w", m.Name, err)
	}
	return nil
}

func (m *Member) process() *procrun.Process {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc
}

// Kill sends SIGKILL and waits for the process to exit. Killing a stopped member is a no-op.
func (m *Member) Kill() error {
	p := m.process()
	if p == nil || p.Exited() {
		return nil
	}
	_ = p.Signal(syscall.SIGKILL)
	if _, exited := p.Wait(10 * time.Second); !exited {
		return fmt.Errorf("etcdtest: member %s did not exit after SIGKILL", m.Name)
	}
	return nil
}

// Freeze stops the process with SIGSTOP: its sockets stay open but nothing answers.
func (m *Member) Freeze() error { return m.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen process with SIGCONT.
func (m *Member) Thaw() error { return m.signal(syscall.SIGCONT) }

// Running reports whether the process is alive (frozen counts as alive).
func (m *Member) Running() bool {
	p := m.process()
	return p != nil && !p.Exited()
}

func (m *Member) signal(sig syscall.Signal) error {
	p := m.process()
	if p == nil {
		return fmt.Errorf("etcdtest: member %s was never started", m.Name)
	}
	return p.Signal(sig)
}

// WaitHealthy waits until the member's /health reports true (it has a leader and serves).
func (m *Member) WaitHealthy(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	exited := false
	// Only ctx bounds the wait; a member that exits ends it at once.
	last := testwait.Poll(ctx, math.MaxInt64, 50*time.Millisecond, func() error {
		if !m.Running() {
			exited = true
			return nil
		}
		return m.health(ctx, client)
	})
	switch {
	case exited:
		return fmt.Errorf("etcdtest: member %s exited; log:\n%s", m.Name, m.LogTail(2000))
	case last != nil:
		return fmt.Errorf("etcdtest: member %s not healthy: %w (last: %v); log:\n%s", m.Name, ctx.Err(), last, m.LogTail(2000))
	}
	return nil
}

func (m *Member) health(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return err
	}
	if h.Health != "true" {
		return errors.New("health is " + h.Health)
	}
	return nil
}

// LogTail returns up to the last n bytes of the member's log.
func (m *Member) LogTail(n int) string {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// freePorts returns n loopback ports, free now, distinct and reserved for this process
// (loopback.Port).
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		p, err := loopback.Port()
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	return ports, nil
}
