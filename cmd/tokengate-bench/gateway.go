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

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/internal/proctest"
)

const (
	gatewayClient   = "bff"
	gatewayAudience = "demo-service"
	// delegateAudience is where the service gatewayAudience (a client of the gateway too)
	// delegates the tokens it receives (docs/delegation.md).
	delegateAudience = "payments"
)

// serverCPU is the core the gateway process is pinned to (taskset, GOMAXPROCS=1): the server
// gets one core, the load generator the rest. Raw signing is measured on one goroutine to match.
func serverCPU() int { return runtime.NumCPU() - 1 }

// gateway is a real tokengate process under test.
type gateway struct {
	*proctest.Gateway
	secret string
	// serviceSecret is the client secret of the delegating service gatewayAudience.
	serviceSecret string
	client        *http.Client
	pinned        bool
}

// startGateway runs bin serve against the real Keycloak with its data in dataDir, pinned to one
// core. A fresh client secret is written each start; the data (keys, logouts) persists. The
// configuration and the log (appended) are next to dataDir.
func startGateway(ctx context.Context, bin, listen, upstreamIssuer, dataDir string) (*gateway, error) {
	return startGatewayWith(ctx, bin, listen, upstreamIssuer, dataDir, nil)
}

// startGatewayWith is startGateway with change applied to the configuration (when not nil).
func startGatewayWith(ctx context.Context, bin, listen, upstreamIssuer, dataDir string, change func(*config.Config)) (*gateway, error) {
	secret, hash := loopback.Secret()
	serviceSecret, serviceHash := loopback.Secret()
	unlimited := &config.Limit{Rate: 1000000, Burst: 1000000}
	c := config.Config{
		Listen: listen, Issuer: "http://" + listen, DataDir: dataDir, LogLevel: "warn",
		Upstream: config.Upstream{Issuer: upstreamIssuer, ClientID: introspectID, ClientSecret: introspectSecre,
			LogoutAudiences: []string{bffID}},
		Tokens: config.Tokens{TTL: config.Duration(30 * time.Second), RecheckAfter: config.Duration(60 * time.Second)},
		Limits: config.Limits{Token: unlimited, Logout: &config.Limit{Rate: 100000, Burst: 100000}},
		Clients: []config.Client{{ID: gatewayClient, SecretSHA256: hash, Audiences: []string{gatewayAudience}},
			{ID: gatewayAudience, SecretSHA256: serviceHash, DelegateTo: []string{delegateAudience}}},
	}
	if change != nil {
		change(&c)
	}
	dir := filepath.Dir(dataDir)
	o := proctest.Options{Bin: bin, Dir: dir, LogPath: filepath.Join(dir, "tokengate.log"),
		Env: []string{"GOMAXPROCS=1"}, ReadyTimeout: 60 * time.Second, PollEvery: 2 * time.Millisecond}
	pinned := false
	if ts, err := exec.LookPath("taskset"); err == nil && runtime.NumCPU() > 1 {
		o.Prefix = []string{ts, "-c", strconv.Itoa(serverCPU())}
		pinned = true
	}
	pg, err := proctest.Start(ctx, c, o)
	if err != nil {
		return nil, err
	}
	return &gateway{Gateway: pg, secret: secret, serviceSecret: serviceSecret, pinned: pinned,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}}, nil
}

// stop ends the process with SIGTERM (graceful drain) and waits for it, killing it after 20s.
func (g *gateway) stop() {
	_, _ = g.Stop(syscall.SIGTERM, 20*time.Second)
	g.client.CloseIdleConnections()
}

// rss reads the process's resident set from /proc: total, anonymous (heap, stacks) and
// file-backed (mostly the mmapped bbolt file: clean page cache the kernel can reclaim).
func (g *gateway) rss() (total, anon, file int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", g.Pid()))
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
	return postTokenAs(ctx, hc, base, gatewayClient, secret, form)
}

// postTokenAs is postToken authenticating as client id.
func postTokenAs(ctx context.Context, hc *http.Client, base, id, secret string, form url.Values) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
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
	a, err := postToken(ctx, g.client, g.Base, g.secret, exchangeForm(tok))
	if err == nil && a.status != 200 {
		err = fmt.Errorf("exchange: HTTP %d %s %s", a.status, a.Error, a.Description)
	}
	return a, err
}

// delegateOK has the service gatewayAudience delegate subject (a token for it) to
// delegateAudience, and fails unless the answer is 200.
func (g *gateway) delegateOK(ctx context.Context, subject string) error {
	form := exchangeForm(subject)
	form.Set("audience", delegateAudience)
	a, err := postTokenAs(ctx, g.client, g.Base, gatewayAudience, g.serviceSecret, form)
	if err == nil && (a.status != 200 || a.AccessToken == "") {
		err = fmt.Errorf("delegate: HTTP %d %s %s", a.status, a.Error, a.Description)
	}
	return err
}

func (g *gateway) renew(ctx context.Context, rt string) (answer, error) {
	return postToken(ctx, g.client, g.Base, g.secret, renewForm(rt))
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
