package main

// Process tests: the real tokengate-auth binary (built by internal/proctest) against the fake
// tokengate of verifier/verifiertest, in front of a real upstream process.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/proctest"
	"github.com/tokengate/tokengate/internal/testwait"
	"github.com/tokengate/tokengate/verifier/verifiertest"
)

// startWSGI runs testdata/wsgi_upstream.py and returns its address.
func startWSGI(t *testing.T) string {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("missing dependency python3 (Debian: python3): %v", err)
	}
	p := proctest.StartProcessT(t, proctest.Spec{Name: "wsgi_upstream.py", Argv: []string{python, filepath.Join("testdata", "wsgi_upstream.py")}})
	// It is ready once it writes the line "listening on ADDR".
	var addr string
	err = testwait.Poll(context.Background(), 20*time.Second, 20*time.Millisecond, func() error {
		lines := strings.Split(p.Output(), "\n")
		for _, l := range lines[:len(lines)-1] { // whole lines only
			if a, found := strings.CutPrefix(l, "listening on "); found {
				addr = a
				return nil
			}
		}
		if p.Exited() {
			return nil
		}
		return errors.New("not listening")
	})
	if addr == "" {
		t.Fatalf("wsgi_upstream.py: no address (%v):\n%s", err, p.Output())
	}
	return addr
}

// startAuth runs the tokengate-auth binary bin in mode (with upstream in
// proxy mode) against tg until the test ends, waits for /readyz and returns the listen
// address and the process.
func startAuth(t *testing.T, bin, mode, upstream string, tg *verifiertest.Server) (string, *proctest.Process) {
	t.Helper()
	listen, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	conf := fmt.Sprintf("mode: %s\nlisten: %q\nadmin_listen: %q\nissuer: %q\naudience: %q\nlog_level: debug\n",
		mode, listen, admin, tg.URL(), verifiertest.DefaultAudience)
	if upstream != "" {
		conf += fmt.Sprintf("upstream: %q\n", upstream)
	}
	cfg := filepath.Join(t.TempDir(), "tokengate-auth.yaml")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := proctest.StartProcessT(t, proctest.Spec{Name: "tokengate-auth (" + mode + ")", Argv: []string{bin, "serve", "--config", cfg},
		Env: []string{"TOKENGATE_STREAM_SECRET=" + verifiertest.DefaultStreamSecret}, ReadyURL: "http://" + admin + "/readyz",
		PollEvery: 20 * time.Millisecond})
	return listen, p
}

var client = &http.Client{Timeout: 10 * time.Second}

// get sends a GET with the header fields exactly as named, each its own field (Go's client
// writes them as they are), and returns the status and body.
func get(t *testing.T, url string, fields [][2]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for _, f := range fields {
		req.Header[f[0]] = append(req.Header[f[0]], f[1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// TestProcess_HeaderHygiene runs the real tokengate-auth binary in both modes. In mode: proxy
// in front of a wsgiref service, a client with a valid token and forged X_Tokengate_Roles,
// X_Tokengate_Username, X_Forwarded_For… headers — which a CGI-style environ merges with the
// real ones, comma-joined — must leave the service's environ with the verified identity
// alone. In mode: auth the same forged header is refused with 403 and a log line.
func TestProcess_HeaderHygiene(t *testing.T) {
	dir := t.TempDir()
	if err := proctest.Build(dir, false, "tokengate-auth"); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "tokengate-auth")
	tg := verifiertest.New(t, verifiertest.Options{})
	tok := tg.AccessToken("alice", "sid-1", time.Now())

	t.Run("proxy mode, WSGI upstream", func(t *testing.T) {
		listen, _ := startAuth(t, bin, "proxy", "http://"+startWSGI(t), tg)
		status, body := get(t, "http://"+listen+"/orders/1", [][2]string{
			{"Authorization", "Bearer " + tok},
			{"X_Tokengate_Roles", "admin"},
			{"X_Tokengate_Username", "root"},
			{"x_tokengate_subject", "root"},
			{"X-Tokengate_Session", "sid-of-root"},
			{"X_TOKENGATE_ROLES", "superuser"},
			{"X_Tokengate_Impersonate", "root"},
			{"X_Forwarded_For", "6.6.6.6"},
			{"X_Forwarded_Host", "evil.example"},
			{"X-Request-Id", "r-1"},
		})
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		var environ map[string]string
		if err := json.Unmarshal(body, &environ); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		want := map[string]string{
			"HTTP_X_TOKENGATE_SUBJECT":  "alice",
			"HTTP_X_TOKENGATE_SESSION":  "sid-1",
			"HTTP_X_TOKENGATE_CLIENT":   "bff",
			"HTTP_X_TOKENGATE_SCOPE":    "openid orders:read",
			"HTTP_X_TOKENGATE_ROLES":    "reader,writer",
			"HTTP_X_TOKENGATE_USERNAME": "alice",
			"HTTP_X_FORWARDED_FOR":      "127.0.0.1",
			"HTTP_X_FORWARDED_HOST":     listen,
			"HTTP_X_REQUEST_ID":         "r-1", // headers tokengate-auth does not set pass untouched
		}
		for k, v := range want {
			if environ[k] != v {
				t.Errorf("environ[%s] = %q, want %q", k, environ[k], v)
			}
		}
		if v, ok := environ["HTTP_X_TOKENGATE_IMPERSONATE"]; ok {
			t.Errorf("environ[HTTP_X_TOKENGATE_IMPERSONATE] = %q: a client header under X-Tokengate- reached the service", v)
		}
		if t.Failed() {
			delete(environ, "HTTP_AUTHORIZATION")
			t.Logf("environ (less HTTP_AUTHORIZATION): %v", environ)
		}
	})

	t.Run("auth mode refuses", func(t *testing.T) {
		listen, out := startAuth(t, bin, "auth", "", tg)
		if status, body := get(t, "http://"+listen+"/orders/1", [][2]string{{"Authorization", "Bearer " + tok}, {"X_Tokengate_Roles", "admin"}}); status != http.StatusForbidden ||
			!strings.Contains(string(body), `"invalid_request"`) {
			t.Errorf("X_Tokengate_Roles in auth mode: %d %s, want 403 invalid_request", status, body)
		}
		if status, _ := get(t, "http://"+listen+"/orders/1", [][2]string{{"Authorization", "Bearer " + tok}, {"X-Tokengate-Roles", "admin"}}); status != http.StatusOK {
			t.Errorf("X-Tokengate-Roles in auth mode: %d, want 200 (the proxy replaces it)", status)
		}
		if log := out.Output(); !strings.Contains(log, `"level":"WARN"`) || !strings.Contains(log, `X_tokengate_roles`) || strings.Contains(log, tok) {
			t.Errorf("want one warning naming the header, and never the token:\n%s", log)
		}
	})
}
