package chaos

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The invariant checkers are pure functions of the log, so that each can be shown to fail on
// a synthetic log (invariants_check_test.go) as on a broken build.

// checkI1 — every logout acknowledged with 200 is refused at every replica within bound, for
// ever after (restarts included) — reads the probes: a probe that started more than bound after
// the acknowledgement and got 200 is a violation; a Final probe (taken once every fault was
// healed) must be a refusal proper, 400 invalid_grant.
func checkI1(ops []op, acks map[string]time.Time, bound time.Duration) []string {
	var out []string
	for _, o := range ops {
		if o.Kind != "probe" {
			continue
		}
		at, ok := acks[o.SID]
		if !ok {
			continue
		}
		late := o.Start.Sub(at)
		switch {
		case o.ok() && late > bound:
			out = append(out, fmt.Sprintf("I1: r%d renewed %s %s after its logout was acknowledged (bound %s)", o.Replica+1, o.SID, late.Round(time.Millisecond), bound))
		case o.Final && !o.refusedAsLoggedOut():
			out = append(out, fmt.Sprintf("I1: r%d, faults healed, answers %d %s for %s logged out %s earlier (want 400 invalid_grant)", o.Replica+1, o.Status, o.Error, o.SID, late.Round(time.Millisecond)))
		}
	}
	return out
}

// checkI2 — no renewal of a logged-out session succeeds at any replica later than bound —
// reads the load generator's renewals: one sent more than bound after the session's logout was
// acknowledged (anywhere) and answered 200 is a violation.
func checkI2(ops []op, acks map[string]time.Time, bound time.Duration) []string {
	var out []string
	for _, o := range ops {
		if o.Kind != "renew" || !o.ok() {
			continue
		}
		if at, ok := acks[o.SID]; ok && o.Start.Sub(at) > bound {
			out = append(out, fmt.Sprintf("I2: r%d renewed %s %s after its logout was acknowledged (bound %s)", o.Replica+1, o.SID, o.Start.Sub(at).Round(time.Millisecond), bound))
		}
	}
	return out
}

// checkI3 — no acknowledged write is lost across any restart — counts every acknowledged
// logout in the store and on the SSF stream.
func checkI3(acks map[string]time.Time, inStore, onFeed func(sid string) bool) []string {
	var out []string
	var store, fd int
	for sid := range acks {
		if !inStore(sid) {
			store++
			if store <= 5 {
				out = append(out, "I3: acknowledged logout of "+sid+" is not in the store")
			}
		}
		if !onFeed(sid) {
			fd++
			if fd <= 5 {
				out = append(out, "I3: acknowledged logout of "+sid+" is not on the SSF stream")
			}
		}
	}
	if store > 5 || fd > 5 {
		out = append(out, fmt.Sprintf("I3: %d of %d acknowledged logouts missing from the store, %d from the SSF stream", store, len(acks), fd))
	}
	return out
}

// probe renews every acknowledged session at every running replica once (final: until the
// replica gives a verdict other than fail-closed, at most within) and logs the answers as
// probes for checkI1.
func (c *cluster) probe(dead []session, final bool, within time.Duration) {
	c.t.Helper()
	type job struct {
		r *replica
		s session
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for j := range jobs {
				deadline := time.Now().Add(within)
				for {
					start := time.Now()
					got := j.r.renew(j.s.refresh)
					o := record("probe", j.r, j.s.sid, start, got, 1)
					done := !final || o.refusedAsLoggedOut() || o.ok() || time.Now().After(deadline)
					o.Final = final && done
					c.log.add(o)
					if done {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	for _, s := range dead {
		for _, r := range c.replicas {
			if r.Exited() {
				continue
			}
			jobs <- job{r, s}
		}
	}
	close(jobs)
	wg.Wait()
}

// storedSessions returns the session ids with a revocation record in etcd.
func (c *cluster) storedSessions() map[string]bool {
	c.t.Helper()
	cli := c.etcdClient()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	prefix := c.prefix + "data/sessions/"
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		c.t.Fatalf("read the store: %v", err)
	}
	out := map[string]bool{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), prefix)] = true
	}
	return out
}

// figures are what the published table shows for one scenario.
type figures struct {
	Renewals       int           `json:"renewals"`          // first attempts on live sessions
	FailedNoRetry  int           `json:"failed_no_retry"`   // of which failed
	FailedRetry    int           `json:"failed_with_retry"` // still failed after one retry on another replica
	LongestGap     time.Duration `json:"longest_gap_ns"`    // the longest run of failures at one replica
	LongestGapAt   string        `json:"longest_gap_at"`
	Logouts        int           `json:"logouts"`
	LogoutsAcked   int           `json:"logouts_acked"`
	LongestLogout  time.Duration `json:"longest_logout_ns"` // the longest a logout was held, any answer
	LongestRefusal time.Duration `json:"longest_refused_logout_ns"`
	// LogoutRefusals counts the logouts not acknowledged, by replica and answer.
	LogoutRefusals map[string]int `json:"logout_refusals,omitempty"`
	Violations     []string       `json:"violations,omitempty"`
}

// summarize computes the figures from the log: renewals of sessions no logout was sent for.
func summarize(ops []op, touched touchedSet) figures {
	var f figures
	byReplica := map[int][]op{}
	var firsts []op
	for _, o := range ops {
		switch {
		case o.Kind == "logout":
			f.Logouts++
			d := o.End.Sub(o.Start)
			f.LongestLogout = max(f.LongestLogout, d)
			if o.ok() {
				f.LogoutsAcked++
			} else {
				f.LongestRefusal = max(f.LongestRefusal, d)
				if f.LogoutRefusals == nil {
					f.LogoutRefusals = map[string]int{}
				}
				what := fmt.Sprintf("r%d %d %s", o.Replica+1, o.Status, o.Error)
				if o.Status == 0 {
					what = fmt.Sprintf("r%d no answer", o.Replica+1)
				}
				f.LogoutRefusals[what]++
			}
		case touched.live(o):
			byReplica[o.Replica] = append(byReplica[o.Replica], o)
			if o.Attempt == 1 {
				firsts = append(firsts, o)
			}
		}
	}
	// Match each failed first attempt with its retry: the next attempt-2 op for the sid.
	retries := map[string][]op{}
	for _, o := range ops {
		if o.Kind == "renew" && o.Attempt == 2 {
			retries[o.SID] = append(retries[o.SID], o)
		}
	}
	for _, o := range firsts {
		f.Renewals++
		if !o.failed() && o.ok() {
			continue
		}
		if !o.failed() { // a 4xx on a live session: a failure no retry helps
			f.FailedNoRetry++
			f.FailedRetry++
			continue
		}
		f.FailedNoRetry++
		retried := false
		for _, r := range retries[o.SID] {
			if !r.Start.Before(o.End) && r.Start.Sub(o.End) < time.Second {
				retried = true
				if !r.ok() {
					f.FailedRetry++
				}
				break
			}
		}
		if !retried {
			f.FailedRetry++
		}
	}
	for idx, rs := range byReplica {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Start.Before(rs[j].Start) })
		var runStart time.Time
		for _, o := range rs {
			if !o.ok() {
				if runStart.IsZero() {
					runStart = o.Start
				}
				continue
			}
			if !runStart.IsZero() {
				if g := o.Start.Sub(runStart); g > f.LongestGap {
					f.LongestGap, f.LongestGapAt = g, fmt.Sprintf("r%d", idx+1)
				}
				runStart = time.Time{}
			}
		}
		if !runStart.IsZero() {
			if g := rs[len(rs)-1].End.Sub(runStart); g > f.LongestGap {
				f.LongestGap, f.LongestGapAt = g, fmt.Sprintf("r%d (to the end)", idx+1)
			}
		}
	}
	return f
}

// recoveredAfter returns how long after t every replica in rs answered a live renewal 200
// again (its first success starting after t), or -1 if one never did.
func recoveredAfter(ops []op, touched touchedSet, t time.Time, rs ...int) time.Duration {
	var worst time.Duration
	for _, idx := range rs {
		first := time.Duration(-1)
		for _, o := range ops {
			if touched.live(o) && o.Replica == idx && o.ok() && o.Start.After(t) {
				if d := o.End.Sub(t); first < 0 || d < first {
					first = d
				}
			}
		}
		if first < 0 {
			return -1
		}
		worst = max(worst, first)
	}
	return worst
}
