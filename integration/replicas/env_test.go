package replicas

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/internal/proctest"
	"github.com/tokengate/tokengate/internal/store/etcd/etcdtest"
)

// EnvIntegration enables these tests.
const EnvIntegration = "TOKENGATE_INTEGRATION"

// maxStaleness is store.max_staleness in every replica's configuration.
const maxStaleness = 2 * time.Second

// binPath is the tokengate binary built by TestMain.
var binPath string

func TestMain(m *testing.M) {
	if os.Getenv(EnvIntegration) != "1" {
		os.Exit(m.Run()) // every test skips itself
	}
	// Built without -race on purpose: these tests measure propagation latency across processes,
	// and three race-instrumented gateways on a small machine would measure the detector.
	// store/etcd runs under -race in its own package tests.
	os.Exit(proctest.Run(m, false, &binPath))
}

func integration(t *testing.T) {
	t.Helper()
	if os.Getenv(EnvIntegration) != "1" {
		t.Skipf("multi-process replica tests: set %s=1 (make test does)", EnvIntegration)
	}
}

// Credentials of the BFF and of the operator, fresh per test binary.
var (
	clientSecret, clientSecretHash = loopback.Secret()
	adminToken, adminTokenHash     = loopback.Secret()
)

const (
	clientID = "bff"
	audience = "demo-service"
)

// env is an etcd cluster, a fake Keycloak and tokengate replicas sharing the cluster.
type env struct {
	t        *testing.T
	etcd     *etcdtest.Cluster
	realm    *kctest.Realm
	prefix   string
	edit     func(*config.Config) // changes every replica's configuration (nil: none)
	replicas []*replica
}

// newEnv starts a 3-member etcd cluster, the fake realm and one replica per endpoint list:
// endpoints[i] are the member indexes replica i talks to.
func newEnv(t *testing.T, endpoints ...[]int) *env {
	t.Helper()
	return newEnvWith(t, nil, endpoints...)
}

// newEnvWith is newEnv with edit applied to every replica's configuration.
func newEnvWith(t *testing.T, edit func(*config.Config), endpoints ...[]int) *env {
	t.Helper()
	e := &env{t: t, etcd: etcdtest.Start(t, 3, etcdtest.Options{}), realm: kctest.New(t), edit: edit}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	e.prefix = "/tokengate-" + hex.EncodeToString(b) + "/"
	e.replicas = make([]*replica, len(endpoints))
	var wg sync.WaitGroup
	for i, members := range endpoints {
		var eps []string
		for _, m := range members {
			eps = append(eps, e.etcd.Members[m].ClientURL)
		}
		wg.Go(func() { e.replicas[i] = e.startReplica(fmt.Sprintf("r%d", i+1), eps) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return e
}

// all is every replica talking to every member.
func all(n int) [][]int {
	out := make([][]int, n)
	for i := range out {
		out[i] = []int{0, 1, 2}
	}
	return out
}

// etcdClient returns a client on the cluster for the test's own inspection.
func (e *env) etcdClient() *clientv3.Client {
	e.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.etcd.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// leaderMember returns the index of the etcd member that currently leads.
func (e *env) leaderMember() int {
	e.t.Helper()
	cli := e.etcdClient()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, m := range e.etcd.Members {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cli.Status(ctx, m.ClientURL)
			cancel()
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				return i
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatal("no etcd leader found")
	return -1
}

// session is one Keycloak login exchanged at a replica.
type session struct {
	sub, sid, refresh string
}

// login mints an upstream token for a new session and exchanges it at r.
func (e *env) login(r *replica) session {
	e.t.Helper()
	s := session{sub: "user-" + randHex(6), sid: "sid-" + randHex(8)}
	at := e.realm.AccessToken(kctest.Token{Subject: s.sub, SID: s.sid, Lifetime: 10 * time.Minute})
	resp := r.exchange(at)
	if resp.Status != http.StatusOK || resp.RefreshToken == "" {
		e.t.Fatalf("exchange at %s: %v", r.name, resp)
	}
	s.refresh = resp.RefreshToken
	return s
}

// logins makes n sessions at r, a few at a time.
func (e *env) logins(r *replica, n int) []session {
	e.t.Helper()
	out := make([]session, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range out {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = e.login(r)
		})
	}
	wg.Wait()
	if e.t.Failed() {
		e.t.FailNow()
	}
	return out
}

func (e *env) logoutToken(s session) string { return e.realm.LogoutToken(s.sub, s.sid) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// replica is one `tokengate serve` process.
type replica struct {
	*proctest.Gateway
	e    *env
	name string
}

// config is a replica's configuration: the shared etcd cluster at endpoints, generous limits.
func (e *env) config(endpoints []string) config.Config {
	unlimited := &config.Limit{Rate: 100000, Burst: 100000}
	c := config.Config{
		Issuer: "https://tokengate.test", DataDir: e.t.TempDir(), LogLevel: "info",
		Upstream: proctest.UpstreamFor(e.realm.Issuer()),
		Tokens:   config.Tokens{TTL: config.Duration(30 * time.Second), RecheckAfter: config.Duration(10 * time.Minute)},
		Limits:   config.Limits{Token: unlimited, Logout: unlimited, AuthFailures: &config.Limit{Rate: 1000, Burst: 1000}},
		Admin:    config.Admin{Tokens: []config.AdminToken{{Name: "ops", SHA256: adminTokenHash}}},
		Clients:  []config.Client{{ID: clientID, SecretSHA256: clientSecretHash, Audiences: []string{audience}}},
		Store: config.Store{Backend: config.BackendEtcd, MaxStaleness: config.Duration(maxStaleness),
			Etcd: config.Etcd{Endpoints: endpoints, Prefix: e.prefix, ElectionTTL: config.Duration(2 * time.Second)}},
	}
	if e.edit != nil {
		e.edit(&c)
	}
	return c
}

// startReplica starts a replica and waits for /readyz; it may run on any goroutine, so it
// reports a failure with Errorf and returns nil.
func (e *env) startReplica(name string, endpoints []string) *replica {
	g, err := proctest.Start(context.Background(), e.config(endpoints),
		proctest.Options{Bin: binPath, Dir: e.t.TempDir(), ReadyTimeout: 30 * time.Second})
	if err != nil {
		e.t.Errorf("replica %s: %v", name, err)
		return nil
	}
	g.CleanupT(e.t)
	return &replica{Gateway: g, e: e, name: name}
}

// start starts a killed replica again (same file, addresses and data directory) and waits
// for /readyz.
func (r *replica) start() {
	if err := r.Restart(context.Background()); err != nil {
		r.e.t.Errorf("replica %s: %v", r.name, err)
	}
}

// kill9 sends SIGKILL and waits for the exit.
func (r *replica) kill9() { r.Kill() }

func (r *replica) ready() int { return r.ReadyStatus(quick) }

var (
	transport = &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second}
	client    = &http.Client{Transport: transport, Timeout: 15 * time.Second}
	quick     = &http.Client{Transport: transport, Timeout: time.Second}
)

// reply is a decoded answer of the token or logout endpoint; Status 0 means no answer.
type reply struct {
	Status       int
	Err          error
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

func (r reply) String() string {
	if r.Err != nil {
		return "no answer: " + r.Err.Error()
	}
	if r.Error != "" {
		return fmt.Sprintf("%d %s (%s)", r.Status, r.Error, r.Description)
	}
	return fmt.Sprint(r.Status)
}

func (r *replica) post(path string, basic bool, form url.Values) reply {
	req, err := http.NewRequest(http.MethodPost, r.Base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return reply{Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(clientID, clientSecret)
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	out := reply{Status: resp.StatusCode, Err: err}
	if len(bytes.TrimSpace(body)) > 0 && json.Unmarshal(body, &out) != nil {
		out.Error = "non-json: " + string(body)
	}
	return out
}

func (r *replica) exchange(subjectToken string) reply {
	return r.post("/token", true, url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {subjectToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {audience},
	})
}

func (r *replica) renew(refresh string) reply {
	return r.post("/token", true, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
}

func (r *replica) logout(logoutToken string) reply {
	return r.post("/backchannel-logout", false, url.Values{"logout_token": {logoutToken}})
}

// get fetches a path of the public (or, with admin, the admin) listener.
func (r *replica) get(path string, admin bool) (int, []byte) {
	base := r.Base
	if admin {
		base = r.Admin
	}
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	if admin {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// adminPost posts a JSON body to the admin API.
func (r *replica) adminPost(path, body string) int {
	req, _ := http.NewRequest(http.MethodPost, r.Admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// refused reports whether a renewal was refused as logged out.
func refused(r reply) bool { return r.Status == http.StatusBadRequest && r.Error == "invalid_grant" }

// renewed reports whether a renewal succeeded.
func renewed(r reply) bool { return r.Status == http.StatusOK && r.AccessToken != "" }

// unavailable reports a fail-closed answer.
func unavailable(r reply) bool {
	return r.Status == http.StatusServiceUnavailable && r.Error == "temporarily_unavailable"
}
