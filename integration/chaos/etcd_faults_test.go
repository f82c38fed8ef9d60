package chaos

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestChaos2_EtcdLeaderLossAndQuorumLoss kills the etcd leader with SIGKILL under load and
// starts it again; then freezes (SIGSTOP) two of the three members for 30 s — quorum lost —
// and thaws them. Every replica must fail closed within max_staleness of losing quorum (no
// 200 without it) and serve again by itself once quorum returns; no acknowledged logout is
// lost (I1–I3).
func TestChaos2_EtcdLeaderLossAndQuorumLoss(t *testing.T) {
	long(t)
	s := newScenario(t, defaultLoad)
	c := s.c
	time.Sleep(2 * time.Second)
	s.step("steady state")

	leader := c.leaderMember()
	m := c.etcd.Members[leader]
	killed := time.Now()
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	s.step("SIGKILL of the etcd leader " + m.Name)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := c.etcd.WaitHealthy(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	rejoined := time.Since(killed)
	time.Sleep(2 * time.Second)
	s.step("the old leader restarted")
	ops, _, touched := c.log.snapshot()
	leaderFigures := summarize(opsBetween(ops, killed, time.Now()), touched)
	s.note("etcd leader %s killed, restarted after 5 s (healthy %s after the kill): %s of renewals failed without retry, %s with one retry",
		m.Name, ms(rejoined), pct(leaderFigures.FailedNoRetry, leaderFigures.Renewals), pct(leaderFigures.FailedRetry, leaderFigures.Renewals))

	// Quorum loss: freeze the leader and one follower.
	leader = c.leaderMember()
	frozen := []int{leader, (leader + 1) % 3}
	freeze := time.Now()
	for _, i := range frozen {
		if err := c.etcd.Members[i].Freeze(); err != nil {
			t.Fatal(err)
		}
	}
	thawed := false
	thaw := func() {
		if !thawed {
			for _, i := range frozen {
				_ = c.etcd.Members[i].Thaw()
			}
			thawed = true
		}
	}
	defer thaw()
	down := pick(10*time.Second, 30*time.Second)
	time.Sleep(down / 2)
	s.step("quorum lost")
	time.Sleep(down - down/2)
	thaw()
	thawAt := time.Now()
	readyAfter := c.waitReady(60 * time.Second)
	time.Sleep(2 * time.Second)
	s.step("quorum back")

	ops, _, touched = c.log.snapshot()
	var failClosed time.Duration
	for idx := range c.replicas {
		o, ok := firstAfter(ops, idx, freeze, func(o op) bool { return isLiveRenewal(touched)(o) && !o.ok() })
		if !ok {
			s.violations = append(s.violations, fmt.Sprintf("I2: r%d never failed closed without quorum", idx+1))
			continue
		}
		failClosed = max(failClosed, o.Start.Sub(freeze))
	}
	served := 0
	for _, o := range ops {
		if o.Kind == "renew" && o.ok() && o.Start.After(freeze.Add(bound)) && o.Start.Before(thawAt) {
			served++
		}
	}
	if served > 0 {
		s.violations = append(s.violations, fmt.Sprintf("I2: %d renewals answered 200 later than max_staleness after quorum was lost", served))
	}
	var held time.Duration
	for _, o := range ops {
		if o.Kind == "logout" && o.Start.After(freeze) && o.Start.Before(thawAt) {
			held = max(held, o.End.Sub(o.Start))
		}
	}
	rec := recoveredAfter(ops, touched, thawAt, 0, 1, 2)
	s.note("quorum lost for %s (2 of 3 members SIGSTOPped): every replica failed closed within %s; logouts meanwhile held up to %s before their 503; after SIGCONT all 3 renewed again within %s (/readyz 200 at all within %s)",
		down, ms(failClosed), ms(held), ms(rec), ms(readyAfter))
	s.finish(row{N: 2, Fault: fmt.Sprintf("etcd: SIGKILL of the leader and restart (5 s); then quorum loss, 2 of 3 members SIGSTOPped for %s", down),
		Unavail: "quorum loss: " + ms(down+rec) + " at every replica (fail closed by design)",
		Recover: fmt.Sprintf("leader: member healthy %s after SIGKILL; quorum: %s after SIGCONT", ms(rejoined), ms(rec))})
}

// opsBetween returns the ops that started in [from, to).
func opsBetween(ops []op, from, to time.Time) []op {
	var out []op
	for _, o := range ops {
		if !o.Start.Before(from) && o.Start.Before(to) {
			out = append(out, o)
		}
	}
	return out
}

// TestChaos7_Kill9UnderLogoutLoad sends 40 back-channel logouts a second (every one an etcd
// transaction, fsynced by a majority of members) and kills, with SIGKILL, a replica, then the
// etcd leader, then every replica at once, starting each again: every logout acknowledged
// before a kill must be in the store, on the SSF stream and refused everywhere (I3, I1).
func TestChaos7_Kill9UnderLogoutLoad(t *testing.T) {
	long(t)
	o := defaultLoad
	o.Logouts, o.LogoutConc, o.Renewals, o.Initial = 40, 8, 100, 150
	s := newScenario(t, o)
	c := s.c
	time.Sleep(3 * time.Second)
	s.step("steady logout load")

	r1 := c.replicas[0]
	r1.Kill()
	time.Sleep(time.Second)
	if err := r1.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	s.step("SIGKILL of r1 and its restart")

	leader := c.leaderMember()
	m := c.etcd.Members[leader]
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	s.step("SIGKILL of the etcd leader " + m.Name + " and its restart")

	all := time.Now()
	for _, r := range c.replicas {
		r.Kill()
	}
	for _, r := range c.replicas {
		if err := r.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	back := time.Since(all)
	time.Sleep(2 * time.Second)
	s.step("SIGKILL of every replica and their restart")
	_, acks, _ := c.log.snapshot()
	s.note("%d logouts acknowledged through 3 kills (a replica, the etcd leader, all 3 replicas at once; all back and ready %s after the last)", len(acks), ms(back))
	s.finish(row{N: 7, Fault: "`kill -9` under 40 logouts/s: a replica, the etcd leader, then all 3 replicas at once",
		Recover: "all 3 replicas ready " + ms(back) + " after SIGKILL"})
}

// TestChaos5_KeycloakDown stops answering at the fake realm (every connection dropped, as a
// stopped Keycloak) for 2 minutes under load: exchanges of new tokens fail (503), renewals go
// on as documented (recheck_after is 10 min here), back-channel logouts are verified with the
// JWKS tokengate already holds; after it returns exchanges succeed again.
func TestChaos5_KeycloakDown(t *testing.T) {
	long(t)
	o := defaultLoad
	o.Exchanges = 3
	s := newScenario(t, o)
	c := s.c
	time.Sleep(2 * time.Second)
	s.step("steady state")
	down := pick(10*time.Second, 2*time.Minute)
	c.realm.SetDown(true)
	downAt := time.Now()
	time.Sleep(down / 2)
	s.step("Keycloak down")
	time.Sleep(down - down/2)
	c.realm.SetDown(false)
	upAt := time.Now()
	time.Sleep(3 * time.Second)
	s.step("Keycloak back")
	ops, _, touched := c.log.snapshot()
	var exN, exFailed int
	statuses := map[string]int{}
	var exBack time.Duration = -1
	for _, o := range ops {
		if o.Kind != "exchange" {
			continue
		}
		if o.Start.After(downAt) && o.Start.Before(upAt) {
			exN++
			if !o.ok() {
				exFailed++
				statuses[fmt.Sprintf("%d %s", o.Status, o.Error)]++
			}
		}
		if o.Start.After(upAt) && o.ok() && (exBack < 0 || o.End.Sub(upAt) < exBack) {
			exBack = o.End.Sub(upAt)
		}
	}
	during := summarize(opsBetween(ops, downAt, upAt), touched)
	s.note("Keycloak down %s: exchanges failed %s (%s); renewals failed %s; logouts acknowledged %d of %d; first exchange 200 %s after it returned",
		down, pct(exFailed, exN), counts(statuses), pct(during.FailedNoRetry, during.Renewals), during.LogoutsAcked, during.Logouts, ms(exBack))
	if during.FailedNoRetry > 0 {
		s.violations = append(s.violations, fmt.Sprintf("renewals failed while Keycloak was down: %d (recheck_after not reached: they must go on)", during.FailedNoRetry))
	}
	if exFailed > 0 && exN > 0 && statuses[fmt.Sprintf("%d %s", http.StatusServiceUnavailable, "temporarily_unavailable")] != exFailed {
		s.note("exchange failures other than 503 temporarily_unavailable: %s", counts(statuses))
	}
	s.finish(row{N: 5, Fault: fmt.Sprintf("Keycloak down %s (fake realm: every connection dropped)", down),
		Unavail: "exchanges: " + ms(upAt.Sub(downAt)) + "; renewals: " + ms(during.LongestGap),
		Recover: "first exchange " + ms(exBack) + " after Keycloak returned"})
}
