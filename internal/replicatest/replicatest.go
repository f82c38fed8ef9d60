// Package replicatest is the ground the multi-process replica tests (integration/replicas,
// integration/chaos) stand on: a 3-member etcd cluster (etcdtest), the fake Keycloak realm
// (kctest), a fresh key prefix, the BFF's and the operator's credentials, a replica's
// configuration, and the start of the replicas as `tokengate serve` processes (proctest).
package replicatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/internal/proctest"
	"github.com/tokengate/tokengate/internal/store/etcd/etcdtest"
	"github.com/tokengate/tokengate/internal/testwait"
)

const (
	// ClientID is the BFF registered at every replica; Audience the one audience it may ask for.
	ClientID = "bff"
	Audience = "demo-service"
	// MaxStaleness is store.max_staleness of every replica.
	MaxStaleness = 2 * time.Second
	// ReadyTimeout bounds a replica's start (etcd, leader election).
	ReadyTimeout = 30 * time.Second
)

// The clients the tests ask the replicas with, on one transport.
var (
	transport = &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	// Client is the BFF's: a generous timeout, so that a held request is measured, not cut.
	Client = &http.Client{Transport: transport, Timeout: 15 * time.Second}
	// Quick is for probes (/readyz, the SSF poll): one second.
	Quick = &http.Client{Transport: transport, Timeout: time.Second}
)

// Credentials of the BFF and of the operator (admin API bearer token), fresh per test binary.
var (
	ClientSecret, clientSecretHash = loopback.Secret()
	AdminToken, adminTokenHash     = loopback.Secret()
)

// Set is a 3-member etcd cluster, the fake realm and a key prefix of its own, for the
// replicas of one test.
type Set struct {
	Etcd   *etcdtest.Cluster
	Realm  *kctest.Realm
	Prefix string
}

// New starts the etcd cluster and the realm; both stop when t ends.
func New(t *testing.T) *Set {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &Set{Etcd: etcdtest.Start(t, 3, etcdtest.Options{}), Realm: kctest.New(t),
		Prefix: "/tokengate-" + hex.EncodeToString(b) + "/"}
}

// Config is a replica's configuration: realm upstream, ClientID, the operator's token,
// generous limits, and the etcd store at endpoints under prefix. Callers change what their
// tests need (log level, SSF streams; a bbolt store for one replica alone).
func Config(realm *kctest.Realm, dataDir, prefix string, endpoints []string) config.Config {
	unlimited := &config.Limit{Rate: 100000, Burst: 100000}
	return config.Config{
		Issuer: "https://tokengate.test", DataDir: dataDir, LogLevel: "info",
		Upstream: proctest.UpstreamFor(realm.Issuer()),
		Tokens:   config.Tokens{TTL: config.Duration(30 * time.Second), RecheckAfter: config.Duration(10 * time.Minute)},
		Limits:   config.Limits{Token: unlimited, Logout: unlimited, AuthFailures: &config.Limit{Rate: 1000, Burst: 1000}},
		Admin:    config.Admin{Tokens: []config.AdminToken{{Name: "ops", SHA256: adminTokenHash}}},
		Clients:  []config.Client{{ID: ClientID, SecretSHA256: clientSecretHash, Audiences: []string{Audience}}},
		Store: config.Store{Backend: config.BackendEtcd, MaxStaleness: config.Duration(MaxStaleness),
			Etcd: config.Etcd{Endpoints: endpoints, Prefix: prefix, ElectionTTL: config.Duration(2 * time.Second)}},
	}
}

// Config is Config on this set's realm and prefix, in a new temporary data directory.
func (s *Set) Config(t testing.TB, endpoints []string) config.Config {
	return Config(s.Realm, t.TempDir(), s.Prefix, endpoints)
}

// Start starts one replica of bin per configuration at once and returns them once every one
// answers /readyz (ReadyTimeout), failing t otherwise; they are killed when t ends.
func Start(t testing.TB, bin string, cfgs []config.Config) []*proctest.Gateway {
	t.Helper()
	gs, err := proctest.StartAll(context.Background(), cfgs, func(int) proctest.Options {
		return proctest.Options{Bin: bin, Dir: t.TempDir(), ReadyTimeout: ReadyTimeout}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		g.CleanupT(t)
	}
	return gs
}

// EtcdClient returns a client on the members, for the test's own inspection; it is closed
// when t ends.
func (s *Set) EtcdClient(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Etcd.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

var errNoLeader = errors.New("no etcd leader found")

// LeaderMember returns the index of the etcd member that leads now, failing t when none is
// found within d.
func (s *Set) LeaderMember(t testing.TB, d time.Duration) int {
	t.Helper()
	cli := s.EtcdClient(t)
	leader := -1
	err := testwait.Poll(context.Background(), d, 50*time.Millisecond, func() error {
		for i, m := range s.Etcd.Members {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cli.Status(ctx, m.ClientURL)
			cancel()
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				leader = i
				return nil
			}
		}
		return errNoLeader
	})
	if err != nil {
		t.Fatal(err)
	}
	return leader
}
