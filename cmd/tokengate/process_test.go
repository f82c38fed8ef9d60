package main

// Subprocess tests: the real tokengate binary, started with `tokengate serve`, against the
// in-process fake Keycloak realm. They cover what only a process can show: durability across
// SIGKILL, startup and shutdown, the file lock, CLI exit codes and what reaches the logs.
// internal/proctest runs the processes.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/internal/proctest"
)

// binPath is the tokengate binary built once by TestMain.
var binPath string

func TestMain(m *testing.M) {
	// Under -race the gateway gets the race detector too; it exits 66 when it found a race.
	os.Exit(proctest.Run(m, raceEnabled, &binPath))
}

// clientSecret is the BFF's secret (43 characters, like hash-secret makes); clientSecretHash its
// SHA-256 for the configuration.
var clientSecret, clientSecretHash = loopback.Secret()

const (
	clientID = "bff"
	audience = "demo-service"
	// exitTimeout bounds how long a gateway may take to exit after SIGTERM or SIGKILL.
	exitTimeout = 10 * time.Second
)

// baseConfig is the configuration the tests start from: the fake realm at upstream, the BFF as
// the one client, data in dataDir, and free loopback addresses (chosen by proctest).
func baseConfig(upstream, dataDir string) config.Config {
	return config.Config{
		Issuer: "https://tokengate.test", DataDir: dataDir, LogLevel: "info",
		Upstream: proctest.UpstreamFor(upstream),
		Tokens:   config.Tokens{TTL: seconds(30), RecheckAfter: seconds(60)},
		Clients:  []config.Client{{ID: clientID, SecretSHA256: clientSecretHash, Audiences: []string{audience}}},
	}
}

func seconds(n int) config.Duration { return config.Duration(time.Duration(n) * time.Second) }

// marshal renders c as the file tokengate reads.
func marshal(t testing.TB, c config.Config) string {
	t.Helper()
	b, err := config.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// gateway is a running `tokengate serve` with the calls the tests make.
type gateway struct {
	*proctest.Gateway
	t testing.TB
}

// startGateway starts `tokengate serve` on c, returning once /readyz answers 200 on the admin
// listener. The process is killed when the test ends; its output is logged if the test failed.
func startGateway(t testing.TB, c config.Config) *gateway {
	t.Helper()
	return &gateway{Gateway: proctest.StartT(t, c, proctest.Options{Bin: binPath}), t: t}
}

// kill9 sends SIGKILL: no signal handler, no deferred close, no graceful shutdown.
func (g *gateway) kill9() {
	g.t.Helper()
	g.Kill()
}

// terminate sends SIGTERM and returns the exit code, failing if the process outlives bound.
func (g *gateway) terminate(bound time.Duration) int {
	g.t.Helper()
	return g.stop(syscall.SIGTERM, bound)
}

// stop sends sig and returns the exit code, failing if the process outlives bound.
func (g *gateway) stop(sig os.Signal, bound time.Duration) int {
	g.t.Helper()
	code, err := g.Stop(sig, bound)
	if err != nil {
		g.t.Fatal(err)
	}
	return code
}

// reply is a decoded token endpoint answer.
type reply = proctest.Reply

var httpClient = &http.Client{Timeout: 15 * time.Second}

func (g *gateway) exchange(subjectToken string) reply {
	g.t.Helper()
	return g.PostT(g.t, httpClient, "/token", proctest.ExchangeForm(subjectToken, audience), clientID, clientSecret)
}

func (g *gateway) renew(refreshToken string) reply {
	g.t.Helper()
	return g.PostT(g.t, httpClient, "/token", proctest.RenewForm(refreshToken), clientID, clientSecret)
}

func (g *gateway) logout(logoutToken string) reply {
	g.t.Helper()
	return g.PostT(g.t, httpClient, "/backchannel-logout", proctest.LogoutForm(logoutToken), "", "")
}

// mustExchange exchanges subjectToken and fails the test unless tokens come back.
func (g *gateway) mustExchange(subjectToken string) reply {
	g.t.Helper()
	r := g.exchange(subjectToken)
	if r.Status != http.StatusOK || r.AccessToken == "" || r.RefreshToken == "" || r.TokenType != "Bearer" {
		g.t.Fatalf("exchange: want 200 with access and refresh tokens, got %v", r)
	}
	return r
}

func (g *gateway) mustRenew(refreshToken, what string) reply {
	g.t.Helper()
	r := g.renew(refreshToken)
	if r.Status != http.StatusOK || r.AccessToken == "" {
		g.t.Fatalf("%s: renewal: want 200 with an access token, got %v", what, r)
	}
	return r
}

func wantError(t testing.TB, what string, r reply, status int, code string) {
	t.Helper()
	if r.Status != status || r.Error != code {
		t.Fatalf("%s: want %d %s, got %v", what, status, code, r)
	}
}

func randID(t testing.TB) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestKill9AfterLogoutAck_RenewalStillRefused: a 200 from /backchannel-logout means the logout
// is on disk. The process is SIGKILLed the moment the 200 arrives; the restarted process must
// refuse the session's renewal and its re-exchange, while an unrelated session keeps renewing
// (so the refusal comes from the recorded logout, not from lost keys).
func TestKill9AfterLogoutAck_RenewalStillRefused(t *testing.T) {
	t.Parallel()
	n := 25
	if testing.Short() {
		n = 5
	}
	realm := kctest.New(t)
	opts := baseConfig(realm.Issuer(), t.TempDir())
	g := startGateway(t, opts)
	for i := range n {
		sub, sid := "user-"+randID(t), fmt.Sprintf("sid-kill9-%d-%s", i, randID(t))
		kcToken := realm.AccessToken(kctest.Token{Subject: sub, SID: sid})
		control := realm.AccessToken(kctest.Token{Subject: "control-" + randID(t), SID: "sid-control-" + randID(t)})

		rt := g.mustExchange(kcToken).RefreshToken
		controlRT := g.mustExchange(control).RefreshToken
		g.mustRenew(rt, fmt.Sprintf("iteration %d, before logout", i))

		// Odd iterations log out by subject only (no sid): the subject revocation must be
		// durable too.
		logoutSID := sid
		if i%2 == 1 {
			logoutSID = ""
		}
		ack := g.logout(realm.LogoutToken(sub, logoutSID))
		if ack.Status != http.StatusOK {
			t.Fatalf("iteration %d: back-channel logout: want 200, got %v", i, ack)
		}
		g.kill9()
		g = startGateway(t, opts)

		wantError(t, fmt.Sprintf("iteration %d: renewal after logout and kill -9", i), g.renew(rt),
			http.StatusBadRequest, "invalid_grant")
		wantError(t, fmt.Sprintf("iteration %d: re-exchange after logout and kill -9", i), g.exchange(kcToken),
			http.StatusBadRequest, "invalid_request")
		g.mustRenew(controlRT, fmt.Sprintf("iteration %d, control session after kill -9", i))
	}
	if code := g.terminate(exitTimeout); code != 0 {
		t.Fatalf("final SIGTERM: exit code %d, want 0", code)
	}
}

// TestUpstreamDown_RenewalsContinueExchangesFail: with Keycloak unreachable, renewals are local
// (even when a session recheck is due and fails) while new exchanges answer 503 with
// Retry-After; when Keycloak is back, exchanges work again. A gateway started while Keycloak is
// down becomes ready and exchanges once Keycloak is back.
func TestUpstreamDown_RenewalsContinueExchangesFail(t *testing.T) {
	t.Parallel()
	t.Run("goes down while running", func(t *testing.T) {
		t.Parallel()
		realm := kctest.New(t)
		c := baseConfig(realm.Issuer(), t.TempDir())
		c.Tokens.RecheckAfter = seconds(1)
		g := startGateway(t, c)
		first := g.mustExchange(realm.AccessToken(kctest.Token{}))

		realm.SetDown(true)
		calls := realm.Introspections.Load()
		// Spread over more than recheck_after, so at least one renewal finds a recheck due and
		// the failed introspection must not stop it.
		for i := range 5 {
			g.mustRenew(first.RefreshToken, fmt.Sprintf("renewal %d while upstream is down", i))
			time.Sleep(300 * time.Millisecond)
		}
		if got := realm.Introspections.Load(); got != calls {
			t.Fatalf("introspections answered while down: %d, want %d", got, calls)
		}
		if out := g.Output(); !strings.Contains(out, `"event":"recheck_failed"`) {
			t.Fatalf("no recheck was attempted while upstream was down (recheck_after 1s); output:\n%s", out)
		}

		second := realm.AccessToken(kctest.Token{})
		r := g.exchange(second)
		wantError(t, "new exchange while upstream is down", r, http.StatusServiceUnavailable, "temporarily_unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Fatalf("503 without Retry-After: %v %v", r, r.Header)
		}

		realm.SetDown(false)
		g.mustExchange(second)
		g.mustRenew(first.RefreshToken, "renewal after upstream is back")
	})
	t.Run("down at startup", func(t *testing.T) {
		t.Parallel()
		realm := kctest.New(t)
		realm.SetDown(true)
		g := startGateway(t, baseConfig(realm.Issuer(), t.TempDir()))
		tok := realm.AccessToken(kctest.Token{})
		r := g.exchange(tok)
		wantError(t, "exchange while upstream has been down since startup", r, http.StatusServiceUnavailable, "temporarily_unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Fatalf("503 without Retry-After: %v %v", r, r.Header)
		}
		realm.SetDown(false)
		g.mustRenew(g.mustExchange(tok).RefreshToken, "session exchanged after upstream came up")
	})
}

// TestUpstreamDown_UnknownSigningKeyIsUnavailable: a token signed with a key the gateway has
// not seen yet (Keycloak rotated its key) cannot be judged while the JWKS is unreachable, so
// the exchange must be 503 temporarily_unavailable, not a permanent 400. The JWKS is fetched
// at most once per refetch interval for unknown kids, so the failed fetch's answer stands
// until the interval has passed; then the key is fetched again and, not being in Keycloak's
// JWKS, the token is refused for good.
func TestUpstreamDown_UnknownSigningKeyIsUnavailable(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	g := startGateway(t, baseConfig(realm.Issuer(), t.TempDir()))
	g.mustExchange(realm.AccessToken(kctest.Token{})) // discovery and the current JWKS are cached

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "rotated-"+randID(t)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := realm.SignWith(signer, map[string]any{
		"iss": realm.Issuer(), "sub": "user-" + randID(t), "sid": "sid-" + randID(t), "typ": "Bearer",
		"azp": "bff", "aud": "account", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": randID(t),
	})
	time.Sleep(refetchInterval) // since the first exchange's fetch
	realm.SetDown(true)
	r := g.exchange(tok)
	wantError(t, "exchange of a token with an unknown kid while upstream is down", r,
		http.StatusServiceUnavailable, "temporarily_unavailable")
	realm.SetDown(false)
	fetches := realm.CertsFetches.Load()
	wantError(t, "same token with upstream up, within the refetch interval", g.exchange(tok),
		http.StatusServiceUnavailable, "temporarily_unavailable")
	if n := realm.CertsFetches.Load() - fetches; n != 0 {
		t.Fatalf("JWKS fetched %d times within the refetch interval after a failed fetch, want 0", n)
	}
	time.Sleep(refetchInterval)
	// Keycloak answers: the key is not in its JWKS, so the token is invalid for good.
	wantError(t, "same token with upstream up", g.exchange(tok), http.StatusBadRequest, "invalid_request")
}

// TestGracefulShutdown: SIGTERM (and SIGINT) make serve drain, close the store and exit 0; the
// data directory is then immediately usable by a new process. The database, which holds the
// private keys, is readable by its owner only.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	opts := baseConfig(realm.Issuer(), t.TempDir())
	g := startGateway(t, opts)
	rt := g.mustExchange(realm.AccessToken(kctest.Token{})).RefreshToken

	start := time.Now()
	if code := g.terminate(5 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d, want 0", code)
	}
	t.Logf("exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	if out := g.Output(); !strings.Contains(out, "tokengate stopping") {
		t.Fatalf("no shutdown log line; output:\n%s", out)
	}

	fi, err := os.Stat(filepath.Join(opts.DataDir, "tokengate.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("tokengate.db has mode %v; it holds private keys and must be owner-only", fi.Mode().Perm())
	}

	// The lock was released and the keys persisted: a new process renews the old session.
	g = startGateway(t, opts)
	g.mustRenew(rt, "after graceful restart")
	if code := g.stop(os.Interrupt, 5*time.Second); code != 0 {
		t.Fatalf("second instance: exit code after SIGINT: %d, want 0", code)
	}
}

// runCLI runs the binary to completion (bounded) and returns its exit code, stdout and stderr.
func runCLI(t testing.TB, stdin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("tokengate %v did not finish within 15s; stderr:\n%s", args, stderr.String())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("tokengate %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// TestConfigErrors: bad files make serve exit non-zero naming the field; check-config and
// hash-secret behave.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := baseConfig("http://127.0.0.1:1/realms/demo", filepath.Join(dir, "data"))
	base.Listen, base.AdminListen = "127.0.0.1:1", "127.0.0.1:2"
	good := marshal(t, base)
	// edit returns the good configuration changed by f.
	edit := func(f func(c *config.Config)) string {
		c := base
		c.Clients = []config.Client{base.Clients[0]}
		f(&c)
		return marshal(t, c)
	}
	// replace applies old, new pairs to the text of the good configuration.
	replace := func(oldNew ...string) string {
		s := good
		for i := 0; i < len(oldNew); i += 2 {
			if !strings.Contains(s, oldNew[i]) {
				t.Fatalf("test bug: %q is not in the base configuration:\n%s", oldNew[i], s)
			}
			s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
		}
		return s
	}
	// big is the good configuration padded with comments past 1 MiB, then a key: a reader that
	// stops at 1 MiB would drop the key on a line boundary without a parse error.
	big := good + strings.Repeat("# "+strings.Repeat("x", 61)+"\n", (1<<20)/64) + "log_level: debug\n"
	cases := []struct {
		name, content string
		want          []string // every one must be in stderr
	}{
		{"file over 1 MiB", big, []string{"1048576", strconv.Itoa(len(big)), "limit"}},
		{"unknown top-level key", good + "bogus_key: 1\n", []string{"bogus_key"}},
		{"unknown nested key", replace("  ttl: 30s\n", "  ttl: 30s\n  tll: 5s\n"), []string{"tll"}},
		{"missing upstream.issuer", edit(func(c *config.Config) { c.Upstream.Issuer = "" }), []string{"upstream.issuer"}},
		{"ttl out of range", edit(func(c *config.Config) { c.Tokens.TTL = seconds(1) }), []string{"tokens.ttl"}},
		{"secret_sha256 not hex", edit(func(c *config.Config) { c.Clients[0].SecretSHA256 = strings.Repeat("zz", 32) }),
			[]string{"clients[0].secret_sha256"}},
		{"secret_sha256 too short", edit(func(c *config.Config) { c.Clients[0].SecretSHA256 = clientSecretHash[:62] }),
			[]string{"clients[0].secret_sha256"}},
		{"empty file", "", []string{"empty"}},
		{"two problems at once", edit(func(c *config.Config) {
			c.Tokens.TTL, c.Tokens.RecheckAfter = seconds(3600), config.Duration(500*time.Millisecond)
		}), []string{"tokens.ttl", "tokens.recheck_after"}},
		{"duplicate key", replace("  ttl: 30s\n", "  ttl: 30s\n  ttl: 45s\n"), []string{"ttl"}},
		{"empty upstream_clients", good + "    upstream_clients: []\n", []string{"clients[0].upstream_clients"}},
		{"require_audience not a bool", replace("upstream:\n", "upstream:\n  require_audience: sometimes\n"), []string{"sometimes", "bool"}},
		{"plain http issuer off loopback", edit(func(c *config.Config) { c.Upstream.Issuer = "http://keycloak.example/realms/demo" }),
			[]string{"upstream.issuer", "plain http", "upstream.insecure_http: true"}},
		{"allowed origin with a path", edit(func(c *config.Config) {
			c.Upstream.SharedSignals = config.SharedSignals{Enabled: true, ClientID: "tokengate-signals", ClientSecret: "x",
				AllowedOrigins: []string{"https://keys.example/realms/demo"}}
		}), []string{"upstream.shared_signals.allowed_origins[0]", "not an origin"}},
		{"tracing endpoint with credentials", good + "tracing:\n  otlp_endpoint: https://user:hunter2@otel:4318\n",
			[]string{"tracing.otlp_endpoint", "OTEL_EXPORTER_OTLP_HEADERS"}},
		{"tracing ratio out of range", good + "tracing:\n  otlp_endpoint: http://otel:4318\n  sample_ratio: 2\n",
			[]string{"tracing.sample_ratio"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			refusedByServeAndCheckConfig(t, writeFile(t, t.TempDir(), "bad.yaml", tc.content), tc.want, "hunter2")
		})
	}

	t.Run("check-config accepts a good file", func(t *testing.T) {
		t.Parallel()
		cfg := writeFile(t, t.TempDir(), "good.yaml", good)
		code, stdout, stderr := runCLI(t, "", "check-config", "--config", cfg)
		// The base's upstream is plain http on loopback: accepted with that warning only.
		if code != 0 || !strings.Contains(stdout, "valid") || strings.Count(stderr, "\n") != 1 ||
			!strings.HasPrefix(stderr, "warning: upstream.issuer http://127.0.0.1:1/realms/demo is plain http on a loopback address") {
			t.Fatalf("check-config: exit %d, stdout %q, stderr %q; want 0, \"valid\" and the loopback warning", code, stdout, stderr)
		}
	})

	t.Run("check-config accepts insecure_http with a warning", func(t *testing.T) {
		t.Parallel()
		cfg := writeFile(t, t.TempDir(), "good.yaml", edit(func(c *config.Config) {
			c.Upstream.Issuer, c.Upstream.InsecureHTTP = "http://keycloak.example/realms/demo", true
			c.Upstream.SharedSignals = config.SharedSignals{Enabled: true, ClientID: "tokengate-signals", ClientSecret: "x",
				AllowedOrigins: []string{"http://kc-backchannel.internal:8080"}}
		}))
		code, stdout, stderr := runCLI(t, "", "check-config", "--config", cfg)
		if code != 0 || !strings.Contains(stdout, "valid") {
			t.Fatalf("check-config: exit %d, stdout %q, stderr %q; want 0 and \"valid\"", code, stdout, stderr)
		}
		if !strings.Contains(stderr, "warning: upstream.insecure_http is true") {
			t.Errorf("check-config does not warn about insecure_http: %q", stderr)
		}
	})

	t.Run("check-config knows upstream_clients and warns about require_audience false", func(t *testing.T) {
		t.Parallel()
		off := false
		cfg := writeFile(t, t.TempDir(), "good.yaml", edit(func(c *config.Config) {
			c.Upstream.RequireAudience = &off
			c.Clients[0].UpstreamClients = []string{clientID, "bff-spa"}
		}))
		code, stdout, stderr := runCLI(t, "", "check-config", "--config", cfg)
		if code != 0 || !strings.Contains(stdout, "valid") {
			t.Fatalf("check-config: exit %d, stdout %q, stderr %q; want 0 and \"valid\"", code, stdout, stderr)
		}
		if !strings.Contains(stderr, "warning: upstream.require_audience is false") || !strings.Contains(stderr, "audience mapper") {
			t.Errorf("check-config does not warn about require_audience false: %q", stderr)
		}
	})

	t.Run("hash-secret", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runCLI(t, "", "hash-secret")
		if code != 0 {
			t.Fatalf("hash-secret: exit %d, stderr %q", code, stderr)
		}
		fields := parseFields(stdout)
		secret, hash := fields["secret"], fields["secret_sha256"]
		if len(secret) < 32 || len(hash) != 64 {
			t.Fatalf("hash-secret output lacks a secret of >= 32 characters and a 64-hex hash:\n%s", stdout)
		}
		if sum := sha256.Sum256([]byte(secret)); hex.EncodeToString(sum[:]) != hash {
			t.Fatalf("secret_sha256 %s is not the SHA-256 of secret %q", hash, secret)
		}
		// Its hash makes a valid configuration.
		cfg := writeFile(t, t.TempDir(), "cfg.yaml", edit(func(c *config.Config) { c.Clients[0].SecretSHA256 = hash }))
		if code, stdout, stderr := runCLI(t, "", "check-config", "--config", cfg); code != 0 {
			t.Fatalf("check-config with hash-secret's hash: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		// Two runs make two different secrets.
		_, again, _ := runCLI(t, "", "hash-secret")
		if parseFields(again)["secret"] == secret {
			t.Fatal("hash-secret printed the same secret twice")
		}
	})

	t.Run("hash-secret --stdin", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runCLI(t, clientSecret+"\n", "hash-secret", "--stdin")
		if code != 0 {
			t.Fatalf("hash-secret --stdin with a %d-character secret: exit %d, stderr %q", len(clientSecret), code, stderr)
		}
		if got := parseFields(stdout)["secret_sha256"]; got != clientSecretHash {
			t.Fatalf("hash-secret --stdin: secret_sha256 %q, want %q", got, clientSecretHash)
		}
		if strings.Contains(stdout, clientSecret) {
			t.Fatal("hash-secret --stdin echoed the secret")
		}
		for _, short := range []string{"short-secret\n", strings.Repeat("x", 31), ""} {
			code, stdout, stderr := runCLI(t, short, "hash-secret", "--stdin")
			if code == 0 || parseFields(stdout)["secret_sha256"] != "" {
				t.Fatalf("hash-secret --stdin accepted %q: exit %d, stdout %q", short, code, stdout)
			}
			if !strings.Contains(stderr, "32") {
				t.Fatalf("hash-secret --stdin %q: stderr does not give the minimum length: %q", short, stderr)
			}
		}
	})
}

// parseFields reads "name: value" lines.
func parseFields(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// TestSecondInstanceOnSameDataDirFailsFast: the database lock keeps a second serve out, quickly
// and with a message that says why; the first instance is unaffected.
func TestSecondInstanceOnSameDataDirFailsFast(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	opts := baseConfig(realm.Issuer(), t.TempDir())
	first := startGateway(t, opts)
	rt := first.mustExchange(realm.AccessToken(kctest.Token{})).RefreshToken

	start := time.Now()
	second := proctest.StartT(t, opts, proctest.Options{Bin: binPath, NoWait: true})
	code, ok := second.Wait(3 * time.Second)
	if !ok {
		t.Fatalf("second instance still running 3s after start; output:\n%s", second.Output())
	}
	t.Logf("second instance exited with %d after %s", code, time.Since(start).Round(time.Millisecond))
	out := second.Output()
	if code == 0 {
		t.Fatalf("second instance exited 0; output:\n%s", out)
	}
	if !strings.Contains(strings.ToLower(out), "lock") {
		t.Fatalf("second instance's message does not mention the lock:\n%s", out)
	}
	if strings.Contains(out, "tokengate started") {
		t.Fatalf("second instance started serving:\n%s", out)
	}
	first.mustRenew(rt, "first instance after the second one failed")
	if code := first.terminate(exitTimeout); code != 0 {
		t.Fatalf("first instance: exit code after SIGTERM: %d, want 0", code)
	}
}

// TestLogsNeverContainTokens: after exchange, renewal, logout and the refusals that follow, the
// JSON logs (debug level) contain no token, no part of one and no secret.
func TestLogsNeverContainTokens(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	c := baseConfig(realm.Issuer(), t.TempDir())
	c.LogLevel, c.Tokens.RecheckAfter = "debug", seconds(1)
	g := startGateway(t, c)

	sub, sid := "user-"+randID(t), "sid-"+randID(t)
	kcToken := realm.AccessToken(kctest.Token{Subject: sub, SID: sid})
	secrets := map[string]string{
		"client secret":          clientSecret,
		"upstream client secret": kctest.ClientSecret,
		"keycloak access token":  kcToken,
	}
	first := g.mustExchange(kcToken)
	secrets["access token"] = first.AccessToken
	secrets["refresh token"] = first.RefreshToken
	time.Sleep(1100 * time.Millisecond) // let the renewal recheck the session upstream
	renewed := g.mustRenew(first.RefreshToken, "before logout")
	secrets["renewed access token"] = renewed.AccessToken

	wrong := base64.RawURLEncoding.EncodeToString([]byte(randID(t) + randID(t) + randID(t)))
	secrets["wrong client secret"] = wrong
	wantError(t, "wrong client secret", g.PostT(t, httpClient, "/token", proctest.RenewForm(first.RefreshToken), clientID, wrong), http.StatusUnauthorized, "invalid_client")

	// A token that is not a logout token is refused and must not be echoed.
	wantError(t, "access token as logout token", g.logout(kcToken), http.StatusBadRequest, "invalid_request")
	logoutToken := realm.LogoutToken(sub, sid)
	secrets["logout token"] = logoutToken
	if r := g.logout(logoutToken); r.Status != http.StatusOK {
		t.Fatalf("logout: want 200, got %v", r)
	}
	wantError(t, "replayed logout token", g.logout(logoutToken), http.StatusBadRequest, "invalid_request")
	wantError(t, "renewal after logout", g.renew(first.RefreshToken), http.StatusBadRequest, "invalid_grant")
	wantError(t, "re-exchange after logout", g.exchange(kcToken), http.StatusBadRequest, "invalid_request")
	garbage := "garbage-" + randID(t) + randID(t)
	secrets["garbage refresh token"] = garbage
	wantError(t, "garbage refresh token", g.renew(garbage), http.StatusBadRequest, "invalid_grant")

	if code := g.terminate(exitTimeout); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d, want 0", code)
	}
	logs := g.Output()
	// The logs are there and say what happened, or this test proves nothing.
	for _, ev := range []string{`"event":"exchange"`, `"event":"logout"`, `"event":"renewal_refused"`,
		`"event":"exchange_refused"`, `"event":"logout_refused"`, `"event":"auth_failed"`, `"msg":"request"`} {
		if !strings.Contains(logs, ev) {
			t.Errorf("logs lack %s", ev)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %q", line)
		}
	}
	for name, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain the %s", name)
			continue
		}
		// Nor any part of a compact JWS/JWE beyond its (public) header.
		parts := strings.Split(s, ".")
		for i, p := range parts {
			if i > 0 && len(p) >= 16 && strings.Contains(logs, p) {
				t.Errorf("logs contain part %d of the %s", i, name)
			}
		}
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs)
	}
}

// TestRequireAudienceOff_WarnsAtStartAndNamesKeycloaksAudienceRule: with require_audience
// false, serve warns at start-up; a token without tokengate in aud, which Keycloak 26.6+
// calls inactive, is refused with a description naming the cause, and the log names the fix.
func TestRequireAudienceOff_WarnsAtStartAndNamesKeycloaksAudienceRule(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	c := baseConfig(realm.Issuer(), t.TempDir())
	off := false
	c.Upstream.RequireAudience = &off
	g := startGateway(t, c)
	r := g.exchange(realm.AccessToken(kctest.Token{Audience: []string{"account"}}))
	wantError(t, "exchange of a token Keycloak does not introspect for tokengate", r, http.StatusBadRequest, "invalid_request")
	if !strings.Contains(r.Description, "Keycloak 26.6") || !strings.Contains(r.Description, "audience mapper") {
		t.Errorf("description %q does not name the audience rule and its fix", r.Description)
	}
	if code := g.terminate(exitTimeout); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d, want 0", code)
	}
	logs := g.Output()
	for _, want := range []string{`"level":"WARN","msg":"upstream.require_audience is false`, `"event":"audience_mapper_missing"`,
		`"reason":"inactive_audience"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

// refusedByServeAndCheckConfig runs serve and check-config on cfg: each must exit non-zero with
// stderr naming every string in want and never quoting secret.
func refusedByServeAndCheckConfig(t *testing.T, cfg string, want []string, secret string) {
	t.Helper()
	for _, cmd := range []string{"serve", "check-config"} {
		code, stdout, stderr := runCLI(t, "", cmd, "--config", cfg)
		if code == 0 {
			t.Fatalf("%s accepted the file (exit 0); stdout %q stderr %q", cmd, stdout, stderr)
		}
		for _, w := range want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr does not name %q:\n%s", cmd, w, stderr)
			}
		}
		if strings.Contains(stderr, secret) {
			t.Errorf("%s: stderr quotes a secret:\n%s", cmd, stderr)
		}
	}
}
