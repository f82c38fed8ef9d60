package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests run without any process: they feed each invariant checker a synthetic log of a
// broken build and assert it reports the violation — and nothing on the same log without it.

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestCheckI2_ReportsALateRenewal(t *testing.T) {
	acks := map[string]time.Time{"sid-a": at(0)}
	good := []op{
		{Kind: "renew", Replica: 1, SID: "sid-a", Start: at(bound - time.Millisecond), Status: 200}, // within the bound
		{Kind: "renew", Replica: 2, SID: "sid-a", Start: at(bound + time.Second), Status: 400, Error: "invalid_grant"},
		{Kind: "renew", Replica: 2, SID: "sid-a", Start: at(bound + time.Second), Status: 503, Error: "temporarily_unavailable"},
		{Kind: "renew", Replica: 0, SID: "sid-b", Start: at(time.Hour), Status: 200}, // never logged out
	}
	if v := checkI2(good, acks, bound); len(v) != 0 {
		t.Fatalf("checkI2 on a correct log: %v", v)
	}
	// A replica answering from a stale index: a 200 sent 3 s after the logout's 200.
	broken := append(good, op{Kind: "renew", Replica: 2, SID: "sid-a", Start: at(3 * time.Second), Status: 200})
	v := checkI2(broken, acks, bound)
	if len(v) != 1 || !strings.HasPrefix(v[0], "I2: r3 renewed sid-a 3s after") {
		t.Fatalf("checkI2 on a late 200 = %v", v)
	}
}

func TestCheckI1_ReportsALateProbeAndAnUnrefusedFinal(t *testing.T) {
	acks := map[string]time.Time{"sid-a": at(0)}
	good := []op{
		{Kind: "probe", Replica: 0, SID: "sid-a", Start: at(bound + time.Second), Status: 503, Error: "temporarily_unavailable"},
		{Kind: "probe", Replica: 0, SID: "sid-a", Start: at(time.Minute), Status: 400, Error: "invalid_grant", Final: true},
		{Kind: "renew", Replica: 0, SID: "sid-a", Start: at(time.Millisecond), Status: 200},
	}
	if v := checkI1(good, acks, bound); len(v) != 0 {
		t.Fatalf("checkI1 on a correct log: %v", v)
	}
	// A restarted replica that lost the logout: its probe renews the session a minute later.
	late := append(good, op{Kind: "probe", Replica: 1, SID: "sid-a", Start: at(time.Minute), Status: 200})
	if v := checkI1(late, acks, bound); len(v) != 1 || !strings.Contains(v[0], "I1: r2 renewed sid-a 1m0s after") {
		t.Fatalf("checkI1 on a late 200 = %v", v)
	}
	// Healed, a replica still only fails closed: no proof it refuses the session.
	stuck := append(good, op{Kind: "probe", Replica: 2, SID: "sid-a", Start: at(time.Minute), Status: 503, Error: "temporarily_unavailable", Final: true})
	if v := checkI1(stuck, acks, bound); len(v) != 1 || !strings.Contains(v[0], "want 400 invalid_grant") {
		t.Fatalf("checkI1 on a final 503 = %v", v)
	}
}

func TestCheckI3_ReportsALostWrite(t *testing.T) {
	acks := map[string]time.Time{"sid-a": at(0), "sid-b": at(time.Second)}
	all := func(string) bool { return true }
	if v := checkI3(acks, all, all); len(v) != 0 {
		t.Fatalf("checkI3 with everything kept: %v", v)
	}
	// kill -9 lost sid-b's record (acknowledged before the fsync) and its event.
	lost := func(sid string) bool { return sid != "sid-b" }
	v := checkI3(acks, lost, lost)
	if len(v) != 2 || !strings.Contains(v[0], "sid-b is not in the store") || !strings.Contains(v[1], "sid-b is not on the SSF stream") {
		t.Fatalf("checkI3 with a lost write = %v", v)
	}
}

func TestSummarize_RetryAndGap(t *testing.T) {
	ops := []op{
		{Kind: "renew", Replica: 0, SID: "s1", Start: at(0), End: at(time.Millisecond), Status: 200, Attempt: 1},
		{Kind: "renew", Replica: 1, SID: "s2", Start: at(time.Second), End: at(time.Second + time.Millisecond), Error: "connection refused", Attempt: 1},
		{Kind: "renew", Replica: 2, SID: "s2", Start: at(time.Second + 2*time.Millisecond), End: at(time.Second + 3*time.Millisecond), Status: 200, Attempt: 2},
		{Kind: "renew", Replica: 1, SID: "s3", Start: at(2 * time.Second), End: at(2*time.Second + time.Millisecond), Status: 503, Attempt: 1},
		{Kind: "renew", Replica: 2, SID: "s3", Start: at(2*time.Second + 2*time.Millisecond), End: at(2*time.Second + 3*time.Millisecond), Status: 503, Attempt: 2},
		{Kind: "renew", Replica: 1, SID: "s1", Start: at(3 * time.Second), End: at(3*time.Second + time.Millisecond), Status: 200, Attempt: 1},
		{Kind: "renew", Replica: 1, SID: "gone", Start: at(3 * time.Second), Status: 400, Error: "invalid_grant", Attempt: 1},
		{Kind: "logout", Replica: 0, SID: "gone", Start: at(0), End: at(5 * time.Second), Status: 503},
	}
	// "gone"'s logout was sent at 0 (answered 503 at 5 s): its renewal at 3 s is not judged. s1's
	// logout was sent at 4 s, after both its renewals: they are judged like any live session's.
	f := summarize(ops, touchedSet{"gone": at(0), "s1": at(4 * time.Second)})
	if f.Renewals != 4 || f.FailedNoRetry != 2 || f.FailedRetry != 1 {
		t.Errorf("renewals %d, failed without retry %d, with retry %d; want 4, 2, 1", f.Renewals, f.FailedNoRetry, f.FailedRetry)
	}
	// Judging only sessions never sent a logout by the end (as the figures did until
	// 2026-12-04) loses s1's two renewals: a long scenario's logouts exhaust its live sessions.
	if g := summarize(ops, touchedSet{"gone": at(0), "s1": at(-time.Second)}); g.Renewals != 2 {
		t.Errorf("with s1's logout sent before its renewals: %d renewals judged, want 2", g.Renewals)
	}
	if f.LongestGap != 2*time.Second || f.LongestGapAt != "r2" {
		t.Errorf("longest gap %s at %s, want 2s at r2", f.LongestGap, f.LongestGapAt)
	}
	if f.Logouts != 1 || f.LogoutsAcked != 0 || f.LongestRefusal != 5*time.Second {
		t.Errorf("logouts %+v", f)
	}
}

func TestPublish_RewritesOnlyTheMarkedBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reliability.md")
	orig := "# Reliability\n\n`make chaos` rewrites the `<!-- chaos -->` block.\n\n<!-- chaos -->\nold\n<!-- /chaos -->\n\n## After\n"
	if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run{Started: t0, Mode: "full", Command: "make chaos", Machine: "2 cores", Rows: []row{{N: 1, Fault: "Partition", Invariants: "I1, I2, I3 held"}}}
	if err := publish(path, r.markdown()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	for _, want := range []string{"rewrites the `<!-- chaos -->` block.\n", "| 1 | Partition | I1, I2, I3 held |", "<!-- /chaos -->\n\n## After\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("page lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old\n") {
		t.Errorf("old block kept:\n%s", got)
	}
	if err := publish(filepath.Join(t.TempDir(), "none.md"), "x"); err == nil {
		t.Error("publish to a missing page succeeded")
	}
}
