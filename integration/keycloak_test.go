package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/demostack"
	"github.com/tokengate/tokengate/internal/testwait"
)

func wantRenewal(t *testing.T, ctx context.Context, refresh string) demostack.TokenResponse {
	t.Helper()
	r, err := st.Renew(ctx, refresh)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("renewal: %v HTTP %d %s %s", err, r.Status, r.Error, r.Description)
	}
	return r
}

func refused(r demostack.TokenResponse) bool {
	return r.Status == http.StatusBadRequest && r.Error == "invalid_grant"
}

// revocationReason asks tokengate's admin API why sid is refused ("" when it is not).
func revocationReason(t *testing.T, ctx context.Context, sid string) string {
	t.Helper()
	r, err := st.AdminSession(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Revoked {
		return ""
	}
	return r.Revocation.Reason
}

// waitRelayed waits until demo-bff's back-channel endpoint got sid from tokengate's relay.
func waitRelayed(t *testing.T, ctx context.Context, sid string) demostack.BackchannelLogout {
	t.Helper()
	var got demostack.BackchannelLogout
	err := testwait.Poll(context.Background(), 15*time.Second, 50*time.Millisecond, func() error {
		list, err := st.BFFBackchannel(ctx)
		if err != nil {
			return err
		}
		for _, l := range list {
			if l.SID == sid {
				got = l
				return nil
			}
		}
		return errNotYet
	})
	if err != nil {
		t.Fatalf("test 7: the logout of session %s was not relayed to demo-bff's back-channel endpoint: %v", sid, err)
	}
	return got
}

// Tests 1 and 7, in a real browser: login through Keycloak's login page → BFF exchange →
// service call OK; logout in the UI → the next renewal refused within 1 s of Keycloak's
// end_session response; the logout relayed to the BFF's own endpoint; the copied internal
// token refused by the service once it expires; the copied Keycloak token refused for exchange.
func TestBrowser_LoginServiceCallLogoutRefusesRenewal(t *testing.T) {
	need(t)
	ctx := testContext(t, 3*time.Minute)
	br, err := demostack.NewBrowser(ctx, chromium, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	if err := br.Login(st.BFFURL(), "alice", "alice-password"); err != nil {
		t.Fatal(err)
	}
	if err := br.Screenshot(filepath.Join(artifacts, "bff-before-logout.png")); err != nil {
		t.Errorf("screenshot: %v", err)
	}
	s := st.LiveBFFSessionT(t, ctx, "alice")
	// The BFF renews the internal token before it expires (TTL 5 s) without a new login.
	err = testwait.Poll(context.Background(), 2*ttl, 200*time.Millisecond, func() error {
		list, err := st.BFFSessions(ctx)
		if err != nil {
			return err
		}
		for _, x := range list {
			if x.ID == s.ID && x.Renewals > 0 && !x.Ended {
				*s = x
				return nil
			}
		}
		return errNotYet
	})
	if err != nil {
		t.Fatalf("the BFF did not renew its internal token within %s: %v", 2*ttl, err)
	}
	if code, body, _, err := st.CallService(ctx, s.InternalToken); err != nil || code != http.StatusOK {
		t.Fatalf("service with the session's renewed internal token: %v HTTP %d %s", err, code, body)
	}
	copiedInternal, copiedKC, bffRefresh := s.InternalToken, s.KeycloakAccessToken, s.InternalRefreshToken

	// From just before the logout, call the service with the copied internal token every 20 ms
	// and note when it is first refused.
	type refusal struct {
		at      time.Time
		wwwAuth string
		err     error
	}
	refusedAt := make(chan refusal, 1)
	go func() {
		r := refusal{err: errors.New("never refused")}
		_ = testwait.Poll(context.Background(), ttl+30*time.Second, 20*time.Millisecond, func() error {
			code, _, wa, err := st.CallService(ctx, copiedInternal)
			if err != nil || code == http.StatusUnauthorized {
				r = refusal{time.Now(), wa, err}
				return nil
			}
			return errors.New("still accepted")
		})
		refusedAt <- r
	}()
	endSession := st.KeycloakIssuer() + "/protocol/openid-connect/logout"
	t0, err := br.Logout(endSession)
	if err != nil {
		t.Fatal(err)
	}
	r, err := st.Renew(ctx, bffRefresh)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	if !refused(r) {
		t.Fatalf("renewal after UI logout: HTTP %d %s, want invalid_grant", r.Status, r.Error)
	}
	if took > time.Second {
		t.Errorf("renewal refused %s after the end_session response, want within 1s", took)
	}
	t.Logf("renewal refused %d ms after Keycloak's end_session response", took.Milliseconds())
	if reason := revocationReason(t, ctx, s.SID); reason != "backchannel" {
		t.Errorf("revocation reason %q, want backchannel", reason)
	}

	// Test 7: tokengate relayed the verified logout token to the BFF's endpoint.
	relayed := waitRelayed(t, ctx, s.SID)
	t.Logf("logout relayed to demo-bff %d ms relative to the end_session response", relayed.At.Sub(t0).Milliseconds())
	if relayed.Sessions != 1 {
		t.Errorf("relayed logout ended %d BFF sessions, want 1", relayed.Sessions)
	}
	if err := br.Reload(); err != nil {
		t.Fatal(err)
	}
	if txt := br.Text(); !strings.Contains(txt, "ended") {
		t.Errorf("BFF page after logout does not say the session ended: %s", txt)
	}
	if err := br.Screenshot(filepath.Join(artifacts, "bff-after-logout.png")); err != nil {
		t.Errorf("screenshot: %v", err)
	}

	// The copied Keycloak access token is refused for exchange.
	if x, err := st.Exchange(ctx, copiedKC); err != nil || x.Status == http.StatusOK {
		t.Errorf("exchange of the copied Keycloak token after logout: %v HTTP %d, want refused", err, x.Status)
	}

	// The copied internal token: demo-service follows tokengate's revocation feed, so it refuses
	// the token within a second of the logout, long before the token's exp.
	exp := tokenExpiry(t, copiedInternal)
	rf := <-refusedAt
	if rf.err != nil {
		t.Fatalf("calling the service with the copied internal token: %v", rf.err)
	}
	after := rf.at.Sub(t0)
	t.Logf("copied internal token refused by the service %d ms after the end_session response, %s before its exp",
		after.Milliseconds(), exp.Sub(rf.at).Round(time.Second))
	if after > time.Second {
		t.Errorf("copied internal token refused %s after the end_session response, want ≤ 1 s", after)
	}
	if !strings.Contains(rf.wwwAuth, `error="invalid_token"`) || !strings.Contains(rf.wwwAuth, "logged out") {
		t.Errorf("401 should name the revocation: %q", rf.wwwAuth)
	}
	if !rf.at.Before(exp) {
		t.Errorf("refused only at exp (%s): the revocation feed did not reach the service", exp)
	}
}

func tokenExpiry(t *testing.T, raw string) time.Time {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		t.Fatal(err)
	}
	return time.Unix(c.Exp, 0)
}

// Test 2: an admin deletes the user session through Keycloak's admin REST API; Keycloak's
// back-channel logout reaches tokengate and renewal is refused (and it is relayed: test 7).
func TestAdminDeletesSession_RenewalRefused(t *testing.T) {
	need(t)
	ctx := testContext(t, time.Minute)
	kc, in := st.LoginT(t, ctx, "bob")
	wantRenewal(t, ctx, in.RefreshToken)
	if err := st.AdminDeleteSession(ctx, kc.SessionState); err != nil {
		t.Fatal(err)
	}
	if r, _ := st.Renew(ctx, in.RefreshToken); !refused(r) {
		t.Fatalf("renewal after admin session delete: HTTP %d %s, want invalid_grant", r.Status, r.Error)
	}
	if reason := revocationReason(t, ctx, kc.SessionState); reason != "backchannel" {
		t.Errorf("revocation reason %q, want backchannel", reason)
	}
	waitRelayed(t, ctx, kc.SessionState)
}

// Test 3: tokengate is down while the user logs out, so Keycloak's back-channel logout is lost
// (Keycloak sends it once and never retries). After the restart the re-introspection path
// refuses the renewal within recheck_after.
func TestLogoutWhileTokengateDown_RefusedByRecheck(t *testing.T) {
	need(t)
	ctx := testContext(t, 2*time.Minute)
	kc, in := st.LoginT(t, ctx, "alice")
	wantRenewal(t, ctx, in.RefreshToken)
	if err := st.Stop("tokengate", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := st.KeycloakLogout(ctx, kc.RefreshToken); err != nil || code != http.StatusNoContent {
		t.Fatalf("Keycloak logout: %v HTTP %d", err, code)
	}
	if err := st.StartTokengate(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	if reason := revocationReason(t, ctx, kc.SessionState); reason != "" {
		t.Fatalf("session already revoked (%s) although the logout was never delivered", reason)
	}
	err := testwait.Poll(context.Background(), recheckAfter+2*time.Second, 250*time.Millisecond, func() error {
		r, err := st.Renew(ctx, in.RefreshToken)
		if err != nil {
			return err
		}
		if !refused(r) {
			return fmt.Errorf("renewal HTTP %d %s", r.Status, r.Error)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("renewal not refused within recheck_after (%s) after restart: %v", recheckAfter, err)
	}
	t.Logf("renewal refused %d ms after the restart", time.Since(restarted).Milliseconds())
	if reason := revocationReason(t, ctx, kc.SessionState); reason != "recheck" {
		t.Errorf("revocation reason %q, want recheck", reason)
	}
}

// Test 5: kill -9 of tokengate right after it answered 200 to Keycloak's back-channel logout
// (Keycloak answers the RP logout only after that call returned); after a restart the logout
// is still there and renewal is refused — by the durable record, before any re-introspection.
func TestKillDashNineAfterLogout_RefusedAfterRestart(t *testing.T) {
	need(t)
	ctx := testContext(t, 2*time.Minute)
	kc, in := st.LoginT(t, ctx, "bob")
	wantRenewal(t, ctx, in.RefreshToken)
	if code, err := st.KeycloakLogout(ctx, kc.RefreshToken); err != nil || code != http.StatusNoContent {
		t.Fatalf("Keycloak logout: %v HTTP %d", err, code)
	}
	if err := st.Stop("tokengate", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := st.StartTokengate(ctx); err != nil {
		t.Fatal(err)
	}
	if reason := revocationReason(t, ctx, kc.SessionState); reason != "backchannel" {
		t.Fatalf("after kill -9 and restart the session's revocation reason is %q, want backchannel (recorded before the 200)", reason)
	}
	if r, _ := st.Renew(ctx, in.RefreshToken); !refused(r) {
		t.Fatalf("renewal after kill -9 + restart: HTTP %d %s, want invalid_grant", r.Status, r.Error)
	}
}

// Test 6: the internal token verifies unmodified with go-oidc and with npm jose (node), both
// from tokengate's discovery/JWKS.
func TestInternalToken_VerifiesWithGoOIDCAndNodeJose(t *testing.T) {
	need(t)
	ctx := testContext(t, 3*time.Minute)
	// npm jose first (npm ci into the cache on a cold machine): the token's ttl is 5 s, and a
	// loaded machine's install must not spend it (a cold make test once saw ERR_JWT_EXPIRED).
	dir := joseDir(t, ctx)
	_, in := st.LoginT(t, ctx, "alice")

	p, err := oidc.NewProvider(ctx, st.TokengateURL())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := p.Verifier(&oidc.Config{ClientID: demostack.Audience}).Verify(ctx, in.AccessToken)
	if err != nil {
		t.Fatalf("go-oidc: %v", err)
	}
	var c struct {
		Username string `json:"preferred_username"`
	}
	if err := tok.Claims(&c); err != nil || c.Username != "alice" {
		t.Fatalf("go-oidc claims: %v %+v", err, c)
	}
	if _, err := p.Verifier(&oidc.Config{ClientID: "another-service"}).Verify(ctx, in.AccessToken); err == nil {
		t.Error("go-oidc accepted the token for another audience")
	}

	var disc struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := p.Claims(&disc); err != nil {
		t.Fatal(err)
	}
	// A fresh token for node: go-oidc's checks above may have spent part of the 5 s ttl.
	if in, err = st.Renew(ctx, in.RefreshToken); err != nil || in.AccessToken == "" {
		t.Fatalf("renewal before the node check: %v %+v", err, in)
	}
	run := func(aud string) (string, error) {
		cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "verify.mjs"), disc.JWKS, in.AccessToken, st.TokengateURL(), aud)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	out, err := run(demostack.Audience)
	if err != nil {
		t.Fatalf("npm jose refused the internal token: %v: %s", err, out)
	}
	var v struct {
		Header  map[string]any `json:"header"`
		Payload map[string]any `json:"payload"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("verify.mjs output: %v: %s", err, out)
	}
	if v.Header["typ"] != "at+jwt" || v.Payload["preferred_username"] != "alice" {
		t.Errorf("npm jose saw header %v payload %v", v.Header, v.Payload)
	}
	if out, err := run("another-service"); err == nil || !strings.Contains(out, `"aud"`) {
		t.Errorf("npm jose did not refuse the token for another audience on its aud claim: %v: %s", err, out)
	}
}

// joseDir installs integration/testdata/jose-verify (npm ci of the pinned lockfile) into a
// cache directory outside the clone, keyed by the lockfile's hash, and returns it.
func joseDir(t *testing.T, ctx context.Context) string {
	t.Helper()
	src := filepath.Join(root, "integration", "testdata", "jose-verify")
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(home, ".cache")
	}
	dir := filepath.Join(cache, "tokengate", "node-jose-"+hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"package.json", "package-lock.json", "verify.mjs"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "jose", "package.json")); err != nil {
		cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("missing dependency npm jose: npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	return dir
}

// Test 4 (last: it replaces the realm). Keycloak stopped → existing sessions keep renewing
// (past recheck_after too); new exchanges get 503; Keycloak back (a NEW realm import: new
// keys, user ids and sessions) → a fresh login is exchanged and served again.
func TestKeycloakDown_RenewalsContinueExchanges503ThenRecover(t *testing.T) {
	need(t)
	ctx := testContext(t, 5*time.Minute)
	_, in := st.LoginT(t, ctx, "alice")
	spare, err := st.PasswordGrant(ctx, "bob", "bob-password") // exchanged only once Keycloak is down
	if err != nil {
		t.Fatal(err)
	}
	exchanged := time.Now()
	if err := st.StopKeycloak(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Keycloak stopped in %s", time.Since(exchanged).Round(100*time.Millisecond))
	// Renew across recheck_after, so the re-introspection fails and must not stop renewals.
	for time.Since(exchanged) < recheckAfter+2*time.Second {
		r := wantRenewal(t, ctx, in.RefreshToken)
		if code, body, _, err := st.CallService(ctx, r.AccessToken); err != nil || code != http.StatusOK {
			t.Fatalf("service with a token renewed while Keycloak is down: %v HTTP %d %s", err, code, body)
		}
		time.Sleep(time.Second)
	}
	x, err := st.Exchange(ctx, spare.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if x.Status != http.StatusServiceUnavailable || x.Error != "temporarily_unavailable" {
		t.Fatalf("exchange while Keycloak is down: HTTP %d %s, want 503 temporarily_unavailable", x.Status, x.Error)
	}

	took, err := st.StartKeycloak(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Keycloak restarted (new realm import) in %s", took.Round(100*time.Millisecond))
	_, fresh := st.LoginT(t, ctx, "bob")
	if code, body, _, err := st.CallService(ctx, fresh.AccessToken); err != nil || code != http.StatusOK {
		t.Fatalf("service after Keycloak came back: %v HTTP %d %s", err, code, body)
	}
	wantRenewal(t, ctx, fresh.RefreshToken)
}
