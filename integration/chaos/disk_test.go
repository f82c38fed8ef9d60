package chaos

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
)

// TestChaos4_DiskFull runs one node on bbolt with data_dir on a 2 MiB tmpfs, fills the tmpfs
// under load, and frees it again. What the issue asks: a logout that cannot be written is
// refused in memory for that session, /readyz answers 503 while the store cannot write, and
// after space returns everything acknowledged is on disk (I3, read after a SIGKILL and
// restart). It reports what happens now.
func TestChaos4_DiskFull(t *testing.T) {
	short(t)
	if os.Geteuid() != 0 {
		t.Skip("disk full: mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("disk full: mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	c := newSingle(t, dir)
	r1 := c.replicas[0]
	s := onCluster(t, c, loadOpts{Renewals: 60, Workers: 2, Logouts: 5, Exchanges: 1, Initial: 30})
	time.Sleep(2 * time.Second)
	s.step("steady state")

	filler := filepath.Join(dir, "filler")
	if err := fill(filler); err != nil {
		t.Fatal(err)
	}
	full := time.Now()
	time.Sleep(500 * time.Millisecond)

	// Sessions of the suite's own, to see what a logout does on the full disk. bbolt reuses the
	// free pages its file already has, so a write can still succeed on a full file system (and
	// then it is acknowledged, and its session refused, truthfully): log out one session after
	// another until the store refuses a write, for at most 10 s. The one refused is the victim.
	var (
		victim     session
		lo         reply
		loTook     time.Duration
		renewAfter reply
		readyFull  int
		written    int
	)
	for deadline := time.Now().Add(10 * time.Second); ; {
		victim = session{sub: "user-" + randHex(5), sid: "sid-full-" + randHex(6)}
		got := r1.exchange(c.realm.AccessToken(kctest.Token{Subject: victim.sub, SID: victim.sid, Lifetime: 30 * time.Minute}))
		if got.Status != http.StatusOK {
			t.Fatalf("exchange: %+v", got)
		}
		victim.refresh = got.RefreshToken
		start := time.Now()
		lo = r1.logout(c.realm.LogoutToken(victim.sub, victim.sid))
		loTook = time.Since(start)
		readyFull = r1.ReadyStatus(quick)
		renewAfter = r1.renew(victim.refresh)
		if lo.Status != http.StatusOK {
			break
		}
		written++
		if renewed(renewAfter) {
			s.violations = append(s.violations, "disk full: a logout acknowledged on the full disk left its session renewable")
		}
		if time.Now().After(deadline) {
			t.Fatalf("disk full: %d logouts in a row were written on the full tmpfs: the scenario never reached a refused write", written)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(pick(3*time.Second, 10*time.Second))
	s.step("the disk full")
	readyLater := r1.ReadyStatus(quick)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	time.Sleep(3 * time.Second)
	s.step("space back")
	afterSpace := r1.renew(victim.refresh)

	ops, _, _ := c.log.snapshot()
	during := opsBetween(ops, full, freed)
	var logouts, acked int
	for _, o := range during {
		if o.Kind == "logout" {
			logouts++
			if o.ok() {
				acked++
			}
		}
	}
	s.note("data_dir on a full 2 MiB tmpfs: logout answered %d %s in %s (after %d of the suite's written there first); that session's renewal then answered %d; /readyz %d, %d a few seconds later; load: %d of %d logouts acknowledged while full; after space returned the session renews: %d",
		lo.Status, lo.Error, ms(loTook), written, renewAfter.Status, readyFull, readyLater, acked, logouts, afterSpace.Status)

	gaps := []string{}
	if renewed(renewAfter) {
		gaps = append(gaps, "a logout that could not be written left its session renewable")
	}
	// Right after a refused write the logout waits in memory: /readyz must say so. (A few
	// seconds later a retry may have found a free page and written it; 200 is then the truth.)
	if readyFull == http.StatusOK {
		gaps = append(gaps, "/readyz answered 200 while the store could not write")
	}
	if renewed(afterSpace) {
		gaps = append(gaps, "the logout refused while the disk was full was not recorded once space returned")
	}
	for _, g := range gaps {
		s.violations = append(s.violations, "disk full: "+g)
	}
	r := row{N: 4, Fault: "Disk full: single node on bbolt, data_dir on a 2 MiB tmpfs filled, then freed",
		Recover: fmt.Sprintf("%d on the victim's renewal 3 s after space returned", afterSpace.Status)}
	s.finish(r)
}

func renewed(r reply) bool { return r.Status == http.StatusOK && r.AccessToken != "" }

// fill writes path until the file system is full.
func fill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64*1024)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return f.Sync()
			}
			return err
		}
	}
}
