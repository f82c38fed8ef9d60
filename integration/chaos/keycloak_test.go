package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/demostack"
)

// keycloakVersion is the real Keycloak of the real-Keycloak scenario (its Shared Signals
// transmitter is 26.7+).
const keycloakVersion = "26.7.3"

// kcStack is the real-Keycloak topology: Keycloak 26.7.3 with its Shared Signals transmitter
// (scripts/keycloak.sh), one tokengate (the suite's binary) on bbolt with data_dir on a tmpfs,
// following Keycloak's stream every 500 ms (internal/demostack).
type kcStack struct {
	t    *testing.T
	st   *demostack.Stack
	data string
}

func startKeycloakStack(t *testing.T) *kcStack {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("real Keycloak scenario: mounting the tmpfs data_dir needs root")
	}
	root, err := demostack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	work, err := os.MkdirTemp("", "tokengate-chaos-keycloak-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs kept in %s", work)
			return
		}
		_ = os.RemoveAll(work)
	})
	st, err := demostack.NewStack(root, work, demostack.Binaries{Tokengate: binPath}, 30*time.Second, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st.KeycloakVersion, st.SharedSignals = keycloakVersion, true
	logs, err := os.Create(filepath.Join(work, "stack.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logs.Close() })
	st.Out = logs
	k := &kcStack{t: t, st: st, data: filepath.Join(work, "tokengate-data")}
	if err := os.Mkdir(k.data, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", k.data).CombinedOutput(); err != nil {
		t.Skipf("real Keycloak scenario: mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", k.data).Run() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	took, err := st.StartKeycloak(ctx)
	t.Cleanup(func() { _ = st.StopKeycloak() })
	if err != nil {
		t.Fatalf("Keycloak %s: %v (log %s)", keycloakVersion, err, st.KeycloakLog())
	}
	t.Logf("Keycloak %s ready in %s", keycloakVersion, ms(took))
	if err := st.StartTokengate(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.StopAll)
	k.waitFor(60*time.Second, "tokengate's stream verified", func() bool { return k.metric("tokengate_upstream_signals_verified") == 1 })
	return k
}

func (k *kcStack) metric(name string, labels ...string) float64 {
	v, err := k.st.TokengateMetric(context.Background(), name, labels...)
	if err != nil {
		return -1
	}
	return v
}

func (k *kcStack) sets(outcome string) float64 {
	return k.metric("tokengate_upstream_signals_sets_total", `event="session-revoked"`, `outcome="`+outcome+`"`)
}

// fillStore fills the tmpfs, then spends the free pages bbolt's file still has (a write that
// fits in them succeeds on a full file system) with operator revocations of made-up sessions
// until one answers 503: from then on the store cannot write. It returns how many were stored.
func (k *kcStack) fillStore(filler string) int {
	k.t.Helper()
	if err := fill(filler); err != nil {
		k.t.Fatal(err)
	}
	for n := 0; n < 5000; n++ {
		req, _ := http.NewRequest(http.MethodPost, k.st.AdminURL()+"/admin/sessions/filler-"+randHex(8)+"/revoke", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+demostack.AdminToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			k.t.Fatal(err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusServiceUnavailable:
			return n
		default:
			k.t.Fatalf("operator revocation while filling the store: HTTP %d", resp.StatusCode)
		}
	}
	k.t.Fatal("the store still writes on a full tmpfs after 5000 revocations")
	return 0
}

// waitFor polls cond every 50 ms, failing the test after d; it returns how long it took.
func (k *kcStack) waitFor(d time.Duration, what string, cond func() bool) time.Duration {
	k.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			k.t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func (k *kcStack) renew(refresh string) demostack.TokenResponse {
	r, err := k.st.Renew(context.Background(), refresh)
	if err != nil {
		r.Status, r.Error = 0, transportError(err)
	}
	return r
}

func (k *kcStack) revocation(sid string) (bool, string) {
	rev, err := k.st.AdminSession(context.Background(), sid)
	if err != nil {
		return false, ""
	}
	return rev.Revoked, rev.Revocation.Reason
}

func (k *kcStack) logout(kc demostack.TokenResponse) {
	k.t.Helper()
	if code, err := k.st.KeycloakLogout(context.Background(), kc.RefreshToken); err != nil || code != http.StatusNoContent {
		k.t.Fatalf("Keycloak logout: %v HTTP %d", err, code)
	}
}

// backchannelLogout turns client bff's back-channel logout URL on (to tokengate) or off.
func (k *kcStack) backchannelLogout(on bool) {
	k.t.Helper()
	ctx := context.Background()
	code, body, err := k.st.KeycloakAdmin(ctx, http.MethodGet, "/clients?clientId=bff", nil)
	var cs []struct {
		ID string `json:"id"`
	}
	if err != nil || code != http.StatusOK || json.Unmarshal(body, &cs) != nil || len(cs) != 1 {
		k.t.Fatalf("find client bff: %v HTTP %d %s", err, code, body)
	}
	u := ""
	if on {
		u = k.st.TokengateURL() + "/backchannel-logout"
	}
	code, body, err = k.st.KeycloakAdmin(ctx, http.MethodPut, "/clients/"+cs[0].ID,
		map[string]any{"attributes": map[string]string{"backchannel.logout.url": u}})
	if err != nil || code != http.StatusNoContent {
		k.t.Fatalf("set bff's backchannel.logout.url: %v HTTP %d %s", err, code, body)
	}
}

// TestChaos5_RealKeycloak is scenario 5 on Keycloak 26.7.3, with scenario 4's stream half, in
// one Keycloak's life (each start costs ~25 s of CPU here):
//
//  1. (4) data_dir full: Keycloak's back-channel logout of S1 is answered 503 and not retried;
//     the receiver must not acknowledge the session-revoked SET of that logout while it cannot
//     record it; once space returns the logout is on record and S1 refused.
//  2. (4, the stream alone) back-channel logout off for the BFF's client, data_dir full again:
//     S3's logout exists only as a SET; the same, recorded from the stream.
//  3. (5) tokengate stopped, S4 logged out at Keycloak (only on its stream), Keycloak stopped
//     (SIGTERM), tokengate started without it: exchanges answer 503, renewals go on; Keycloak
//     started again on its database: the receiver reconnects and records S4's logout from the
//     stream (its SET survived both restarts).
//  4. (5) a logout after Keycloak returned, back-channel logout still off: recorded from the
//     stream, S2 refused.
func TestChaos5_RealKeycloak(t *testing.T) {
	long(t)
	k := startKeycloakStack(t)
	ctx := context.Background()
	var notes, violations []string
	note := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		t.Log(msg)
		notes = append(notes, msg)
	}
	violate := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		t.Error(msg)
		violations = append(violations, msg)
	}
	kc1, in1 := k.st.LoginT(t, ctx, "alice")
	kc2, in2 := k.st.LoginT(t, ctx, "bob")
	kc3, in3 := k.st.LoginT(t, ctx, "alice")
	kc4, in4 := k.st.LoginT(t, ctx, "alice")
	fresh, err := k.st.PasswordGrant(ctx, "bob", "bob-password") // exchanged only while Keycloak is down
	if err != nil || fresh.AccessToken == "" {
		t.Fatalf("password grant: %v %+v", err, fresh)
	}
	filler := filepath.Join(k.data, "filler")

	// 1. Disk full, back-channel logout on.
	spent := k.fillStore(filler)
	note("data_dir filled: bbolt's free pages took %d more operator revocations before the store refused to write", spent)
	retry0, ok0 := k.sets("retry"), k.sets("ok")
	held0 := k.metric("tokengate_logouts_total", `source="backchannel"`, `result="pending"`)
	k.logout(kc1)
	time.Sleep(3 * time.Second)
	r1 := k.renew(in1.RefreshToken)
	retried := k.sets("retry") - retry0
	if k.sets("ok") > ok0 {
		violate("I3: the receiver acknowledged S1's SET while data_dir was full")
	}
	if retried == 0 {
		violate("the receiver saw no session-revoked SET to retry while data_dir was full (Keycloak %s sends one on end_session)", keycloakVersion)
	}
	if r1.Status == http.StatusOK {
		violate("I2: S1 renewed after its logout while data_dir was full (its back-channel logout was answered 503)")
	}
	held := k.metric("tokengate_logouts_total", `source="backchannel"`, `result="pending"`) - held0
	if held != 1 {
		violate("Keycloak's back-channel logout of S1 on a full data_dir: %v held in memory (answered 503), want 1", held)
	}
	note("data_dir full (2 MiB tmpfs): Keycloak's back-channel logout of S1 answered 503 and held in memory (%v), its session-revoked SET not acknowledged (%v retries in 3 s); S1's renewal meanwhile: %d %s",
		held, retried, r1.Status, r1.Error)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	took := k.waitFor(30*time.Second, "S1 on record after space returned", func() bool { ok, _ := k.revocation(kc1.SessionState); return ok })
	_, reason1 := k.revocation(kc1.SessionState)
	acked := k.waitFor(30*time.Second, "S1's SET acknowledged", func() bool { return k.sets("ok") > ok0 })
	if r := k.renew(in1.RefreshToken); r.Status != http.StatusBadRequest || r.Error != "invalid_grant" {
		violate("I1: S1 renewed after space returned: %d %s", r.Status, r.Error)
	}
	note("space back: S1 on record %s later (reason %s), its SET acknowledged %s later (tried %v times in all)",
		ms(took), reason1, ms(acked), k.sets("retry")-retry0+1)

	// 2. Back-channel logout off; disk full; S3's logout is only a SET.
	k.backchannelLogout(false)
	k.fillStore(filler)
	retry0, ok0 = k.sets("retry"), k.sets("ok")
	k.logout(kc3)
	k.waitFor(30*time.Second, "S3's SET retried", func() bool { return k.sets("retry") > retry0 })
	time.Sleep(2 * time.Second)
	if k.sets("ok") > ok0 {
		violate("I3: the receiver acknowledged S3's SET while data_dir was full")
	}
	r3 := k.renew(in3.RefreshToken)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	took = k.waitFor(30*time.Second, "S3 on record after space returned", func() bool { ok, _ := k.revocation(kc3.SessionState); return ok })
	_, reason3 := k.revocation(kc3.SessionState)
	acked = k.waitFor(30*time.Second, "S3's SET acknowledged", func() bool { return k.sets("ok") > ok0 })
	if r := k.renew(in3.RefreshToken); r.Status != http.StatusBadRequest || r.Error != "invalid_grant" {
		violate("I1: S3 renewed after space returned: %d %s", r.Status, r.Error)
	}
	note("back-channel logout off, data_dir full: S3's logout only on the stream, its SET not acknowledged (%v retries), S3's renewal meanwhile %d %s; space back: on record %s later (reason %s), SET acknowledged %s later",
		k.sets("retry")-retry0, r3.Status, r3.Error, ms(took), reason3, ms(acked))

	// 3. The receiver cannot poll: tokengate stopped, a logout at Keycloak (only on its stream),
	// Keycloak stopped; tokengate started again without Keycloak; Keycloak started again.
	if err := k.st.Stop("tokengate", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	k.logout(kc4)
	down := pick(20*time.Second, 2*time.Minute)
	if err := k.st.StopKeycloak(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	tgStart := time.Now()
	if err := k.st.StartTokengate(ctx); err != nil {
		t.Fatalf("tokengate start while Keycloak is down: %v", err)
	}
	tgUp := time.Since(tgStart)
	var (
		mu                    sync.Mutex
		renewals, renewFailed int
		exchanges, exFailed   int
		exStatus              = map[string]int{}
		s4Renewed             int
		stopLoad              atomic.Bool
		wg                    sync.WaitGroup
		gapStart              time.Time
		worstGap              time.Duration
	)
	wg.Go(func() {
		for !stopLoad.Load() {
			r := k.renew(in2.RefreshToken)
			now := time.Now()
			mu.Lock()
			renewals++
			if r.Status != http.StatusOK {
				renewFailed++
				if gapStart.IsZero() {
					gapStart = now
				}
			} else if !gapStart.IsZero() {
				worstGap = max(worstGap, now.Sub(gapStart))
				gapStart = time.Time{}
			}
			mu.Unlock()
			if k.renew(in4.RefreshToken).Status == http.StatusOK {
				mu.Lock()
				s4Renewed++
				mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	wg.Go(func() {
		for !stopLoad.Load() {
			r, err := k.st.Exchange(ctx, fresh.AccessToken)
			mu.Lock()
			exchanges++
			if err != nil || r.Status != http.StatusOK {
				exFailed++
				exStatus[fmt.Sprintf("%d %s", r.Status, r.Error)]++
			}
			mu.Unlock()
			time.Sleep(time.Second)
		}
	})
	time.Sleep(down - time.Since(stopped))
	// The load stops before Keycloak starts: a renewal of S4 once Keycloak answers would
	// recheck it (the restarted tokengate lost its recheck schedule) and record its logout by
	// introspection before the stream does.
	stopLoad.Store(true)
	wg.Wait()
	ok0 = k.sets("ok")
	polls0 := k.metric("tokengate_upstream_signals_polls_total", `result="ok"`)
	t.Setenv("KC_KEEP_DATA", "1")
	kcStart := time.Now()
	kcTook, err := k.st.StartKeycloak(ctx)
	if err != nil {
		t.Fatalf("Keycloak restart on its database: %v (log %s)", err, k.st.KeycloakLog())
	}
	downFor := time.Since(stopped)
	if renewFailed > 0 {
		violate("renewals failed while Keycloak was down: %s (recheck_after 1h: they must go on)", pct(renewFailed, renewals))
	}
	note("Keycloak %s stopped (SIGTERM) for %s (%s in all with its restart on the same database, %s), tokengate restarted meanwhile (serving %s after its start, Keycloak down): renewals failed %s; exchanges of a new Keycloak token failed %s (%s); S4, logged out at Keycloak while tokengate was stopped and only on the stream, renewed %d times meanwhile (a logout no one acknowledged)",
		keycloakVersion, ms(kcStart.Sub(stopped)), ms(downFor), ms(kcTook), ms(tgUp), pct(renewFailed, renewals), pct(exFailed, exchanges), counts(exStatus), s4Renewed)
	reconnect := k.waitFor(90*time.Second, "the receiver polling again", func() bool {
		return k.metric("tokengate_upstream_signals_polls_total", `result="ok"`) > polls0
	})
	s4 := k.waitFor(60*time.Second, "S4's logout recorded from the stream after Keycloak's restart", func() bool {
		ok, _ := k.revocation(kc4.SessionState)
		return ok
	})
	_, reason4 := k.revocation(kc4.SessionState)
	exBack := k.waitFor(60*time.Second, "an exchange after Keycloak's return", func() bool {
		r, err := k.st.Exchange(ctx, fresh.AccessToken)
		return err == nil && r.Status == http.StatusOK
	})
	if r := k.renew(in4.RefreshToken); r.Status != http.StatusBadRequest || r.Error != "invalid_grant" {
		violate("I1: S4 renewed after its logout was recorded from the stream: %d %s", r.Status, r.Error)
	}
	if reason4 != "ssf:session-revoked" {
		violate("S4's logout recorded as %q, want from the stream (ssf:session-revoked)", reason4)
	}
	note("Keycloak back (ready %s after its start): the receiver polled again %s later (its backoff grows to 15 s), S4's logout, whose SET waited through tokengate's and Keycloak's restarts, on record %s after that (reason %s, SETs acknowledged since the restart: %v); first exchange 200 %s after Keycloak was ready",
		ms(kcTook), ms(reconnect), ms(s4), reason4, k.sets("ok")-ok0, ms(exBack))

	// 4. A logout after Keycloak returned, back-channel logout still off. Nothing renews S2
	// until its logout is on record: the restarted tokengate would recheck S2 at its first
	// renewal and find it ended at Keycloak before the stream said so.
	k.logout(kc2)
	s2 := k.waitFor(90*time.Second, "S2's logout on record from the stream", func() bool { ok, _ := k.revocation(kc2.SessionState); return ok })
	_, reason2 := k.revocation(kc2.SessionState)
	if r := k.renew(in2.RefreshToken); r.Status != http.StatusBadRequest || r.Error != "invalid_grant" {
		violate("I1: S2 renewed after its logout was recorded from the stream: %d %s", r.Status, r.Error)
	}
	if reason2 != "ssf:session-revoked" {
		violate("S2's logout recorded as %q, want from the stream (ssf:session-revoked)", reason2)
	}
	note("a logout after Keycloak returned, back-channel logout off: S2 on record %s after Keycloak's end_session returned (reason %s), then refused", ms(s2), reason2)

	// I1 and I3 at the end: every logout on record and refused.
	onRecord := 0
	for _, c := range []struct {
		name string
		kc   demostack.TokenResponse
		in   demostack.TokenResponse
	}{{"S1", kc1, in1}, {"S2", kc2, in2}, {"S3", kc3, in3}, {"S4", kc4, in4}} {
		if ok, _ := k.revocation(c.kc.SessionState); !ok {
			violate("I3: %s's logout is not on record", c.name)
		} else {
			onRecord++
		}
		if r := k.renew(c.in.RefreshToken); r.Status != http.StatusBadRequest || r.Error != "invalid_grant" {
			violate("I1: %s renewed at the end: %d %s", c.name, r.Status, r.Error)
		}
	}
	k.backchannelLogout(true)
	f := figures{Renewals: renewals, FailedNoRetry: renewFailed, FailedRetry: renewFailed, LongestGap: worstGap,
		Logouts: 4, LogoutsAcked: onRecord, Violations: violations}
	note("logouts column: the 4 logouts done at Keycloak, and how many tokengate has on record at the end")
	inv := "I1, I3 held (4 sessions, checked after each step; no load generator here)"
	if len(violations) > 0 {
		inv = "**violated**: " + strings.Join(violations, "; ")
	}
	addRow(row{N: 5, Fault: fmt.Sprintf("Keycloak %s stopped for %s with a logout waiting on its Shared Signals stream; before it, data_dir full (scenario 4's stream half)", keycloakVersion, ms(downFor)),
		Invariants: inv, Figures: f,
		Unavail: "exchanges: " + ms(downFor) + "; renewals: " + ms(worstGap),
		Recover: fmt.Sprintf("receiver polling %s after Keycloak was ready; first exchange %s after", ms(reconnect), ms(exBack)),
		Notes:   strings.Join(notes, "; ")})
}
