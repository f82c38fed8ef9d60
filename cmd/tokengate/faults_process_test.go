package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
)

// mountTmpfs mounts a tmpfs of size (e.g. "2m") on a new directory and unmounts it when the
// test ends (after the gateways, which t.Cleanup stops first). A machine where the test may not
// mount fails the test: the disk-full behaviour is not something to skip.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tokengate-tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		_ = os.Remove(dir)
		t.Fatalf("mount a %s tmpfs as data_dir (the disk-full test needs root or CAP_SYS_ADMIN): %v: %s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			return
		}
		_ = os.Remove(dir)
	})
	return dir
}

// fillDisk writes a file in dir until the file system is full and returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			return p
		}
	}
}

// readyz returns the status and body of /readyz on the admin listener.
func (g *gateway) readyz() (int, string) {
	g.t.Helper()
	resp, err := httpClient.Get(g.Admin + "/readyz")
	if err != nil {
		g.t.Fatalf("/readyz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the exposition line of name (without labels) from /metrics, or "".
func (g *gateway) metric(name string) string {
	g.t.Helper()
	resp, err := httpClient.Get(g.Admin + "/metrics")
	if err != nil {
		g.t.Fatalf("/metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return line
		}
	}
	return ""
}

// TestDiskFull_LogoutRefusedInMemoryAndWrittenWhenSpaceReturns: the data directory is a small
// tmpfs that fills up under a running gateway. Logouts are sent until one cannot be written: it
// is answered 503 (not acknowledged), yet that session's renewal and re-exchange are refused at
// once; /readyz answers 503 "store cannot write" and tokengate_store_pending_revocations is 1
// while other sessions keep renewing. Once space returns the logout is written within a few
// seconds and /readyz is 200 again; after kill -9 and a restart every logout — the ones
// acknowledged before the disk filled and the one held in memory — is refused from disk.
func TestDiskFull_LogoutRefusedInMemoryAndWrittenWhenSpaceReturns(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	dir := mountTmpfs(t, "2m")
	c := baseConfig(realm.Issuer(), dir)
	g := startGateway(t, c)
	control := g.mustExchange(realm.AccessToken(kctest.Token{Subject: "control", SID: "sid-control-" + randID(t)})).RefreshToken
	filler := fillDisk(t, dir)

	type session struct{ sub, sid, upstream, refresh string }
	var acked []session
	var held *session
	for i := 0; i < 3000 && held == nil; i++ {
		s := session{sub: fmt.Sprint("user-", i), sid: fmt.Sprintf("sid-full-%d-%s", i, randID(t))}
		s.upstream = realm.AccessToken(kctest.Token{Subject: s.sub, SID: s.sid})
		s.refresh = g.mustExchange(s.upstream).RefreshToken
		switch r := g.logout(realm.LogoutToken(s.sub, s.sid)); r.Status {
		case http.StatusOK:
			acked = append(acked, s)
		case http.StatusServiceUnavailable:
			held = &s
		default:
			t.Fatalf("logout %d on a filling disk: %v", i, r)
		}
	}
	if held == nil {
		t.Fatalf("3000 logouts were written on a full 2 MiB tmpfs: the disk never refused a write")
	}
	t.Logf("the disk refused logout %d", len(acked))

	wantError(t, "renewal of the session whose logout could not be written", g.renew(held.refresh),
		http.StatusBadRequest, "invalid_grant")
	wantError(t, "re-exchange of that session", g.exchange(held.upstream), http.StatusBadRequest, "invalid_request")
	g.mustRenew(control, "another session while the disk is full")
	if code, body := g.readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "store cannot write") {
		t.Errorf("/readyz while a logout waits for the disk: %d %s, want 503 store cannot write", code, body)
	}
	if m := g.metric("tokengate_store_pending_revocations"); m != "tokengate_store_pending_revocations 1" {
		t.Errorf("pending metric while the disk is full: %q", m)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := g.readyz()
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d 10s after space returned", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m := g.metric("tokengate_store_pending_revocations"); m != "tokengate_store_pending_revocations 0" {
		t.Errorf("pending metric once written: %q", m)
	}
	if out := g.Output(); !strings.Contains(out, `"event":"logout_pending"`) || !strings.Contains(out, "pending revocation written") {
		t.Errorf("no log line for the held logout and its later write:\n%s", out)
	}

	g.kill9()
	g = startGateway(t, c)
	for _, s := range append(acked, *held) {
		wantError(t, "renewal after the disk filled, emptied and the process was killed: "+s.sid, g.renew(s.refresh),
			http.StatusBadRequest, "invalid_grant")
	}
	g.mustRenew(control, "control session after restart")
}
