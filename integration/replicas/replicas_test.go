package replicas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/testwait"
)

// TestLogoutAtOneReplica_RefusedAtTheOthers measures how long a logout acknowledged by replica 1
// takes to stop renewals at replicas 2 and 3, over 200 sessions: from the moment replica 1's
// 200 arrives to the moment each other replica answers invalid_grant (upper bound: it includes
// that answer's round trip and the polling).
func TestLogoutAtOneReplica_RefusedAtTheOthers(t *testing.T) {
	integration(t)
	e := newEnv(t, all(3)...)
	r1, r2, r3 := e.replicas[0], e.replicas[1], e.replicas[2]
	checkSameJWKS(t, e.replicas)

	const n = 200
	sessions := e.logins(r1, n)
	// Every session renews at every replica first: the refusal below is the logout's doing.
	var wg sync.WaitGroup
	for _, s := range sessions {
		for _, r := range []*replica{r2, r3} {
			wg.Go(func() {
				if got := r.renew(s.refresh); !renewed(got) {
					t.Errorf("renewal at %s before logout: %v", r.name, got)
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	var (
		delays     []time.Duration
		firstTries int
	)
	for _, s := range sessions {
		got := r1.logout(e.logoutToken(s))
		acked := time.Now()
		if got.Status != http.StatusOK {
			t.Fatalf("logout at r1: %v", got)
		}
		var mu sync.Mutex
		for _, r := range []*replica{r2, r3} {
			wg.Go(func() {
				for try := 1; ; try++ {
					got := r.renew(s.refresh)
					switch {
					case refused(got):
						d := time.Since(acked)
						mu.Lock()
						delays = append(delays, d)
						if try == 1 {
							firstTries++
						}
						mu.Unlock()
						return
					case !renewed(got):
						t.Errorf("renewal at %s after logout: %v", r.name, got)
						return
					case time.Since(acked) > 5*time.Second:
						t.Errorf("%s still renews %s 5s after the logout was acknowledged", r.name, s.sid)
						return
					}
					time.Sleep(time.Millisecond)
				}
			})
		}
		wg.Wait()
	}
	if t.Failed() {
		t.FailNow()
	}
	slices.Sort(delays)
	pct := func(p float64) time.Duration { return delays[min(len(delays)-1, int(p*float64(len(delays))))] }
	t.Logf("logout at r1 → renewal refused at r2 and r3: %d measurements over %d sessions: p50 %s, p90 %s, p99 %s, max %s; refused on the first renewal attempt: %d/%d",
		len(delays), n, pct(0.50).Round(10*time.Microsecond), pct(0.90).Round(10*time.Microsecond),
		pct(0.99).Round(10*time.Microsecond), delays[len(delays)-1].Round(10*time.Microsecond), firstTries, len(delays))
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Printf("BENCH replica_propagation samples=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
		len(delays), ms(pct(0.50)), ms(pct(0.99)), ms(delays[len(delays)-1]))
	if p99 := pct(0.99); p99 > 100*time.Millisecond {
		t.Errorf("propagation p99 = %s, want ≤ 100ms", p99)
	}
	checkSameJWKS(t, e.replicas)
}

// TestKill9_NoAcknowledgedLogoutLost kills a replica, then the etcd leader, while logouts
// stream in; every logout that was answered 200 must be refused at every replica afterwards.
func TestKill9_NoAcknowledgedLogoutLost(t *testing.T) {
	integration(t)
	e := newEnv(t, all(3)...)
	r1, r2, r3 := e.replicas[0], e.replicas[1], e.replicas[2]

	t.Run("replica", func(t *testing.T) {
		sessions := e.logins(r2, 150)
		acked := e.logoutWhile(r1, sessions, 40, func() {
			r1.kill9()
		})
		t.Logf("replica r1 killed with SIGKILL after %d acknowledged logouts; %d of %d acknowledged in all",
			40, len(acked), len(sessions))
		e.checkRefused(t, acked, []*replica{r2, r3}, 5*time.Second)
		r1.start()
		e.checkRefused(t, acked, []*replica{r1, r2, r3}, 5*time.Second)
	})

	t.Run("etcd leader", func(t *testing.T) {
		sessions := e.logins(r3, 150)
		leader := e.leaderMember()
		m := e.etcd.Members[leader]
		acked := e.logoutWhile(r2, sessions, 40, func() {
			if err := m.Kill(); err != nil {
				t.Error(err)
			}
		})
		t.Logf("etcd leader %s killed with SIGKILL after %d acknowledged logouts; %d of %d acknowledged in all",
			m.Name, 40, len(acked), len(sessions))
		e.checkRefused(t, acked, e.replicas, 15*time.Second)
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		e.checkRefused(t, acked, e.replicas, 15*time.Second)
	})
}

// logoutWhile sends the sessions' logouts to r from 4 goroutines, calls crash once `after`
// were acknowledged, and returns the acknowledged sessions. Refusals and dropped connections
// after the crash are expected and not returned.
func (e *env) logoutWhile(r *replica, sessions []session, after int, crash func()) []session {
	var (
		mu    sync.Mutex
		acked []session
		once  sync.Once
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(sessions) {
					return
				}
				got := r.logout(e.logoutToken(sessions[i]))
				if got.Status != http.StatusOK {
					continue
				}
				mu.Lock()
				acked = append(acked, sessions[i])
				n := len(acked)
				mu.Unlock()
				if n >= after {
					once.Do(crash)
				}
			}
		})
	}
	wg.Wait()
	once.Do(crash)
	return acked
}

// checkRefused waits until every replica refuses every acknowledged session. A successful
// renewal of an acknowledged logout fails the test at once: that logout was lost. 503s while
// the cluster recovers are waited out.
func (e *env) checkRefused(t *testing.T, acked []session, rs []*replica, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, r := range rs {
		for _, s := range acked {
			for {
				got := r.renew(s.refresh)
				if refused(got) {
					break
				}
				if renewed(got) {
					t.Fatalf("LOST LOGOUT: %s renews session %s whose logout was acknowledged", r.name, s.sid)
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: no verdict on %s within %s: %v", r.name, s.sid, within, got)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

// TestFrozenEtcdMember_ReplicaFailsClosedAndRecovers freezes (SIGSTOP) the only etcd member
// replica 3 talks to. Replica 3 must refuse renewals (503 temporarily_unavailable) and logouts
// within max_staleness, while replicas 1 and 2 go on with the two other members; after SIGCONT
// replica 3 serves again, without a restart, and refuses what was logged out meanwhile.
func TestFrozenEtcdMember_ReplicaFailsClosedAndRecovers(t *testing.T) {
	integration(t)
	e := newEnv(t, []int{0, 1}, []int{0, 1}, []int{2})
	r1, r2, r3 := e.replicas[0], e.replicas[1], e.replicas[2]
	live, loggedOut, refusedLogout := e.login(r1), e.login(r1), e.login(r1)
	for _, s := range []session{live, loggedOut, refusedLogout} {
		if got := r3.renew(s.refresh); !renewed(got) {
			t.Fatalf("renewal at r3 before the freeze: %v", got)
		}
	}

	m3 := e.etcd.Members[2]
	if err := m3.Freeze(); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	thawed := false
	defer func() {
		if !thawed {
			_ = m3.Thaw()
		}
	}()
	var last reply
	took := testwait.Eventually(t, maxStaleness+5*time.Second, "r3 fails closed", func() bool {
		last = r3.renew(live.refresh)
		if !renewed(last) && !unavailable(last) {
			t.Fatalf("renewal at r3 while its etcd is frozen: %v", last)
		}
		return unavailable(last)
	})
	t.Logf("r3 answers renewals 503 temporarily_unavailable %s after SIGSTOP of its etcd member (max_staleness %s)",
		took.Round(time.Millisecond), maxStaleness)
	// The bound itself, whatever the polling delay: r3 proves freshness only through etcd, so
	// max_staleness after SIGSTOP every renewal there must be refused.
	time.Sleep(time.Until(frozen.Add(maxStaleness + 10*time.Millisecond)))
	if got := r3.renew(live.refresh); !unavailable(got) {
		t.Errorf("renewal at r3 max_staleness after SIGSTOP: %v, want 503 temporarily_unavailable", got)
	}
	start := time.Now()
	if got := r3.logout(e.logoutToken(refusedLogout)); got.Status == http.StatusOK {
		t.Fatalf("logout at r3 while its etcd is frozen was acknowledged: %v", got)
	} else {
		t.Logf("logout at r3 while frozen: %v after %s", got, time.Since(start).Round(time.Millisecond))
	}
	if code := r3.ready(); code != http.StatusServiceUnavailable {
		t.Errorf("r3 /readyz while its etcd is frozen = %d, want 503", code)
	}

	// The rest of the cluster goes on: a logout at r1 is acknowledged and r2 refuses it.
	testwait.Eventually(t, 15*time.Second, "logout at r1 while m3 is frozen", func() bool {
		return r1.logout(e.logoutToken(loggedOut)).Status == http.StatusOK
	})
	testwait.Eventually(t, 5*time.Second, "r2 refuses the session logged out at r1", func() bool {
		return refused(r2.renew(loggedOut.refresh))
	})
	if got := r3.renew(loggedOut.refresh); !unavailable(got) {
		t.Errorf("r3 (frozen etcd) on a session logged out elsewhere: %v, want 503", got)
	}

	if err := m3.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	t.Logf("etcd member %s frozen for %s", m3.Name, time.Since(frozen).Round(time.Millisecond))
	took = testwait.Eventually(t, 30*time.Second, "r3 renews again after SIGCONT", func() bool {
		return renewed(r3.renew(live.refresh))
	})
	t.Logf("r3 serves again %s after SIGCONT, without a restart", took.Round(time.Millisecond))
	if got := r3.renew(loggedOut.refresh); !refused(got) {
		t.Errorf("r3 after SIGCONT on the session logged out during the freeze: %v, want invalid_grant", got)
	}
	// The logout r3 answered 503 while frozen was held in memory, refused there at once, and
	// written once etcd answered again (issue 21): every replica refuses that session now.
	if got := r3.renew(refusedLogout.refresh); !refused(got) {
		t.Errorf("r3 after SIGCONT on the session whose logout it held: %v, want invalid_grant", got)
	}
	testwait.Eventually(t, 5*time.Second, "r2 refuses the logout r3 held and wrote", func() bool {
		return refused(r2.renew(refusedLogout.refresh))
	})
	// A retry of that logout (Keycloak sends none; an operator or the stream might) is a 200.
	if got := r3.logout(e.logoutToken(refusedLogout)); got.Status != http.StatusOK {
		t.Errorf("retried logout at r3 after SIGCONT: %v", got)
	}
	if got := r1.renew(refusedLogout.refresh); !refused(got) {
		testwait.Eventually(t, 2*time.Second, "r1 refuses the retried logout", func() bool { return refused(r1.renew(refusedLogout.refresh)) })
	}
	if code := r3.ready(); code != http.StatusOK {
		t.Errorf("r3 /readyz after SIGCONT = %d, want 200", code)
	}
}

var electedRE = regexp.MustCompile(`"event":"leader_elected","election":"key-schedule"`)

// TestKeys_OneLeaderAndOneActiveKeyThroughRotationsAndKill checks the shared keys: one replica
// is elected to run the key schedule; forced rotations hammered at every replica while the
// leader is killed leave exactly one active key, served identically by every replica; another
// replica takes the leadership over.
func TestKeys_OneLeaderAndOneActiveKeyThroughRotationsAndKill(t *testing.T) {
	integration(t)
	e := newEnv(t, all(3)...)
	var leader *replica
	testwait.Eventually(t, 10*time.Second, "one replica is elected for the key schedule", func() bool {
		var elected []*replica
		for _, r := range e.replicas {
			if electedRE.MatchString(r.Output()) {
				elected = append(elected, r)
			}
		}
		if len(elected) > 1 {
			t.Fatalf("%d replicas elected for the key schedule", len(elected))
		}
		if len(elected) == 1 {
			leader = elected[0]
		}
		return leader != nil
	})
	checkSameJWKS(t, e.replicas)
	kid0 := checkOneActiveKey(t, e.replicas)

	var (
		stop    atomic.Bool
		rotated atomic.Int64
		wg      sync.WaitGroup
	)
	for _, r := range e.replicas {
		for range 2 {
			wg.Go(func() {
				for !stop.Load() {
					if r.adminPost("/admin/keys/rotate", `{"force":true}`) == http.StatusOK {
						rotated.Add(1)
					}
				}
			})
		}
	}
	time.Sleep(700 * time.Millisecond)
	leader.kill9()
	killedAt := time.Now()
	time.Sleep(700 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	var survivors []*replica
	for _, r := range e.replicas {
		if r != leader {
			survivors = append(survivors, r)
		}
	}
	t.Logf("%d forced rotations acknowledged across 3 replicas; leader %s killed with SIGKILL mid-way", rotated.Load(), leader.name)
	if rotated.Load() == 0 {
		t.Fatal("no rotation succeeded")
	}
	kid := checkOneActiveKey(t, survivors)
	if kid == kid0 {
		t.Errorf("active key unchanged after the rotations")
	}
	checkSameJWKS(t, survivors)
	var electedAfter time.Duration
	testwait.Eventually(t, 10*time.Second, "a survivor takes the key schedule over", func() bool {
		for _, r := range survivors {
			if electedRE.MatchString(r.Output()) {
				electedAfter = time.Since(killedAt)
				return true
			}
		}
		return false
	})
	t.Logf("a survivor was elected for the key schedule within %s of the kill (election_ttl 2s)", electedAfter.Round(10*time.Millisecond))

	// A token signed at a survivor names the key every replica lists as active.
	at := survivors[1].exchange(e.realm.AccessToken(kctest.Token{Lifetime: 10 * time.Minute}))
	if at.Status != http.StatusOK {
		t.Fatalf("exchange at %s: %v", survivors[1].name, at)
	}
	if got := tokenKID(t, at.AccessToken); got != kid {
		t.Errorf("token signed with %s, but the active key is %s", got, kid)
	}

	leader.start()
	if got := checkOneActiveKey(t, e.replicas); got != kid {
		t.Errorf("restarted %s sees active key %s, others %s", leader.name, got, kid)
	}
	checkSameJWKS(t, e.replicas)
}

// checkSameJWKS waits until every replica serves byte-identical JWKS.
func checkSameJWKS(t *testing.T, rs []*replica) {
	t.Helper()
	var bodies [][]byte
	testwait.Eventually(t, 5*time.Second, "every replica serves the same JWKS", func() bool {
		bodies = bodies[:0]
		for _, r := range rs {
			code, body := r.get("/jwks.json", false)
			if code != http.StatusOK {
				return false
			}
			bodies = append(bodies, body)
		}
		for _, b := range bodies[1:] {
			if !bytes.Equal(b, bodies[0]) {
				return false
			}
		}
		return true
	})
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(bodies[0], &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("JWKS %q: %v", bodies[0], err)
	}
}

// checkOneActiveKey waits until every replica lists exactly one active key, the same one, and
// returns its kid.
func checkOneActiveKey(t *testing.T, rs []*replica) string {
	t.Helper()
	var (
		kid    string
		states []string
	)
	testwait.Eventually(t, 5*time.Second, "one active key, the same at every replica", func() bool {
		kid, states = "", nil
		for _, r := range rs {
			code, body := r.get("/admin/keys", true)
			if code != http.StatusOK {
				return false
			}
			var doc struct {
				Keys []struct {
					ID    string `json:"kid"`
					State string `json:"state"`
				} `json:"keys"`
			}
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatalf("%s /admin/keys: %v", r.name, err)
			}
			var active []string
			for _, k := range doc.Keys {
				if k.State == "active" {
					active = append(active, k.ID)
				}
			}
			states = append(states, fmt.Sprintf("%s: active %v", r.name, active))
			if len(active) != 1 || (kid != "" && active[0] != kid) {
				return false
			}
			kid = active[0]
		}
		return true
	})
	t.Logf("active key %s (%s)", kid, strings.Join(states, "; "))
	return kid
}

func tokenKID(t *testing.T, token string) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Header.KeyID
}
