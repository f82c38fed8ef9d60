package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/store/etcd/etcdtest"
	"github.com/tokengate/tokengate/internal/testwait"
)

// etcdConfig is baseConfig on the etcd cluster c under prefix.
func etcdConfig(t *testing.T, upstream string, c *etcdtest.Cluster, prefix string) config.Config {
	cfg := baseConfig(upstream, t.TempDir())
	cfg.Store = config.Store{Backend: config.BackendEtcd, Etcd: config.Etcd{Endpoints: c.Endpoints(), Prefix: prefix}}
	return cfg
}

// TestQuorumLoss_LogoutAnswers503WithinABoundAndIsRefused: two of three etcd members are
// SIGSTOPped under two replicas. A back-channel logout sent at once — while the replica's
// index is still fresh, so it tries to commit — is answered 503 within store.write_timeout
// (1s, plus the HTTP round trip), never held for the seconds etcd's request timeout allows; the
// replica refuses that session's renewals at once. When the members resume, the replicas serve
// again within a bound, the held logout is written to etcd, and the other replica refuses the
// session too.
func TestQuorumLoss_LogoutAnswers503WithinABoundAndIsRefused(t *testing.T) {
	cluster := etcdtest.Start(t, 3, etcdtest.Options{})
	realm := kctest.New(t)
	a := startGateway(t, etcdConfig(t, realm.Issuer(), cluster, "/quorum/"))
	b := startGateway(t, etcdConfig(t, realm.Issuer(), cluster, "/quorum/"))
	sid := "sid-quorum-" + randID(t)
	rt := a.mustExchange(realm.AccessToken(kctest.Token{Subject: "quinn", SID: sid})).RefreshToken
	control := a.mustExchange(realm.AccessToken(kctest.Token{Subject: "control", SID: "sid-control-" + randID(t)})).RefreshToken
	a.mustRenew(rt, "before the freeze")
	b.mustRenew(rt, "before the freeze, at the other replica")

	frozen := cluster.Members[1:]
	t.Cleanup(func() {
		for _, m := range frozen {
			_ = m.Thaw()
		}
	})
	for _, m := range frozen {
		if err := m.Freeze(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	r := a.logout(realm.LogoutToken("quinn", sid))
	took := time.Since(start)
	t.Logf("logout without quorum answered %d after %s", r.Status, took.Round(time.Millisecond))
	wantError(t, "back-channel logout without an etcd quorum", r, http.StatusServiceUnavailable, "temporarily_unavailable")
	if took > 1500*time.Millisecond {
		t.Errorf("logout without quorum held %s, want 503 within store.write_timeout (1s) plus the round trip", took)
	}
	wantError(t, "renewal at the replica that holds the uncommitted logout", a.renew(rt), http.StatusBadRequest, "invalid_grant")

	time.Sleep(6 * time.Second) // past max_staleness (5s): every replica fails closed
	wantError(t, "renewal of another session without quorum", a.renew(control), http.StatusServiceUnavailable, "temporarily_unavailable")
	for _, m := range frozen {
		if err := m.Thaw(); err != nil {
			t.Fatal(err)
		}
	}
	thawed := time.Now()
	var back time.Duration
	for {
		r := a.renew(control)
		if r.Status == http.StatusOK {
			back = time.Since(thawed)
			break
		}
		if time.Since(thawed) > 20*time.Second {
			t.Fatalf("replica still answers %v 20s after SIGCONT", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("replica serves again %s after SIGCONT", back.Round(time.Millisecond))
	if err := testwait.Poll(context.Background(), 10*time.Second, 50*time.Millisecond, a.readyErr); err != nil {
		t.Fatalf("%v 10s after the quorum returned (the held logout is not written?)", err)
	}
	wantError(t, "renewal at the other replica once the held logout is written", b.renew(rt), http.StatusBadRequest, "invalid_grant")
	wantError(t, "renewal at the replica that held it", a.renew(rt), http.StatusBadRequest, "invalid_grant")
}
