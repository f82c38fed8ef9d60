package services

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/internal/proctest"
)

const (
	clientID     = "bff"
	audience     = "orders"  // the service behind nginx, and the proofs' audience
	otherAud     = "billing" // a foreign audience the same client may ask for
	tokenTTL     = 5 * time.Second
	readyTimeout = 20 * time.Second
	pollEvery    = 20 * time.Millisecond // how often a starting process is asked whether it is ready
)

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// gateway is a `tokengate serve` process on the fake realm (run by internal/proctest, the
// harness of every process test), with one Shared Signals stream for the orders service.
type gateway struct {
	*proctest.Gateway
	bffSecret    string
	streamSecret string
}

func startGateway(t *testing.T, realm *kctest.Realm) *gateway {
	t.Helper()
	g := &gateway{}
	var bffHash, streamHash string
	g.bffSecret, bffHash = loopback.Secret()
	g.streamSecret, streamHash = loopback.Secret()
	unlimited := &config.Limit{Rate: 100000, Burst: 100000}
	// Issuer is left empty: the public listener's URL, where every verifier finds discovery.
	c := config.Config{
		DataDir: filepath.Join(t.TempDir(), "data"), LogLevel: "warn",
		Upstream: proctest.UpstreamFor(realm.Issuer()),
		Tokens:   config.Tokens{TTL: config.Duration(tokenTTL), RecheckAfter: config.Duration(time.Hour)},
		Limits:   config.Limits{Token: unlimited, Logout: unlimited},
		// The BFF also delegates (docs/delegation.md): a token for otherAud (its service
		// audience) it may exchange for one for audience, with act {"sub": "bff"}.
		Clients: []config.Client{{ID: clientID, SecretSHA256: bffHash, Audiences: []string{audience, otherAud},
			DelegateTo: []string{audience}, ServiceAudience: otherAud}},
		SSF: config.SSF{Streams: []config.SSFStream{{ID: audience, SecretSHA256: streamHash}}},
	}
	g.Gateway = proctest.StartT(t, c, proctest.Options{Bin: deps.tokengate})
	return g
}

// exchange trades a realm access token of sub/sid for an internal token for aud.
func (g *gateway) exchange(t *testing.T, realm *kctest.Realm, sub, sid, aud string) string {
	t.Helper()
	r := g.Exchange(client, clientID, g.bffSecret, realm.AccessToken(kctest.Token{Subject: sub, SID: sid}), aud)
	if r.Status != http.StatusOK || r.AccessToken == "" {
		t.Fatalf("exchange for %s: %v", sid, r)
	}
	return r.AccessToken
}

// delegated exchanges a fresh upstream token of sub/sid for otherAud, then delegates that
// token (as the BFF, whose service audience is otherAud) to audience: a token with act.
func (g *gateway) delegated(t *testing.T, realm *kctest.Realm, sub, sid string) string {
	t.Helper()
	r := g.Exchange(client, clientID, g.bffSecret, g.exchange(t, realm, sub, sid, otherAud), audience)
	if r.Status != http.StatusOK || r.AccessToken == "" {
		t.Fatalf("delegation for %s: %v", sid, r)
	}
	return r.AccessToken
}

// logout posts Keycloak's back-channel logout token for sub/sid.
func (g *gateway) logout(t *testing.T, realm *kctest.Realm, sub, sid string) {
	t.Helper()
	if r := g.Logout(client, realm.LogoutToken(sub, sid)); r.Status != http.StatusOK {
		t.Fatalf("logout of %s: %v", sid, r)
	}
}

// failClosedAfter is tokengate-auth's: short, so that the test sees it fail closed quickly.
const failClosedAfter = 4 * time.Second

// startAuth runs tokengate-auth in auth mode for the orders service, the stream secret in
// its environment; it returns the auth and admin addresses.
func startAuth(t *testing.T, g *gateway) (listen, admin string) {
	t.Helper()
	listen, admin = proctest.FreeAddr(t), proctest.FreeAddr(t)
	cfg := writeFile(t, filepath.Join(t.TempDir(), "tokengate-auth.yaml"), fmt.Sprintf(`mode: auth
listen: %q
admin_listen: %q
issuer: %q
audience: %q
stream_id: %q
fail_closed_after: %s
log_level: warn
`, listen, admin, g.Base, audience, audience, failClosedAfter))
	proctest.StartProcessT(t, proctest.Spec{Name: "tokengate-auth", Argv: []string{deps.auth, "serve", "--config", cfg},
		Env: []string{"TOKENGATE_STREAM_SECRET=" + g.streamSecret}, ReadyURL: "http://" + admin + "/readyz",
		ReadyTimeout: readyTimeout, PollEvery: pollEvery})
	return listen, admin
}

// startService runs examples/forward-auth/service.py; it returns its address.
func startService(t *testing.T) string {
	t.Helper()
	addr := proctest.FreeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	proctest.StartProcessT(t, proctest.Spec{Argv: []string{deps.python, filepath.Join(deps.root, "examples", "forward-auth", "service.py"), port},
		Name: "service.py", ReadyURL: "http://" + addr + "/healthz", ReadyTimeout: readyTimeout, PollEvery: pollEvery})
	return addr
}

// nginxConf is the test's nginx: auth_request to tokengate-auth for /, the same proxy without
// auth_request under /plain/ (to price the subrequest alone). It runs in the foreground with
// everything under its prefix directory.
const nginxConf = `daemon off;
%[1]s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 512; }
http {
    access_log off;
    client_body_temp_path %[2]s/tmp/body;
    proxy_temp_path %[2]s/tmp/proxy;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;

    upstream tokengate_auth {
        server %[3]s;
        keepalive 16;
    }
    upstream orders {
        server %[4]s;
    }
    server {
        listen %[5]s;
        # Header hygiene: nginx's defaults, written out so that nobody turns them off. A
        # request header whose name has an underscore is dropped, never passed to the auth
        # subrequest nor to the service, where CGI-style servers (WSGI, PHP, Rack) would read
        # X_Tokengate_Roles as X-Tokengate-Roles. (Were it passed, tokengate-auth would
        # refuse the request with 403.)
        underscores_in_headers off;
        ignore_invalid_headers on;

        location / {
            auth_request /_tokengate_auth;
            # Every identity header is set by nginx: whatever the client sent under these
            # names is replaced (by an empty value, i.e. dropped, when the token lacks it).
            auth_request_set $tg_subject $upstream_http_x_tokengate_subject;
            auth_request_set $tg_session $upstream_http_x_tokengate_session;
            auth_request_set $tg_client $upstream_http_x_tokengate_client;
            auth_request_set $tg_scope $upstream_http_x_tokengate_scope;
            auth_request_set $tg_roles $upstream_http_x_tokengate_roles;
            auth_request_set $tg_username $upstream_http_x_tokengate_username;
            auth_request_set $tg_actor $upstream_http_x_tokengate_actor;
            proxy_set_header X-Tokengate-Subject $tg_subject;
            proxy_set_header X-Tokengate-Session $tg_session;
            proxy_set_header X-Tokengate-Client $tg_client;
            proxy_set_header X-Tokengate-Scope $tg_scope;
            proxy_set_header X-Tokengate-Roles $tg_roles;
            proxy_set_header X-Tokengate-Username $tg_username;
            proxy_set_header X-Tokengate-Actor $tg_actor;
            proxy_pass http://orders;
            # nginx turns any subrequest answer but 2xx/401/403 into a 500: give clients
            # tokengate-auth's retryable 503 while it fails closed.
            error_page 500 = @tokengate_unavailable;
        }
        location @tokengate_unavailable {
            add_header Retry-After 1 always;
            return 503;
        }
        location = /_tokengate_auth {
            internal;
            proxy_pass http://tokengate_auth$request_uri;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /plain/ {
            proxy_pass http://orders;
        }
    }
}
`

// startNginx runs nginx in front of the service and returns its base URL.
func startNginx(t *testing.T, auth, service string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	user := "" // not root: nginx keeps running as the current user
	if os.Getuid() == 0 {
		user = "user root;" // else the workers would switch to nobody, who cannot enter dir
	}
	listen := proctest.FreeAddr(t)
	conf := writeFile(t, filepath.Join(dir, "nginx.conf"), fmt.Sprintf(nginxConf, user, dir, auth, service, listen))
	if out, err := exec.Command(deps.nginx, "-t", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	base := "http://" + listen
	proctest.StartProcessT(t, proctest.Spec{Argv: []string{deps.nginx, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf},
		ReadyURL: base + "/plain/healthz", ReadyTimeout: readyTimeout, PollEvery: pollEvery})
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", b)
		}
	})
	return base
}

// runProof starts a proof program, waits for its "ready" line on standard error (discovery
// done), then mints the tokens and writes them to its standard input, one a line, so that
// the program's start-up (a JVM) does not eat into the tokens' lifetime. It returns the exit
// code and the output lines.
func runProof(t *testing.T, cmd *exec.Cmd, mint func() []string) (int, []string) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var stderr proctest.SyncBuffer
	errDone := make(chan struct{})
	go func() {
		defer close(errDone)
		sc := bufio.NewScanner(stderrPipe)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(&stderr, sc.Text())
			if !signalled && strings.HasPrefix(sc.Text(), "ready: ") {
				signalled = true
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-errDone:
		_ = cmd.Wait()
		t.Fatalf("%s exited before it was ready:\n%s", cmd.Args[0], stderr.String())
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("%s not ready within 2m:\n%s", cmd.Args[0], stderr.String())
	}
	tokens := mint()
	_, _ = io.WriteString(stdin, strings.Join(tokens, "\n")+"\n")
	_ = stdin.Close()
	<-errDone
	err = cmd.Wait()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", cmd.Args[0], err)
		}
		code = ee.ExitCode()
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != len(tokens) {
		t.Fatalf("%s printed %d lines for %d tokens (exit %d):\n%s\nstderr:\n%s", cmd.Args[0], len(lines), len(tokens), code, stdout.String(), stderr.String())
	}
	return code, lines
}
