package services

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/proctest"
)

// identityHeaders are the six headers tokengate-auth answers a 200 with.
var identityHeaders = []string{"X-Tokengate-Subject", "X-Tokengate-Session", "X-Tokengate-Client",
	"X-Tokengate-Scope", "X-Tokengate-Roles", "X-Tokengate-Username"}

// forgedHeaders is what a hostile client sends along with its request: the identity headers
// under their own names, the underscore and mixed spellings a CGI/WSGI/Rack service reads as
// the same names (HTTP_X_TOKENGATE_ROLES), a name tokengate-auth never sets, and a Connection
// header naming the identity headers, which would make a proxy strip them as hop-by-hop
// after forward_auth copied them. The keys are written to the wire exactly as spelled here.
var forgedHeaders = http.Header{
	"X-Tokengate-Subject":  {"admin"},
	"X-Tokengate-Session":  {"other"},
	"X-Tokengate-Roles":    {"admin"},
	"X_Tokengate_Roles":    {"admin"},
	"X_TOKENGATE_SUBJECT":  {"admin"},
	"x-tokengate_session":  {"other"},
	"X_Tokengate-Client":   {"evil"},
	"X-Tokengate-Username": {"root"},
	"X-Tokengate-Actor":    {"admin"},
	"X_Tokengate_Actor":    {"admin"},
	"X-Tokengate-Extra":    {"1"},
	"Connection":           {"X-Tokengate-Subject, X-Tokengate-Roles, X-Tokengate-Session"},
}

// TestCaddy runs deploy/forward-auth/Caddyfile, as shipped (only its environment variables
// set), with Debian's caddy, twice: in front of examples/forward-auth/service.py, and in front
// of a recorder that keeps the exact headers Caddy sends upstream. Against one tokengate (fake
// realm) and tokengate-auth following its Shared Signals stream:
//   - a valid token with every forged spelling of the identity headers (forgedHeaders): 200 at
//     the service with the token's identity; upstream, exactly the six identity headers,
//     once each, with the token's values: no client value, no underscore variant, no unset
//     placeholder, none stripped by the client's Connection header;
//   - hostile callers — no token, an expired token, a token for another audience, a tampered
//     one, forged headers without a token: 401 with tokengate-auth's challenge, and nothing
//     reaches the upstream;
//   - after each of 20 back-channel logouts the copied token is refused through Caddy, p99 of
//     the window (logout acknowledged → first 401) ≤ 1 s;
//   - tokengate killed: 503 with Retry-After through Caddy once fail_closed_after has passed.
func TestCaddy(t *testing.T) {
	integration(t)
	realm := kctest.New(t)
	g := startGateway(t, realm)
	// Minted first: it has expired by the time the hostile callers are tried.
	expired := g.exchange(t, realm, "expiring-user", "expiring-sid", audience)
	expiredAt := time.Now().Add(tokenTTL)

	auth, _ := startAuth(t, g)
	svc := startService(t)
	base := startCaddy(t, auth, svc)
	rec := startRecorder(t)
	recBase := startCaddy(t, auth, rec.addr)

	tok := g.exchange(t, realm, "alice", "sid-alice", audience)
	t.Run("identity reaches the service, forged headers do not", func(t *testing.T) {
		status, _, body := caddyGet(t, base+"/orders/1", tok, forgedHeaders)
		var r struct {
			Identity map[string]any `json:"identity"`
		}
		_ = json.Unmarshal(body, &r)
		id := r.Identity
		if status != 200 || id["subject"] != "alice" || id["session"] != "sid-alice" || id["client"] != clientID {
			t.Fatalf("valid token through caddy: %d %s", status, body)
		}
		if roles, _ := id["roles"].([]any); slices.Contains(roles, any("admin")) || len(roles) == 0 {
			t.Errorf("roles at the service %v, want the token's (kctest: user), not the client's forged admin", roles)
		}
	})
	t.Run("upstream gets exactly the six identity headers", func(t *testing.T) {
		before := rec.count()
		if status, _, body := caddyGet(t, recBase+"/orders/1", tok, forgedHeaders); status != 200 {
			t.Fatalf("valid token through caddy: %d %s", status, body)
		}
		if rec.count() != before+1 {
			t.Fatalf("recorder saw %d requests, want 1", rec.count()-before)
		}
		got := map[string][]string{}
		for name, vals := range rec.last() {
			if strings.Contains(strings.ToLower(strings.ReplaceAll(name, "_", "-")), "tokengate") {
				got[name] = vals
			}
		}
		want := map[string]string{"X-Tokengate-Subject": "alice", "X-Tokengate-Session": "sid-alice", "X-Tokengate-Client": clientID}
		for _, name := range identityHeaders {
			vals, ok := got[name]
			if !ok || len(vals) != 1 {
				t.Errorf("upstream %s = %q, want exactly one value", name, vals)
				continue
			}
			if w, ok := want[name]; ok && vals[0] != w {
				t.Errorf("upstream %s = %q, want %q", name, vals[0], w)
			}
			if strings.Contains(vals[0], "{") || strings.Contains(vals[0], "admin") || strings.Contains(vals[0], "root") || strings.Contains(vals[0], "evil") {
				t.Errorf("upstream %s = %q: a placeholder or the client's forged value", name, vals[0])
			}
			delete(got, name)
		}
		// The token is a BFF's (no act): the actor header is empty or absent, never the client's.
		if vals := got["X-Tokengate-Actor"]; len(vals) > 1 || (len(vals) == 1 && vals[0] != "") {
			t.Errorf("upstream X-Tokengate-Actor = %q, want empty: the client's forged value", vals)
		}
		delete(got, "X-Tokengate-Actor")
		for name, vals := range got {
			t.Errorf("upstream got the client's %s: %q", name, vals)
		}
	})

	// The revocation window through caddy, 20 logouts.
	t.Run("logout", func(t *testing.T) {
		const logouts = 20
		var windows []time.Duration
		for i := range logouts {
			sub, sid := fmt.Sprintf("caddy-user-%d", i), fmt.Sprintf("sid-caddy-%d", i)
			tok := g.exchange(t, realm, sub, sid, audience)
			if status, challenge, _ := caddyGet(t, base+"/orders/1", tok, nil); status != 200 {
				t.Fatalf("logout %d: live token refused before the logout: %d %q", i, status, challenge)
			}
			time.Sleep(50 * time.Millisecond) // the stream's poll is waiting again
			g.logout(t, realm, sub, sid)
			acked := time.Now()
			for {
				status, challenge, _ := caddyGet(t, base+"/orders/1", tok, nil)
				if status == 401 {
					if !strings.Contains(challenge, `error="invalid_token"`) || !strings.Contains(challenge, "logged out") {
						t.Fatalf("logout %d: refused, but not as logged out: %q", i, challenge)
					}
					windows = append(windows, time.Since(acked))
					break
				}
				if time.Since(acked) > 5*time.Second {
					t.Fatalf("logout %d: caddy still answers %d 5s after the logout", i, status)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		p50, p99, worst := percentile(windows, .5), percentile(windows, .99), percentile(windows, 1)
		t.Logf("revocation window through caddy + tokengate-auth over %d logouts: p50 %s  p99 %s  max %s",
			logouts, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), worst.Round(100*time.Microsecond))
		if p99 > time.Second {
			t.Errorf("p99 revocation window through caddy %s exceeds 1s", p99)
		}
	})

	t.Run("hostile callers", func(t *testing.T) {
		if wait := time.Until(expiredAt.Add(100 * time.Millisecond)); wait > 0 {
			time.Sleep(wait) // tokengate-auth allows no skew past exp
		}
		before := rec.count()
		for _, c := range []struct {
			name, token, challenge string
		}{
			{"no token", "", `Bearer realm="tokengate"`},
			{"expired", expired, `error="invalid_token"`},
			{"foreign audience", g.exchange(t, realm, "alice", "sid-alice", otherAud), `error="invalid_token"`},
			{"tampered", tamper(tok), `error="invalid_token"`},
		} {
			for _, h := range []http.Header{nil, forgedHeaders} {
				if status, challenge, _ := caddyGet(t, recBase+"/orders/1", c.token, h); status != 401 || !strings.Contains(challenge, c.challenge) {
					t.Errorf("%s (forged headers: %t) through caddy: %d %q, want 401 with %q", c.name, h != nil, status, challenge, c.challenge)
				}
			}
		}
		if n := rec.count() - before; n != 0 {
			t.Errorf("%d refused requests reached the upstream", n)
		}
	})

	// Last: it kills tokengate.
	t.Run("fails closed", func(t *testing.T) {
		tok := g.exchange(t, realm, "dave", "sid-dave", audience)
		if status, _, _ := caddyGet(t, base+"/orders/1", tok, nil); status != 200 {
			t.Fatalf("before: %d", status)
		}
		g.Kill()
		killed := time.Now()
		for {
			resp, _ := caddyDo(t, base+"/orders/1", tok, nil)
			if resp.StatusCode == http.StatusServiceUnavailable {
				if quiet := time.Since(killed); quiet < failClosedAfter-time.Second {
					t.Errorf("503 after %s, before fail_closed_after (%s)", quiet, failClosedAfter)
				}
				if ra := resp.Header.Get("Retry-After"); ra != "1" {
					t.Errorf("503 through caddy with Retry-After %q, want tokengate-auth's 1", ra)
				}
				break
			}
			if resp.StatusCode != 200 {
				t.Fatalf("tokengate down: %d, want 200 until fail_closed_after, then 503", resp.StatusCode)
			}
			if time.Since(killed) > failClosedAfter+5*time.Second {
				t.Fatalf("still 200 %s after tokengate died (fail_closed_after %s)", time.Since(killed), failClosedAfter)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// caddyDo sends a GET with the token (when set) and the headers exactly as spelled in h; it
// returns the response, its body read and closed, and the body.
func caddyDo(t *testing.T, url, token string, h http.Header) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range h {
		req.Header[k] = v // not Set: keep the spelling, underscores and case, on the wire
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

// caddyGet is caddyDo returning the status, the WWW-Authenticate challenge and the body.
func caddyGet(t *testing.T, url, token string, h http.Header) (int, string, []byte) {
	t.Helper()
	resp, b := caddyDo(t, url, token, h)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), b
}

// recorder is an upstream that keeps the headers of every request it receives.
type recorder struct {
	addr    string
	mu      sync.Mutex
	headers []http.Header
}

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	r := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.headers = append(r.headers, req.Header.Clone())
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)
	r.addr = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.headers)
}

func (r *recorder) last() http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.headers[len(r.headers)-1]
}

// startCaddy runs `caddy run` with deploy/forward-auth/Caddyfile as shipped: only its
// environment variables are set (a free loopback port, tokengate-auth's and the upstream's
// addresses), and caddy's data and config directories (and HOME) are in a temporary
// directory. It returns caddy's base URL once caddy answers an unauthenticated request with
// tokengate-auth's 401.
func startCaddy(t *testing.T, auth, upstream string) string {
	t.Helper()
	dir := t.TempDir()
	listen := proctest.FreeAddr(t)
	_, port, _ := strings.Cut(listen, ":")
	base := "http://" + listen
	// Ready once caddy answers an unauthenticated request with tokengate-auth's 401.
	proctest.StartProcessT(t, proctest.Spec{
		Argv: []string{deps.caddy, "run", "--adapter", "caddyfile", "--config", filepath.Join(deps.root, "deploy", "forward-auth", "Caddyfile")},
		Env: []string{"CADDY_LISTEN_PORT=" + port, "TOKENGATE_AUTH=" + auth, "SERVICE_UPSTREAM=" + upstream,
			"HOME=" + dir, "XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config")},
		ReadyURL: base + "/healthz", ReadyStatus: http.StatusUnauthorized, ReadyTimeout: readyTimeout, PollEvery: pollEvery})
	return base
}
