package replicas

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/proctest"
	"github.com/tokengate/tokengate/internal/replicatest"
	"github.com/tokengate/tokengate/internal/store/etcd/etcdtest"
)

// EnvIntegration enables these tests.
const EnvIntegration = "TOKENGATE_INTEGRATION"

// maxStaleness is store.max_staleness in every replica's configuration.
const maxStaleness = replicatest.MaxStaleness

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
var clientSecret, adminToken = replicatest.ClientSecret, replicatest.AdminToken

const (
	clientID = replicatest.ClientID
	audience = replicatest.Audience
)

// env is an etcd cluster, a fake Keycloak and tokengate replicas sharing the cluster.
type env struct {
	*replicatest.Set
	t        *testing.T
	etcd     *etcdtest.Cluster
	realm    *kctest.Realm
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
	set := replicatest.New(t)
	e := &env{Set: set, t: t, etcd: set.Etcd, realm: set.Realm, edit: edit}
	var cfgs []config.Config
	for _, members := range endpoints {
		var eps []string
		for _, m := range members {
			eps = append(eps, e.etcd.Members[m].ClientURL)
		}
		cfgs = append(cfgs, e.config(eps))
	}
	for i, g := range replicatest.Start(t, binPath, cfgs) {
		e.replicas = append(e.replicas, &replica{Gateway: g, e: e, name: fmt.Sprintf("r%d", i+1)})
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

// leaderMember returns the index of the etcd member that currently leads.
func (e *env) leaderMember() int { return e.LeaderMember(e.t, 10*time.Second) }

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
	c := e.Config(e.t, endpoints)
	if e.edit != nil {
		e.edit(&c)
	}
	return c
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

// client is the BFF's (15 s), quick the probes' (1 s).
var client, quick = replicatest.Client, replicatest.Quick

// reply is a decoded answer of the token or logout endpoint; Status 0 means no answer.
type reply = proctest.Reply

func (r *replica) exchange(subjectToken string) reply {
	return r.Exchange(client, clientID, clientSecret, subjectToken, audience)
}

func (r *replica) renew(refresh string) reply {
	return r.Renew(client, clientID, clientSecret, refresh)
}

func (r *replica) logout(logoutToken string) reply { return r.Logout(client, logoutToken) }

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
