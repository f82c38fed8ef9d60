package services

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
)

// TestServicesInAnyLanguage starts one tokengate (fake realm) and, in front of a Python
// service, nginx asking tokengate-auth about every request. Then:
//   - nginx: identity headers reach the service and forged ones do not; missing, tampered and
//     foreign-audience tokens are refused; after each of 20 back-channel logouts the copied
//     token is refused by nginx, and the window (logout acknowledged → first 401 through nginx)
//     and the latency nginx + tokengate-auth add are measured (BENCH lines for
//     scripts/bench-extra.sh);
//   - nginx fails closed: with tokengate killed, the same token gets 503 through nginx once
//     tokengate-auth's fail_closed_after has passed;
//   - java and python: examples/verify-java (Nimbus JOSE+JWT) and examples/verify-python (PyJWT)
//     accept a good token and refuse a tampered, an alg "none", a foreign-audience and an
//     expired one, from tokengate's discovery document and JWKS alone.
func TestServicesInAnyLanguage(t *testing.T) {
	integration(t)
	realm := kctest.New(t)
	g := startGateway(t, realm)
	// Minted first: the proofs need it expired, and it expires while nginx is tested.
	expired := g.exchange(t, realm, "expiring-user", "expiring-sid", audience)
	expiredAt := time.Now().Add(tokenTTL)

	auth, authAdmin := startAuth(t, g)
	svc := startService(t)
	base := startNginx(t, auth, svc)

	t.Run("nginx", func(t *testing.T) { testNginx(t, realm, g, base, "http://"+svc) })
	t.Run("java", func(t *testing.T) {
		// Compiled once (javac), instead of the source launch the file documents, to run it twice
		// for the price of one compilation.
		classes := t.TempDir()
		if out, err := exec.Command(deps.javac, "-cp", deps.nimbusJar, "-d", classes,
			filepath.Join(deps.root, "examples", "verify-java", "Verify.java")).CombinedOutput(); err != nil {
			t.Fatalf("javac Verify.java: %v\n%s", err, out)
		}
		testProof(t, g, realm, expired, expiredAt, 6*time.Second, func() *exec.Cmd {
			return exec.Command(deps.java, "-cp", deps.nimbusJar+string(os.PathListSeparator)+classes, "Verify", g.Base, audience)
		}, map[string]string{"tampered": "BadJWSException", "alg none": "BadJOSEException", "foreign": "aud", "expired": "Expired JWT"})
	})
	t.Run("python", func(t *testing.T) {
		testProof(t, g, realm, expired, expiredAt, time.Second, func() *exec.Cmd {
			return exec.Command(deps.venvPython, filepath.Join(deps.root, "examples", "verify-python", "verify.py"), g.Base, audience)
		}, map[string]string{"tampered": "InvalidSignatureError", "alg none": "", "foreign": "InvalidAudienceError", "expired": "ExpiredSignatureError"})
	})
	// Last: it kills tokengate.
	t.Run("nginx fails closed", func(t *testing.T) {
		tok := g.exchange(t, realm, "dave", "sid-dave", audience)
		if r := get(t, base+"/orders/1", tok, nil); r.status != 200 {
			t.Fatalf("before: %d", r.status)
		}
		g.Kill()
		killed := time.Now()
		for {
			r := get(t, base+"/orders/1", tok, nil)
			if r.status == http.StatusServiceUnavailable {
				if quiet := time.Since(killed); quiet < failClosedAfter-time.Second {
					t.Errorf("503 after %s, before fail_closed_after (%s)", quiet, failClosedAfter)
				}
				break
			}
			if r.status != 200 {
				t.Fatalf("tokengate down: %d, want 200 until fail_closed_after, then 503", r.status)
			}
			if time.Since(killed) > failClosedAfter+5*time.Second {
				t.Fatalf("still 200 %s after tokengate died (fail_closed_after %s)", time.Since(killed), failClosedAfter)
			}
			time.Sleep(50 * time.Millisecond)
		}
		resp, err := client.Get("http://" + authAdmin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("tokengate-auth /readyz while failing closed: %d", resp.StatusCode)
		}
	})
}

type reply struct {
	status    int
	challenge string
	identity  map[string]any
}

func get(t *testing.T, url, token string, header map[string]string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate")}
	var b struct {
		Identity map[string]any `json:"identity"`
	}
	if json.Unmarshal(body, &b) == nil {
		r.identity = b.Identity
	}
	return r
}

func testNginx(t *testing.T, realm *kctest.Realm, g *gateway, base, direct string) {
	tok := g.exchange(t, realm, "alice", "sid-alice", audience)
	// X_Tokengate_Roles: nginx drops it (underscores_in_headers off); were it passed on,
	// tokengate-auth would answer the subrequest 403 and this request would fail.
	forged := map[string]string{"X-Tokengate-Subject": "admin", "X-Tokengate-Roles": "admin", "X-Tokengate-Session": "other",
		"X_Tokengate_Roles": "admin", "X_Tokengate_Username": "root"}
	r := get(t, base+"/orders/1", tok, forged)
	if r.status != 200 || r.identity["subject"] != "alice" || r.identity["session"] != "sid-alice" || r.identity["client"] != clientID {
		t.Fatalf("valid token through nginx: %d %v", r.status, r.identity)
	}
	if roles, _ := r.identity["roles"].([]any); slices.Contains(roles, any("admin")) || len(roles) == 0 {
		t.Errorf("roles at the service %v, want the token's (kctest: user), not the client's forged admin", roles)
	}
	for name, c := range map[string]struct {
		token, challenge string
	}{
		"no token":         {"", `Bearer realm="tokengate"`},
		"tampered":         {tamper(tok), `error="invalid_token"`},
		"foreign audience": {g.exchange(t, realm, "alice", "sid-alice", otherAud), `error="invalid_token"`},
	} {
		if r := get(t, base+"/orders/1", c.token, forged); r.status != 401 || !strings.Contains(r.challenge, c.challenge) {
			t.Errorf("%s through nginx: %d %q, want 401 with %q", name, r.status, r.challenge, c.challenge)
		}
	}

	// The revocation window through nginx, 20 logouts.
	const logouts = 20
	var windows []time.Duration
	for i := range logouts {
		sub, sid := fmt.Sprintf("user-%d", i), fmt.Sprintf("sid-w-%d", i)
		tok := g.exchange(t, realm, sub, sid, audience)
		if r := get(t, base+"/orders/1", tok, nil); r.status != 200 {
			t.Fatalf("logout %d: live token refused before the logout: %d %q", i, r.status, r.challenge)
		}
		time.Sleep(50 * time.Millisecond) // the stream's poll is waiting again
		g.logout(t, realm, sub, sid)
		acked := time.Now()
		for {
			r := get(t, base+"/orders/1", tok, nil)
			if r.status == 401 {
				if !strings.Contains(r.challenge, "logged out") {
					t.Fatalf("logout %d: refused, but not as logged out: %q", i, r.challenge)
				}
				windows = append(windows, time.Since(acked))
				break
			}
			if time.Since(acked) > 5*time.Second {
				t.Fatalf("logout %d: nginx still answers %d 5s after the logout", i, r.status)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	p50, p99, worst := percentile(windows, .5), percentile(windows, .99), percentile(windows, 1)
	t.Logf("revocation window through nginx + tokengate-auth over %d logouts: p50 %s  p99 %s  max %s",
		logouts, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), worst.Round(100*time.Microsecond))
	fmt.Printf("BENCH forward_auth_revocation_window samples=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n", len(windows),
		ms(p50), ms(p99), ms(worst))
	if p99 > time.Second {
		t.Errorf("p99 revocation window through nginx %s exceeds 1s", p99)
	}

	// Latency: the same request to the service directly, through nginx alone (/plain/), and
	// through nginx + auth_request + tokengate-auth; interleaved, so drift hits each alike.
	const rounds = 400
	live := g.exchange(t, realm, "bob", "sid-bob", audience)
	paths := []struct{ name, url string }{{"direct", direct + "/plain/orders"}, {"nginx", base + "/plain/orders"}, {"nginx_auth", base + "/orders"}}
	lat := map[string][]time.Duration{}
	for i := range rounds + 20 {
		for _, p := range paths {
			t0 := time.Now()
			r := get(t, p.url, live, nil)
			d := time.Since(t0)
			if r.status != 200 {
				t.Fatalf("%s: %d", p.name, r.status)
			}
			if i >= 20 { // warm-up
				lat[p.name] = append(lat[p.name], d)
			}
		}
	}
	line := fmt.Sprintf("BENCH forward_auth_latency samples=%d", rounds)
	for _, p := range paths {
		line += fmt.Sprintf(" %s_p50_ms=%.3f %s_p99_ms=%.3f", p.name, ms(percentile(lat[p.name], .5)), p.name, ms(percentile(lat[p.name], .99)))
	}
	added := percentile(lat["nginx_auth"], .5) - percentile(lat["direct"], .5)
	authOnly := percentile(lat["nginx_auth"], .5) - percentile(lat["nginx"], .5)
	line += fmt.Sprintf(" added_p50_ms=%.3f auth_p50_ms=%.3f", ms(added), ms(authOnly))
	t.Logf("latency per request (p50): direct %s, nginx %s, nginx + tokengate-auth %s: nginx + auth add %s, the auth subrequest %s",
		percentile(lat["direct"], .5), percentile(lat["nginx"], .5), percentile(lat["nginx_auth"], .5), added, authOnly)
	fmt.Println(line)
}

// testProof runs a proof program twice: a good token alone (exit 0, "ok"), then a good token,
// a tampered one, an alg "none" one, a foreign-audience one and the expired one (exit 1, one
// "ok" and four refusals whose reasons contain want[...]).
func testProof(t *testing.T, g *gateway, realm *kctest.Realm, expired string, expiredAt time.Time, skew time.Duration,
	command func() *exec.Cmd, want map[string]string) {
	code, lines := runProof(t, command(), func() []string {
		return []string{g.exchange(t, realm, "carol", "sid-carol", audience), g.delegated(t, realm, "carol", "sid-carol")}
	})
	if code != 0 || lines[0] != "ok sub=carol sid=sid-carol" || lines[1] != "ok sub=carol sid=sid-carol act=bff" {
		t.Fatalf("good and delegated tokens: exit %d, %q", code, lines)
	}
	if wait := time.Until(expiredAt.Add(skew + time.Second)); wait > 0 {
		time.Sleep(wait) // the proof allows skew past exp
	}
	names := []string{"tampered", "alg none", "foreign", "expired"}
	code, lines = runProof(t, command(), func() []string {
		good := g.exchange(t, realm, "carol", "sid-carol", audience)
		return []string{good, tamper(good), algNone(good), g.exchange(t, realm, "carol", "sid-carol", otherAud), expired}
	})
	if code != 1 {
		t.Errorf("exit %d with refused tokens, want 1", code)
	}
	if lines[0] != "ok sub=carol sid=sid-carol" {
		t.Errorf("good token: %q", lines[0])
	}
	for i, name := range names {
		got := lines[i+1]
		if !strings.HasPrefix(got, "refused: ") || !strings.Contains(got, want[name]) {
			t.Errorf("%s token: %q, want a refusal mentioning %q", name, got, want[name])
		}
	}
	t.Logf("proof output:\n%s", strings.Join(lines, "\n"))
}

// tamper changes the token's payload (sub), keeping the signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	_ = json.Unmarshal(payload, &c)
	c["sub"] = "mallory"
	b, _ := json.Marshal(c)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}

// algNone re-encodes the token's claims unsigned, with alg "none" and typ at+jwt.
func algNone(tok string) string {
	parts := strings.Split(tok, ".")
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt"}`))
	return h + "." + parts[1] + "."
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[int(math.Ceil(p*float64(len(s))))-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
