package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/demostack"
	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/internal/proctest"
	"github.com/tokengate/tokengate/internal/testwait"
)

// checklistStep is one shell block of docs/keycloak.md's checklist, as written.
type checklistStep struct{ name, script string }

var (
	checklistMarker = regexp.MustCompile("<!-- checklist (kcadm|curl): ([a-z-]+) -->\n```sh\n")
	shFence         = regexp.MustCompile("(?m)^```sh$")
)

// checklistSteps reads the blocks of docs/keycloak.md's "## The checklist" section by flavor
// (kcadm, curl), in page order. It fails t unless every sh block of the section is marked,
// and both flavors have the same steps in the same order: a step shown is a step run.
func checklistSteps(t *testing.T) map[string][]checklistStep {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(root, "docs", "keycloak.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## The checklist\n")
	if !ok {
		t.Fatal("docs/keycloak.md has no ## The checklist section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	steps := map[string][]checklistStep{}
	marks := checklistMarker.FindAllStringSubmatchIndex(section, -1)
	for _, m := range marks {
		body, _, ok := strings.Cut(section[m[1]:], "```")
		if !ok {
			t.Fatalf("docs/keycloak.md: the %s block is not closed", section[m[4]:m[5]])
		}
		flavor, name := section[m[2]:m[3]], section[m[4]:m[5]]
		steps[flavor] = append(steps[flavor], checklistStep{name, body})
	}
	if n := len(shFence.FindAllString(section, -1)); n != len(marks) || n == 0 {
		t.Fatalf("docs/keycloak.md's checklist has %d sh blocks, %d marked to be run: mark each "+
			"(<!-- checklist kcadm|curl: step -->) or show it otherwise", n, len(marks))
	}
	names := func(s []checklistStep) (out []string) {
		for _, x := range s {
			out = append(out, x.name)
		}
		return out
	}
	if k, c := strings.Join(names(steps["kcadm"]), ","), strings.Join(names(steps["curl"]), ","); k != c {
		t.Fatalf("docs/keycloak.md's checklist: kcadm steps %s, curl steps %s: each step needs both", k, c)
	}
	return steps
}

// runChecklist runs the named steps of one flavor (all steps when none are named), joined
// into one bash script as a user pastes them into one shell, with vars as the shell
// variables the page lists. kcadm.sh comes from the Keycloak distribution the suite runs,
// with a HOME of its own (its config file).
func runChecklist(t *testing.T, ctx context.Context, flavor string, vars map[string]string, only ...string) {
	t.Helper()
	var script strings.Builder
	for _, s := range checklistSteps(t)[flavor] {
		if len(only) == 0 || contains(only, s.name) {
			script.WriteString(s.script)
		}
	}
	dist, err := st.KeycloakScript(ctx, "fetch")
	if err != nil {
		t.Fatal(err)
	}
	java, err := st.KeycloakScript(ctx, "java")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "HOME="+t.TempDir(), "JAVA_HOME="+java,
		"PATH="+filepath.Join(dist, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script.String())
	cmd.Env = env // stdin is /dev/null: a prompt fails instead of waiting
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docs/keycloak.md %s commands: %v\n%s\n%s", flavor, err, script.String(), out)
	}
	t.Logf("docs/keycloak.md %s steps %v ran in %s", flavor, only, time.Since(t0).Round(100*time.Millisecond))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Issue 24: the Keycloak checklist of docs/keycloak.md, every kcadm.sh block on one fresh
// realm and every curl block on another, run as written with the page's shell variables; then
// a tokengate configured for that realm exchanges a token of the BFF client, Keycloak's
// logout reaches it over the back-channel URL the checklist set, the next renewal is refused,
// and it follows the realm's Shared Signals stream with the receiver client (whose token
// carries ssf.read and ssf.manage).
func TestKeycloakChecklist_DocsCommandsSetUpAFreshRealm(t *testing.T) {
	need(t)
	ctx := testContext(t, 12*time.Minute)
	if _, err := exec.LookPath("jq"); err != nil {
		t.Fatal("missing dependency jq (the checklist's curl blocks use it): install it")
	}
	if !st.KeycloakOffersSignals(ctx) {
		t.Fatalf("Keycloak %s offers no Shared Signals (the suite runs 26.7+ with --features=ssf)", st.KeycloakVersionRunning())
	}
	for _, flavor := range []string{"curl", "kcadm"} {
		t.Run(flavor, func(t *testing.T) { checklistOnFreshRealm(t, ctx, flavor) })
	}
}

func checklistOnFreshRealm(t *testing.T, ctx context.Context, flavor string) {
	realm := "checklist-" + flavor
	adm := kcAdmin{base: st.KeycloakURL()}
	adm.must(t, ctx, http.MethodPost, "/admin/realms", map[string]any{"realm": realm, "enabled": true}, http.StatusCreated)
	t.Cleanup(func() {
		_, _, _ = adm.call(context.Background(), http.MethodDelete, "/admin/realms/"+realm, nil)
	})
	adm.must(t, ctx, http.MethodPost, "/admin/realms/"+realm+"/users", map[string]any{
		"username": "carol", "enabled": true, "email": "carol@example.com", "emailVerified": true,
		"firstName": "Carol", "lastName": "Checklist",
		"credentials": []map[string]any{{"type": "password", "value": "carol-password", "temporary": false}},
	}, http.StatusCreated)

	listen, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	const (
		bffSecret       = "checklist-bff-secret-0123456789-abcdef"
		tokengateSecret = "checklist-tokengate-secret-0123456789"
		signalsSecret   = "checklist-signals-secret-0123456789-ab"
		bffAtTokengate  = "checklist-bff-at-tokengate-0123456789-abc"
	)
	vars := map[string]string{
		"KEYCLOAK_URL": st.KeycloakURL(), "KEYCLOAK_ADMIN": "admin", "KC_CLI_PASSWORD": "admin",
		"REALM": realm, "TOKENGATE_URL": "http://" + listen,
		"TOKENGATE_CLIENT": "tokengate", "TOKENGATE_CLIENT_SECRET": tokengateSecret,
		"BFF_CLIENT": "bff", "BFF_CLIENT_SECRET": bffSecret, "BFF_REDIRECT_URI": "http://127.0.0.1/*",
		"SIGNALS_CLIENT": "tokengate-signals", "SIGNALS_CLIENT_SECRET": signalsSecret,
	}
	runChecklist(t, ctx, flavor, vars)

	// The password grant stands in for the BFF's browser login (the checklist's BFF client,
	// rightly, has direct access grants off).
	id := adm.clientID(t, ctx, realm, "bff")
	var bff map[string]any
	adm.mustJSON(t, ctx, http.MethodGet, "/admin/realms/"+realm+"/clients/"+id, &bff)
	bff["directAccessGrantsEnabled"] = true
	adm.must(t, ctx, http.MethodPut, "/admin/realms/"+realm+"/clients/"+id, bff, http.StatusNoContent)

	issuer := st.KeycloakURL() + "/realms/" + realm
	sig, err := postTokenForm(ctx, issuer+"/protocol/openid-connect/token", "tokengate-signals", signalsSecret,
		url.Values{"grant_type": {"client_credentials"}})
	if err != nil || sig.Status != http.StatusOK {
		t.Fatalf("receiver's client-credentials token: %v HTTP %d %s", err, sig.Status, sig.Error)
	}
	if scope := claims(t, sig.AccessToken)["scope"]; !strings.Contains(fmt.Sprint(scope), "ssf.read") || !strings.Contains(fmt.Sprint(scope), "ssf.manage") {
		t.Errorf("receiver's token scope %q lacks ssf.read or ssf.manage", scope)
	}

	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	g := proctest.StartT(t, config.Config{
		Listen: listen, DataDir: t.TempDir(),
		Upstream: config.Upstream{Issuer: issuer, ClientID: "tokengate", ClientSecret: tokengateSecret,
			LogoutAudiences: []string{"bff"}, MaxTokenLifetime: config.Duration(time.Hour),
			SharedSignals: config.SharedSignals{Enabled: true, ClientID: "tokengate-signals", ClientSecret: signalsSecret,
				PollInterval: config.Duration(500 * time.Millisecond)}},
		Admin:   config.Admin{Tokens: []config.AdminToken{{Name: "test", SHA256: sum(demostack.AdminToken)}}},
		Clients: []config.Client{{ID: "bff", SecretSHA256: sum(bffAtTokengate), Audiences: []string{demostack.Audience}}},
	}, proctest.Options{Bin: st.Bin.Tokengate})

	kc, err := postTokenForm(ctx, issuer+"/protocol/openid-connect/token", "bff", bffSecret, url.Values{
		"grant_type": {"password"}, "username": {"carol"}, "password": {"carol-password"}, "scope": {"openid"}})
	if err != nil || kc.Status != http.StatusOK {
		t.Fatalf("password grant on the checklist's realm: %v HTTP %d %s %s", err, kc.Status, kc.Error, kc.Description)
	}
	x, err := postTokenForm(ctx, g.Base+"/token", "bff", bffAtTokengate, url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {kc.AccessToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}})
	if err != nil || x.Status != http.StatusOK || x.RefreshToken == "" {
		t.Fatalf("exchange on the checklist's realm: %v HTTP %d %s %s", err, x.Status, x.Error, x.Description)
	}
	renew := func() (demostack.TokenResponse, error) {
		return postTokenForm(ctx, g.Base+"/token", "bff", bffAtTokengate, url.Values{
			"grant_type": {"refresh_token"}, "refresh_token": {x.RefreshToken}})
	}
	if r, err := renew(); err != nil || r.Status != http.StatusOK {
		t.Fatalf("renewal before logout: %v HTTP %d %s %s", err, r.Status, r.Error, r.Description)
	}
	if err := testwait.Poll(context.Background(), time.Minute, 250*time.Millisecond, func() error {
		if v := metricValue(ctx, g.Admin, "tokengate_upstream_signals_up"); v != "1" {
			return fmt.Errorf("tokengate_upstream_signals_up = %q", v)
		}
		return nil
	}); err != nil {
		t.Errorf("tokengate does not follow the realm's Shared Signals stream with the checklist's receiver: %v\n%s",
			err, proctest.Tail(g.Output(), 20))
	}

	out, err := postTokenForm(ctx, issuer+"/protocol/openid-connect/logout", "bff", bffSecret,
		url.Values{"refresh_token": {kc.RefreshToken}})
	if err != nil || out.Status != http.StatusNoContent {
		t.Fatalf("Keycloak logout: %v HTTP %d %s", err, out.Status, out.Error)
	}
	if err := testwait.Poll(context.Background(), 5*time.Second, 100*time.Millisecond, func() error {
		r, err := renew()
		if err != nil {
			return err
		}
		if r.Status != http.StatusBadRequest || r.Error != "invalid_grant" {
			return fmt.Errorf("renewal after logout: HTTP %d %s %s", r.Status, r.Error, r.Description)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, proctest.Tail(g.Output(), 20))
	}
	// The back-channel logout (sent within Keycloak's logout call, before its Shared Signals
	// event) recorded it: the URL the checklist set reaches tokengate.
	if reason := sessionReason(t, ctx, g.Admin, kc.SessionState); reason != "backchannel" {
		t.Errorf("session %s revoked with reason %q, want backchannel: the checklist's back-channel logout URL did not reach tokengate\n%s",
			kc.SessionState, reason, proctest.Tail(g.Output(), 20))
	}
}

// sessionReason asks a tokengate's admin API (demo admin token) why sid is refused.
func sessionReason(t *testing.T, ctx context.Context, admin, sid string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/admin/sessions/"+url.PathEscape(sid), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+demostack.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r demostack.SessionRevocation
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&r) != nil {
		t.Fatalf("GET /admin/sessions/%s: HTTP %d", sid, resp.StatusCode)
	}
	return r.Revocation.Reason
}

// postTokenForm posts form to an OAuth endpoint with HTTP Basic client credentials.
func postTokenForm(ctx context.Context, u, client, secret string, form url.Values) (demostack.TokenResponse, error) {
	var tr demostack.TokenResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return tr, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(client), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return tr, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if len(body) > 0 {
		if err := json.Unmarshal(body, &tr); err != nil {
			return tr, fmt.Errorf("POST %s: HTTP %d, not JSON: %.200s", u, resp.StatusCode, body)
		}
	}
	tr.Status = resp.StatusCode
	return tr, nil
}

// claims decodes a JWT's payload without verifying it (the test reads what Keycloak issued).
func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.40s", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	return c
}

// metricValue is the value of an unlabelled metric on a tokengate admin listener (with the
// demo admin token), or "" when it cannot be read.
func metricValue(ctx context.Context, admin, name string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/metrics", nil)
	if err != nil {
		return ""
	}
	req.Header.Set("Authorization", "Bearer "+demostack.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// kcAdmin calls Keycloak's admin REST API as the master realm's admin.
type kcAdmin struct{ base string }

func (a kcAdmin) call(ctx context.Context, method, path string, body any) (int, []byte, error) {
	tr, err := postTokenForm(ctx, a.base+"/realms/master/protocol/openid-connect/token", "admin-cli", "", url.Values{
		"grant_type": {"password"}, "client_id": {"admin-cli"}, "username": {"admin"}, "password": {"admin"}})
	if err != nil || tr.AccessToken == "" {
		return 0, nil, fmt.Errorf("admin token: %v HTTP %d %s", err, tr.Status, tr.Error)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, out, nil
}

func (a kcAdmin) must(t *testing.T, ctx context.Context, method, path string, body any, want int) []byte {
	t.Helper()
	status, out, err := a.call(ctx, method, path, body)
	if err != nil || status != want {
		t.Fatalf("%s %s: %v HTTP %d %.300s", method, path, err, status, out)
	}
	return out
}

func (a kcAdmin) mustJSON(t *testing.T, ctx context.Context, method, path string, v any) {
	t.Helper()
	if err := json.Unmarshal(a.must(t, ctx, method, path, nil, http.StatusOK), v); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

// clientID is the internal id of a realm's client.
func (a kcAdmin) clientID(t *testing.T, ctx context.Context, realm, clientID string) string {
	t.Helper()
	var cs []struct {
		ID string `json:"id"`
	}
	a.mustJSON(t, ctx, http.MethodGet, "/admin/realms/"+realm+"/clients?clientId="+url.QueryEscape(clientID), &cs)
	if len(cs) != 1 {
		t.Fatalf("realm %s has %d clients %q", realm, len(cs), clientID)
	}
	return cs[0].ID
}
