package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/proctest"
)

const cliAdminToken = "cli-admin-token-0123456789-abcdefghijklm"

// withAdmin is the base configuration with cliAdminToken as operator ops.
func withAdmin(upstream, dataDir string) config.Config {
	h := sha256.Sum256([]byte(cliAdminToken))
	c := baseConfig(upstream, dataDir)
	c.Admin.Tokens = []config.AdminToken{{Name: "ops", SHA256: hex.EncodeToString(h[:])}}
	return c
}

// cli runs the real binary as an operator would.
func cli(t *testing.T, g *gateway, token string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), "TOKENGATE_ADMIN_URL="+g.Admin, "TOKENGATE_ADMIN_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestCLI_KeysSessionsSubjectsEndToEnd(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	g := startGateway(t, withAdmin(realm.Issuer(), t.TempDir()))

	out, err := cli(t, g, cliAdminToken, "keys", "list")
	if err != nil || strings.Count(out, "ES256") != 2 || !strings.Contains(out, "active") || !strings.Contains(out, "next") {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
	out, err = cli(t, g, cliAdminToken, "keys", "list", "-o", "json")
	var listed struct {
		Keys []struct{ Kid, State string }
	}
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed.Keys) != 2 {
		t.Fatalf("keys list -o json: %v\n%s", err, out)
	}
	active := ""
	for _, k := range listed.Keys {
		if k.State == "active" {
			active = k.Kid
		}
	}
	if out, err := cli(t, g, cliAdminToken, "keys", "rotate"); err == nil || !strings.Contains(out, "409") {
		t.Errorf("rotate of a young next key must be refused: %v\n%s", err, out)
	}
	if out, err := cli(t, g, cliAdminToken, "keys", "rotate", "--force"); err != nil || !strings.Contains(out, "retired:") || !strings.Contains(out, active) {
		t.Fatalf("keys rotate --force: %v\n%s", err, out)
	}
	if out, err := cli(t, g, cliAdminToken, "keys", "revoke", "no-such-kid"); err == nil || !strings.Contains(out, "404") {
		t.Errorf("revoking an unknown kid: %v\n%s", err, out)
	}
	out, err = cli(t, g, cliAdminToken, "keys", "revoke", active)
	if err != nil || !strings.Contains(out, "removed:") {
		t.Fatalf("keys revoke: %v\n%s", err, out)
	}
	out, err = cli(t, g, cliAdminToken, "keys", "export-public")
	if err != nil || strings.Contains(out, active) || !strings.Contains(out, `"kty"`) || strings.Contains(out, `"d"`) {
		t.Fatalf("export-public: %v\n%s", err, out)
	}

	// Sessions and subjects: revoked through the CLI, refused at the token endpoint.
	ex := g.mustExchange(realm.AccessToken(kctest.Token{Subject: "ulla", SID: "sid-cli"}))
	if out, err := cli(t, g, cliAdminToken, "sessions", "show", "sid-cli"); err != nil || !strings.Contains(out, "no recorded logout") {
		t.Fatalf("sessions show: %v\n%s", err, out)
	}
	if out, err := cli(t, g, cliAdminToken, "sessions", "revoke", "sid-cli"); err != nil || !strings.Contains(out, "revoked session sid-cli") {
		t.Fatalf("sessions revoke: %v\n%s", err, out)
	}
	if r := g.renew(ex.RefreshToken); r.Status != 400 || r.Error != "invalid_grant" {
		t.Errorf("renewal after CLI revoke: %s", r)
	}
	if out, err := cli(t, g, cliAdminToken, "subjects", "revoke", "ulla", "-o", "json"); err != nil || !strings.Contains(out, `"sub": "ulla"`) {
		t.Fatalf("subjects revoke: %v\n%s", err, out)
	}
	// An ID may start with "-" (a key ID does one time in 64): it is an argument, not a flag.
	if out, err := cli(t, g, cliAdminToken, "sessions", "revoke", "-o", "json", "-sid-dash"); err != nil || !strings.Contains(out, `"sid": "-sid-dash"`) {
		t.Fatalf("sessions revoke -sid-dash: %v\n%s", err, out)
	}
	if out, err := cli(t, g, cliAdminToken, "sessions", "show", "-sid-dash"); err != nil || strings.Contains(out, "no recorded logout") {
		t.Fatalf("sessions show -sid-dash: %v\n%s", err, out)
	}
	if !strings.Contains(g.Output(), `"who":"ops","action":"sessions.revoke","target":"sid-cli"`) {
		t.Error("no audit line for the CLI's session revocation")
	}
}

func TestCLI_Errors(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	g := startGateway(t, withAdmin(realm.Issuer(), t.TempDir()))
	cases := []struct {
		name, token string
		args        []string
		want        string
	}{
		{"wrong token", "wrong-token", []string{"keys", "list"}, "401"},
		{"no token", "", []string{"keys", "list"}, "admin token is required"},
		{"missing kid", cliAdminToken, []string{"keys", "revoke"}, "takes 1 argument"},
		{"unknown subcommand", cliAdminToken, []string{"keys", "burn"}, "unknown command"},
		{"bad output", cliAdminToken, []string{"keys", "list", "-o", "xml"}, "-o must be"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := cli(t, g, c.token, c.args...)
			if err == nil || !strings.Contains(out, c.want) {
				t.Errorf("%v\n%s", err, out)
			}
		})
	}
	out, err := exec.Command(binPath, "keys", "list", "--admin-url", "http://127.0.0.1:1", "--token", "x").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unreachable") {
		t.Errorf("unreachable admin API: %v %s", err, out)
	}
}

func TestGenKEK_StartsWithAndRefusesWrongKEK(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	out, err := exec.Command(binPath, "gen-kek").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kek := filepath.Join(dir, "kek")
	if err := os.WriteFile(kek, out, 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	c := baseConfig(realm.Issuer(), data)
	c.Keys.KEKFile = kek
	g := startGateway(t, c)
	g.mustExchange(realm.AccessToken(kctest.Token{}))
	g.terminate(exitTimeout)
	raw, err := os.ReadFile(filepath.Join(data, "tokengate.db"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), `"d":"`) {
		t.Fatal("private key material in clear in the database file")
	}
	other, _ := exec.Command(binPath, "gen-kek").Output()
	_ = os.WriteFile(kek, other, 0o600)
	wrong := proctest.StartT(t, c, proctest.Options{Bin: binPath, NoWait: true})
	if code, ok := wrong.Wait(exitTimeout); !ok || code == 0 || !strings.Contains(wrong.Output(), "key-encryption key does not open") {
		t.Fatalf("wrong KEK must refuse to start: exited %v with %d\n%s", ok, code, wrong.Output())
	}
}
