package chaos

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/internal/proctest"
	"github.com/tokengate/tokengate/internal/replicatest"
	"github.com/tokengate/tokengate/internal/store/etcd/etcdtest"
	"github.com/tokengate/tokengate/internal/testwait"
)

// Credentials of the BFF, the operator and the suite's SSF stream, fresh per test binary.
var (
	clientSecret, adminToken       = replicatest.ClientSecret, replicatest.AdminToken
	streamSecret, streamSecretHash = loopback.Secret()
)

const (
	clientID = replicatest.ClientID
	audience = replicatest.Audience
	streamID = "chaos"
	// maxStaleness is store.max_staleness of every replica.
	maxStaleness = replicatest.MaxStaleness
	// window is the measured propagation window between replicas (docs/performance.md: logout
	// at one replica → refused at the others, p99 ≤ 100 ms, target and measurement).
	window = 100 * time.Millisecond
	// bound is I1's and I2's: no replica may renew a session later than this after its logout
	// was acknowledged anywhere.
	bound = maxStaleness + window
)

// cluster is the topology: 3 etcd members, one TCP proxy per (replica, member) pair, 3
// tokengate replicas each talking to etcd only through its own proxies, the fake Keycloak
// realm, and the suite's round-robin client in front of the replicas.
type cluster struct {
	t        *testing.T
	set      *replicatest.Set // nil for a single replica (newSingle)
	etcd     *etcdtest.Cluster
	realm    *kctest.Realm
	prefix   string
	replicas []*replica
	log      *opLog
}

// replica is one `tokengate serve` process and its proxies to the etcd members.
type replica struct {
	*proctest.Gateway
	name    string
	idx     int
	proxies []*proxy
}

// newCluster starts the topology; edit (may be nil) changes every replica's configuration.
func newCluster(t *testing.T, edit func(*config.Config)) *cluster {
	t.Helper()
	set := replicatest.New(t)
	c := &cluster{t: t, set: set, etcd: set.Etcd, realm: set.Realm, prefix: set.Prefix, log: newOpLog()}
	var cfgs []config.Config
	for i := range 3 {
		r := &replica{name: fmt.Sprintf("r%d", i+1), idx: i}
		var eps []string
		for _, m := range c.etcd.Members {
			p, err := newProxy(strings.TrimPrefix(m.ClientURL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			r.proxies = append(r.proxies, p)
			eps = append(eps, p.URL())
		}
		cfg := replicaConfig(t, c.realm, c.prefix, eps)
		if edit != nil {
			edit(&cfg)
		}
		cfgs = append(cfgs, cfg)
		c.replicas = append(c.replicas, r)
	}
	for i, g := range replicatest.Start(t, binPath, cfgs) {
		c.replicas[i].Gateway = g
	}
	return c
}

// replicaConfig is a replica's configuration: the shared etcd cluster at endpoints, generous
// limits, one SSF stream the suite reads (I3).
func replicaConfig(t *testing.T, realm *kctest.Realm, prefix string, endpoints []string) config.Config {
	c := replicatest.Config(realm, t.TempDir(), prefix, endpoints)
	c.LogLevel = "warn"
	c.SSF = config.SSF{Retention: config.Duration(30 * time.Minute),
		Streams: []config.SSFStream{{ID: streamID, Audience: "chaos-feed", SecretSHA256: streamSecretHash}}}
	return c
}

// partition cuts (or, with false, heals) every connection of r to etcd; r stays reachable.
func (r *replica) partition(cut bool) {
	for _, p := range r.proxies {
		if cut {
			p.Cut()
		} else {
			p.Heal()
		}
	}
}

// slow adds d of latency to every chunk between r and etcd.
func (r *replica) slow(d time.Duration) {
	for _, p := range r.proxies {
		p.SetLatency(d)
	}
}

// etcdClient is a direct client on the members (no proxies), for the checkers.
func (c *cluster) etcdClient() *clientv3.Client { return c.set.EtcdClient(c.t) }

// leaderMember returns the index of the etcd member that leads now.
func (c *cluster) leaderMember() int { return c.set.LeaderMember(c.t, 15*time.Second) }

// waitReady waits until every replica answers /readyz 200, returning how long that took.
func (c *cluster) waitReady(within time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	for _, r := range c.replicas {
		testwait.Eventually(c.t, within-time.Since(start), r.name+" ready", func() bool { return r.ReadyStatus(quick) == http.StatusOK })
	}
	return time.Since(start)
}

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

// feed reads the suite's SSF stream through the round robin, acknowledging what it read, and
// remembers every session it saw revoked (I3: every acknowledged logout is on the stream).
type feed struct {
	c    *cluster
	mu   sync.Mutex
	sids map[string]bool
	stop atomic.Bool
	done chan struct{}
	n    atomic.Uint64
}

func (c *cluster) startFeed() *feed {
	f := &feed{c: c, sids: map[string]bool{}, done: make(chan struct{})}
	go f.run()
	c.t.Cleanup(f.Stop)
	return f
}

// Stop ends the reader.
func (f *feed) Stop() {
	if f.stop.CompareAndSwap(false, true) {
		<-f.done
	}
}

// Has reports whether sid was seen on the stream.
func (f *feed) Has(sid string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sids[sid]
}

func (f *feed) run() {
	defer close(f.done)
	var ack []string
	for !f.stop.Load() {
		r := f.c.replicas[int(f.n.Add(1))%len(f.c.replicas)]
		body, _ := json.Marshal(map[string]any{"ack": ack, "maxEvents": 500, "returnImmediately": true})
		req, _ := http.NewRequest(http.MethodPost, r.Base+"/ssf/poll/"+streamID, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+streamSecret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := quick.Do(req)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		var out struct {
			Sets map[string]string `json:"sets"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		ack = ack[:0]
		f.mu.Lock()
		for jti, set := range out.Sets {
			ack = append(ack, jti)
			if sid := setSession(set); sid != "" {
				f.sids[sid] = true
			}
		}
		f.mu.Unlock()
		if len(out.Sets) == 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// setSession returns the session id a session-revoked SET names (its signature is not checked:
// the suite counts events, the verifier package checks SETs).
func setSession(set string) string {
	parts := strings.Split(set, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		SubID struct {
			Session struct {
				ID string `json:"id"`
			} `json:"session"`
		} `json:"sub_id"`
	}
	if json.Unmarshal(b, &claims) != nil {
		return ""
	}
	return claims.SubID.Session.ID
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newSingle starts one replica on bbolt in dataDir (a temporary directory when empty), with the
// fake realm and the suite's SSF stream: the single-node topology of the disk scenarios.
func newSingle(t *testing.T, dataDir string) *cluster {
	t.Helper()
	c := &cluster{t: t, realm: kctest.New(t), log: newOpLog()}
	cfg := replicaConfig(t, c.realm, "", nil)
	cfg.Store = config.Store{}
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	c.replicas = []*replica{{Gateway: replicatest.Start(t, binPath, []config.Config{cfg})[0], name: "r1"}}
	return c
}

// adminRevoked asks the admin API of r whether sid is recorded as logged out (false when it
// cannot tell).
func (r *replica) adminRevoked(sid string) bool {
	req, _ := http.NewRequest(http.MethodGet, r.Admin+"/admin/sessions/"+url.PathEscape(sid), nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var out struct {
		Revoked bool `json:"revoked"`
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&out) == nil && out.Revoked
}
