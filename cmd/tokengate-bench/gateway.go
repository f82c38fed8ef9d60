package main

import (
	"bufio"
	"bytes"
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
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tokengate/tokengate/internal/loopback"
)

const (
	gatewayClient   = "bff"
	gatewayAudience = "demo-service"
)

// serverCPU is the core the gateway process is pinned to (taskset, GOMAXPROCS=1): the server
// gets one core, the load generator the rest. Raw signing is measured on one goroutine to match.
func serverCPU() int { return runtime.NumCPU() - 1 }

// gateway is a real tokengate process under test.
type gateway struct {
	cmd          *exec.Cmd
	base, admin  string
	secret       string
	client       *http.Client
	pinned       bool
	readyAfter   time.Duration // exec to first 200 from /readyz
	waitDone     chan struct{}
	cfgPath, log string
}

// startGateway runs bin serve against the real Keycloak with its data in dataDir, pinned to one
// core. A fresh client secret is written each start; the data (keys, logouts) persists.
func startGateway(ctx context.Context, bin, listen, upstreamIssuer, dataDir string) (*gateway, error) {
	return startGatewayWith(ctx, bin, listen, upstreamIssuer, dataDir, "")
}

// startGatewayWith is startGateway with extra lines in the upstream section (indented by two).
func startGatewayWith(ctx context.Context, bin, listen, upstreamIssuer, dataDir, upstreamExtra string) (*gateway, error) {
	admin, err := loopback.FreeAddr()
	if err != nil {
		return nil, err
	}
	secret, hash := loopback.Secret()
	cfg := fmt.Sprintf(`listen: %q
admin_listen: %q
issuer: "http://%s"
data_dir: %q
log_level: warn
upstream:
  issuer: %q
  client_id: %q
  client_secret: %q
  logout_audiences: [%q]
%stokens: {ttl: 30s, recheck_after: 60s}
limits:
  token: {rate: 1000000, burst: 1000000}
  logout: {rate: 100000, burst: 100000}
clients:
  - {id: %s, secret_sha256: %q, audiences: [%s]}
`, listen, admin, listen, dataDir, upstreamIssuer, introspectID, introspectSecre, bffID, upstreamExtra, gatewayClient, hash, gatewayAudience)
	dir := filepath.Dir(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "tokengate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "tokengate.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	args := []string{bin, "serve", "--config", path}
	pinned := false
	if ts, err := exec.LookPath("taskset"); err == nil && runtime.NumCPU() > 1 {
		args = append([]string{ts, "-c", strconv.Itoa(serverCPU())}, args...)
		pinned = true
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	g := &gateway{cmd: cmd, base: "http://" + listen, admin: "http://" + admin, secret: secret, pinned: pinned,
		client:   &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}},
		waitDone: make(chan struct{}), cfgPath: path, log: logPath}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { _ = cmd.Wait(); logFile.Close(); close(g.waitDone) }()
	probe := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := probe.Get(g.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				g.readyAfter = time.Since(t0)
				return g, nil
			}
		}
		select {
		case <-g.waitDone:
			return nil, fmt.Errorf("tokengate exited during start-up (see %s)", logPath)
		case <-ctx.Done():
			g.stop()
			return nil, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("tokengate not ready after 60s (see %s)", logPath)
		}
	}
}

// stop ends the process with SIGTERM (graceful drain) and waits for it.
func (g *gateway) stop() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.waitDone:
	case <-time.After(20 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.waitDone
	}
	g.client.CloseIdleConnections()
}

// rss reads the process's resident set from /proc: total, anonymous (heap, stacks) and
// file-backed (mostly the mmapped bbolt file: clean page cache the kernel can reclaim).
func (g *gateway) rss() (total, anon, file int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		return 0, 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for key, dst := range map[string]*int64{"VmRSS:": &total, "RssAnon:": &anon, "RssFile:": &file} {
			if v, ok := strings.CutPrefix(sc.Text(), key); ok {
				kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				*dst = kb << 10
			}
		}
	}
	return total, anon, file
}

type answer struct {
	status       int
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

func postToken(ctx context.Context, hc *http.Client, base, secret string, form url.Values) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(gatewayClient, secret)
	resp, err := hc.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode}
	if len(bytes.TrimSpace(body)) > 0 {
		_ = json.Unmarshal(body, &a)
	}
	return a, nil
}

func exchangeForm(subjectToken string) url.Values {
	return url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token": {subjectToken}, "subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}}
}

func renewForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

func (g *gateway) exchange(ctx context.Context, tok string) (answer, error) {
	a, err := postToken(ctx, g.client, g.base, g.secret, exchangeForm(tok))
	if err == nil && a.status != 200 {
		err = fmt.Errorf("exchange: HTTP %d %s %s", a.status, a.Error, a.Description)
	}
	return a, err
}

func (g *gateway) renew(ctx context.Context, rt string) (answer, error) {
	return postToken(ctx, g.client, g.base, g.secret, renewForm(rt))
}

var errRefused = errors.New("renewal refused")

// renewOK renews and fails unless the answer is 200.
func (g *gateway) renewOK(ctx context.Context, rt string) error {
	a, err := g.renew(ctx, rt)
	if err != nil {
		return err
	}
	if a.status == 400 && a.Error == "invalid_grant" {
		return errRefused
	}
	if a.status != 200 {
		return fmt.Errorf("renew: HTTP %d %s", a.status, a.Error)
	}
	return nil
}
