package chaos

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/proctest"
	"github.com/tokengate/tokengate/internal/replicatest"
	"github.com/tokengate/tokengate/verifier"
)

// envClockFile is what a binary built with -tags chaosclock reads its clock offset from
// (cmd/tokengate/clock_chaos.go); a release build ignores it.
const envClockFile = "TOKENGATE_CHAOS_CLOCK_FILE"

// buildClockBinary builds cmd/tokengate with -tags chaosclock into a temporary directory.
func buildClockBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tokengate-chaosclock")
	goCmd := "go"
	if p, err := exec.LookPath("go"); err == nil {
		goCmd = p
	}
	out, err := exec.Command(goCmd, "build", "-tags", "chaosclock", "-o", bin, "github.com/tokengate/tokengate/cmd/tokengate").CombinedOutput()
	if err != nil {
		t.Fatalf("go build -tags chaosclock: %v: %s", err, out)
	}
	return bin
}

// steppable replaces r's process by the chaosclock build on the same configuration (same
// addresses, same data directory), whose clock is offset by what the returned function
// writes (a duration, "30s" or "-30s"; "0s" to put it back).
func steppable(t *testing.T, r *replica, bin string) func(time.Duration) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "clock-offset")
	set := func(d time.Duration) {
		if err := os.WriteFile(file+".tmp", []byte(d.String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	set(0)
	if _, err := r.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	g, err := proctest.Start(context.Background(), r.Config, proctest.Options{Bin: bin, Dir: t.TempDir(),
		Env: []string{envClockFile + "=" + file}, ReadyTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g.CleanupT(t)
	r.Gateway = g
	if !strings.Contains(g.Output(), "chaos_clock") {
		t.Fatalf("%s: the chaosclock build did not take its clock file", r.name)
	}
	return set
}

// tokenTimes decodes an internal token's iat and exp (its signature is the verifier's business).
func tokenTimes(tok string) (iat, exp time.Time, err error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return iat, exp, fmt.Errorf("not a JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return iat, exp, err
	}
	var cl struct{ Iat, Exp int64 }
	if err := json.Unmarshal(b, &cl); err != nil {
		return iat, exp, err
	}
	return time.Unix(cl.Iat, 0), time.Unix(cl.Exp, 0), nil
}

// rewrite sends every request of a verifier to one replica, whatever host the issuer names.
type rewrite struct{ base *url.URL }

func (rw rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host, r.Host = rw.base.Scheme, rw.base.Host, ""
	return replicatest.Client.Transport.RoundTrip(r)
}

// clockProbe is what one phase of the step measured with the suite's own sessions.
type clockProbe struct {
	iatShift, lifetime time.Duration // r3's token: iat minus the real time; exp minus the real time
	verify             string        // a verifier on the real clock, on r3's token
	offset             float64       // r3's tokengate_upstream_clock_offset_seconds after the exchange
	offsetErr          error         // why it could not be read
	crossRenew         []int         // the session r3 exchanged, renewed at r1, r2, r3
	subjectBefore      []int         // a session begun 5 s before a subject-wide logout sent to r3, renewed at r1, r2, r3
	subjectAfter       []int         // a login after it, renewed at r1, r2, r3
}

// probeClock exchanges a session at the stepped replica, reads its token's times, verifies it
// on the real clock, renews it at every replica; then sends a subject-wide logout to the stepped
// replica and renews a session begun before it and one begun after it everywhere.
func (s *scenario) probeClock(stepped *replica, v *verifier.Verifier) clockProbe {
	t, c := s.t, s.c
	var p clockProbe
	sub, sid := "clock-"+randHex(5), "sid-clock-"+randHex(6)
	got := stepped.exchange(c.realm.AccessToken(kctest.Token{Subject: sub, SID: sid, Lifetime: 30 * time.Minute}))
	if got.Status != http.StatusOK {
		s.violations = append(s.violations, fmt.Sprintf("clock: %s refused an exchange: %d %s", stepped.name, got.Status, got.Error))
		return p
	}
	p.offset, p.offsetErr = clockOffset(stepped.Admin)
	now := time.Now()
	if iat, exp, err := tokenTimes(got.AccessToken); err == nil {
		p.iatShift, p.lifetime = iat.Sub(now.Truncate(time.Second)), exp.Sub(now)
	}
	switch _, err := v.Verify(context.Background(), got.AccessToken); {
	case err != nil && strings.Contains(err.Error(), "expired"):
		p.verify = "refuses (expired)"
	case err != nil:
		p.verify = "refuses (" + err.Error() + ")"
	default:
		p.verify = "accepts"
	}
	for _, r := range c.replicas {
		p.crossRenew = append(p.crossRenew, r.renew(got.RefreshToken).Status)
	}
	// A subject-wide logout (no sid) sent to the stepped replica: a session begun 5 s before it
	// (by Keycloak's clock) is refused everywhere, a login 2 s after it is not.
	user := "clock-user-" + randHex(5)
	began := time.Now().Add(-5 * time.Second)
	before := c.replicas[0].exchange(c.realm.AccessToken(kctest.Token{Subject: user, SID: "sid-before-" + randHex(6),
		IssuedAt: began, AuthTime: began, Lifetime: 30 * time.Minute}))
	if lo := stepped.logout(c.realm.LogoutToken(user, "")); lo.Status != http.StatusOK {
		s.violations = append(s.violations, fmt.Sprintf("clock: %s did not acknowledge a subject-wide logout: %d %s", stepped.name, lo.Status, lo.Error))
	}
	time.Sleep(2 * time.Second)
	if before.Status != http.StatusOK {
		s.violations = append(s.violations, fmt.Sprintf("clock: r1 refused an exchange: %d %s", before.Status, before.Error))
	}
	after := c.replicas[1].exchange(c.realm.AccessToken(kctest.Token{Subject: user, SID: "sid-after-" + randHex(6), Lifetime: 30 * time.Minute}))
	for _, r := range c.replicas {
		p.subjectBefore = append(p.subjectBefore, r.renew(before.RefreshToken).Status)
		p.subjectAfter = append(p.subjectAfter, r.renew(after.RefreshToken).Status)
	}
	if after.Status != http.StatusOK {
		s.violations = append(s.violations, fmt.Sprintf("clock: false logout: r2 refused a login 2 s after a subject-wide logout: %d %s", after.Status, after.Error))
	}
	for i, st := range p.crossRenew {
		if st != http.StatusOK {
			s.violations = append(s.violations, fmt.Sprintf("clock: false logout: the session %s exchanged was refused at r%d (%d)", stepped.name, i+1, st))
		}
	}
	for i := range c.replicas {
		if p.subjectBefore[i] == http.StatusOK {
			s.violations = append(s.violations, fmt.Sprintf("I2: r%d renewed a session begun 5 s before a subject-wide logout %s acknowledged", i+1, stepped.name))
		}
		if p.subjectAfter[i] != http.StatusOK {
			s.violations = append(s.violations, fmt.Sprintf("clock: false logout: r%d refused a login begun 2 s after a subject-wide logout (%d)", i+1, p.subjectAfter[i]))
		}
	}
	t.Logf("%s: upstream clock offset %v (%v)", stepped.name, p.offset, p.offsetErr)
	t.Logf("%s: iat %+v off the real clock, exp in %s; verifier on the real clock: %s; renewals at r1..r3 %v; subject-wide logout: before %v, after %v",
		stepped.name, p.iatShift, p.lifetime.Round(time.Second), p.verify, p.crossRenew, p.subjectBefore, p.subjectAfter)
	return p
}

// clockOffset reads tokengate_upstream_clock_offset_seconds from a replica's /metrics.
func clockOffset(admin string) (float64, error) {
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "tokengate_upstream_clock_offset_seconds "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no tokengate_upstream_clock_offset_seconds on %s/metrics (%d)", admin, resp.StatusCode)
}

// phase summarises the load's answers between from and to: live renewals failed per replica
// (and as invalid_grant: a false logout), logouts sent to idx acknowledged.
func (s *scenario) phase(name string, from, to time.Time, idx int) string {
	ops, _, touched := s.c.log.snapshot()
	failed := make([]int, len(s.c.replicas))
	total := make([]int, len(s.c.replicas))
	var loN, loOK int
	for _, o := range opsBetween(ops, from, to) {
		switch {
		case touched.live(o) && o.Attempt == 1:
			total[o.Replica]++
			if !o.ok() {
				failed[o.Replica]++
			}
			if o.refusedAsLoggedOut() {
				s.violations = append(s.violations, fmt.Sprintf("clock: false logout: r%d refused a live session's renewal with invalid_grant while %s", o.Replica+1, name))
			}
		case o.Kind == "logout" && o.Replica == idx:
			loN++
			if o.ok() {
				loOK++
			}
		}
	}
	var per []string
	for i := range total {
		per = append(per, fmt.Sprintf("r%d %s", i+1, pct(failed[i], total[i])))
	}
	return fmt.Sprintf("live renewals failed %s; logouts sent to r%d acknowledged %d of %d", strings.Join(per, ", "), idx+1, loOK, loN)
}

// TestChaos6_ClockStep steps one replica's clock (the chaosclock build, r3) 30 s ahead, then 30 s
// behind, under load, while the two others keep the real time. Checked: no false logout (live
// sessions renew at every replica, no revocation in the store that nobody sent), no renewal of
// a logged-out session beyond the bound (I1, I2, a subject-wide logout sent to the stepped
// replica included), I3. Measured: the times in the tokens the stepped replica issues and what
// a verifier on the real clock makes of them.
func TestChaos6_ClockStep(t *testing.T) {
	long(t)
	bin := buildClockBinary(t)
	c := newCluster(t, nil)
	r3 := c.replicas[2]
	set := steppable(t, r3, bin)
	v, err := verifier.New(context.Background(), verifier.Config{Issuer: c.replicas[0].Config.Issuer, Audience: audience,
		DisableFeed: true, HTTPClient: &http.Client{Transport: rewrite{base: mustURL(t, c.replicas[0].Base)}, Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	s := onCluster(t, c, defaultLoad)
	time.Sleep(2 * time.Second)
	s.step("steady state")
	hold := pick(5*time.Second, 15*time.Second)
	var notes []string
	for _, off := range []time.Duration{30 * time.Second, -30 * time.Second} {
		set(off)
		from := time.Now()
		time.Sleep(200 * time.Millisecond) // the replica reads its clock file every 50 ms
		p := s.probeClock(r3, v)
		// r3 measures its clock against the fake realm's (the Date of its answers): Keycloak's
		// minus r3's, so -off, within the Date header's second and the round trip.
		if want := -off.Seconds(); p.offsetErr != nil || p.offset < want-2 || p.offset > want+2 {
			s.violations = append(s.violations, fmt.Sprintf("clock: r3 at %+d s reports tokengate_upstream_clock_offset_seconds %v (%v), want about %+v",
				int(off.Seconds()), p.offset, p.offsetErr, want))
		}
		time.Sleep(hold)
		to := time.Now()
		name := fmt.Sprintf("r3's clock %+d s", int(off.Seconds()))
		s.step(name)
		notes = append(notes, fmt.Sprintf("r3 at %+d s: its tokens carry iat %+d s off the real time and expire %d s after they are issued (tokens.ttl 30 s), a verifier on the real clock %s them; r3's /metrics reports tokengate_upstream_clock_offset_seconds %.1f; %s",
			int(off.Seconds()), int(p.iatShift.Seconds()), int(p.lifetime.Round(time.Second).Seconds()), p.verify, p.offset, s.phase(name, from, to, 2)))
		set(0)
		time.Sleep(time.Second)
		s.step(name + " and back")
	}
	for _, n := range notes {
		s.note("%s", n)
	}
	// No revocation that nobody sent: every session on record in the store is one a logout was
	// sent for (the load's, or the probes' subject-wide logouts, which are not session records).
	_, _, touched := c.log.snapshot()
	for sid := range c.storedSessions() {
		if _, sent := touched[sid]; !sent {
			s.violations = append(s.violations, "clock: false logout: "+sid+" is recorded as logged out and nobody sent its logout")
		}
	}
	subjectOK := true
	for _, v := range s.violations {
		subjectOK = subjectOK && !strings.Contains(v, "subject-wide")
	}
	if subjectOK {
		s.note("subject-wide logouts sent to r3 at +30 s and -30 s refused the session begun 5 s before them at every replica, and not a login 2 s after")
	}
	s.finish(row{N: 6, Fault: fmt.Sprintf("Clock step: r3's clock +30 s for %s, then -30 s for %s (the chaosclock build; r1, r2 and etcd on the real clock)", hold, hold),
		Recover: "none needed: no refusal to recover from"})
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
