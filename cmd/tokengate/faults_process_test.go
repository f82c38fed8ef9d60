package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/testwait"
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

// readyErr is nil once /readyz answers 200, else an error naming the status (for testwait.Poll).
func (g *gateway) readyErr() error {
	g.t.Helper()
	if code, _ := g.readyz(); code != http.StatusOK {
		return fmt.Errorf("/readyz still %d", code)
	}
	return nil
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
	if err := testwait.Poll(context.Background(), 10*time.Second, 100*time.Millisecond, g.readyErr); err != nil {
		t.Fatalf("%v 10s after space returned", err)
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

// answer is one request of a keep-alive client: when it was sent, whether it went out on a
// reused connection, and its status and Connection header, or its error.
type answer struct {
	at     time.Time // sent
	done   time.Time // answered or failed
	reused bool
	status int
	close  bool // the answer said Connection: close (net/http removes the header, sets Close)
	err    error
}

// keepAliveRenewals renews rt in a loop over one keep-alive connection until a request fails,
// and returns every answer.
func keepAliveRenewals(base, rt string) []answer {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()
	var out []answer
	for {
		a := answer{at: time.Now()}
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { a.reused = i.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			http.MethodPost, base+"/token", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(clientID, clientSecret)
		resp, err := hc.Do(req)
		a.done = time.Now()
		if err != nil {
			a.err = err
			return append(out, a)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		a.status, a.close = resp.StatusCode, resp.Close
		out = append(out, a)
	}
}

// isDialError reports whether err is a failure to open a new connection (the listener is
// closed): a clean end, unlike a request lost on an open connection (EOF, reset).
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// cleanEnd reports whether a's failure is the end of a listener rather than a request lost: a
// refused connection, or a new connection the kernel completed in the listen backlog just
// before the listener closed, which the server never accepted (so never read a request from)
// and which closes without an answer. Neither can happen on a connection the server served.
func cleanEnd(a answer) bool {
	return isDialError(a.err) || (a.err != nil && !a.reused)
}

// TestShutdown_DrainsKeepAliveClientsWithoutFailures: the real binary with shutdown_grace 1.5s
// gets SIGTERM while four keep-alive clients renew flat out. /readyz answers 503 "shutting
// down" during the grace while renewals still succeed, each answer then carrying Connection:
// close; no client sees a request fail on a connection the server had accepted (EOF, reset):
// the only failure is a new connection refused (or reset from the listen backlog, never
// accepted) once the listener has closed, after the grace. The process exits 0.
func TestShutdown_DrainsKeepAliveClientsWithoutFailures(t *testing.T) {
	t.Parallel()
	const grace = 1500 * time.Millisecond
	realm := kctest.New(t)
	c := baseConfig(realm.Issuer(), t.TempDir())
	c.ShutdownGrace = config.Duration(grace)
	g := startGateway(t, c)
	rt := g.mustExchange(realm.AccessToken(kctest.Token{})).RefreshToken

	const clients = 4
	results := make([][]answer, clients)
	var wg sync.WaitGroup
	for n := range clients {
		wg.Go(func() { results[n] = keepAliveRenewals(g.Base, rt) })
	}
	type probe struct {
		at     time.Time
		status int
		body   string
	}
	var probes []probe
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for {
			resp, err := hc.Get(g.Admin + "/readyz")
			if err != nil {
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			probes = append(probes, probe{time.Now(), resp.StatusCode, string(b)})
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	term := time.Now()
	if err := g.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, exited := g.Wait(grace + 10*time.Second)
	if !exited || code != 0 {
		t.Fatalf("after SIGTERM: exited %v, code %d; want exit 0", exited, code)
	}
	wg.Wait()
	<-probed

	closedDuringGrace := 0
	for n, as := range results {
		last := as[len(as)-1]
		for _, a := range as[:len(as)-1] {
			if a.status != http.StatusOK {
				t.Errorf("client %d: renewal %s after SIGTERM answered %d, want 200", n, a.at.Sub(term), a.status)
			}
			if a.at.After(term.Add(100*time.Millisecond)) && a.close {
				closedDuringGrace++
			}
		}
		switch {
		case !cleanEnd(last):
			t.Errorf("client %d: a request failed on an open connection %s after SIGTERM (reused %v): %v",
				n, last.at.Sub(term).Round(time.Millisecond), last.reused, last.err)
		case last.done.Before(term.Add(grace)):
			t.Errorf("client %d: new connections refused %s after SIGTERM, before the %s grace ended", n, last.done.Sub(term), grace)
		}
		t.Logf("client %d: %d renewals, ended %s after SIGTERM: %v", n, len(as)-1, last.at.Sub(term).Round(time.Millisecond), last.err)
	}
	if closedDuringGrace == 0 {
		t.Errorf("no renewal during the grace carried Connection: close")
	}
	notReady := 0
	for _, p := range probes {
		if p.at.After(term.Add(100 * time.Millisecond)) {
			if p.status != http.StatusServiceUnavailable || !strings.Contains(p.body, "shutting down") {
				t.Errorf("/readyz %s after SIGTERM: %d %s, want 503 shutting down", p.at.Sub(term), p.status, p.body)
			}
			notReady++
		}
	}
	if notReady < 10 {
		t.Errorf("/readyz answered %d times after SIGTERM, want it to answer 503 through the %s grace", notReady, grace)
	}
}
