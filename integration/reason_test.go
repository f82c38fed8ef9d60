package integration

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/issuer"
)

// TestRealKeycloakTokensOfTheWrongKind_SayWhy (issue 24 item 1, on the real Keycloak): the ID
// token and the refresh token of a real login, and a master-realm access token, sent as
// subject_token are each refused 400 invalid_request with a description naming what they are
// (typ "ID", typ "Refresh" — Keycloak signs refresh tokens HS512 — and the master realm's
// issuer next to the demo realm's), and tokengate's log has one exchange_refused line per
// refusal with that reason and the token's hash. The access token of the same login exchanges.
func TestRealKeycloakTokensOfTheWrongKind_SayWhy(t *testing.T) {
	need(t)
	ctx := testContext(t, 2*time.Minute)
	kc, err := st.PasswordGrant(ctx, "alice", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	if kc.IDToken == "" || kc.RefreshToken == "" {
		t.Fatalf("Keycloak's answer lacks an ID or refresh token: %+v", kc)
	}
	resp, err := http.PostForm(st.KeycloakURL()+"/realms/master/protocol/openid-connect/token", url.Values{
		"grant_type": {"password"}, "client_id": {"admin-cli"}, "username": {"admin"}, "password": {"admin"}})
	if err != nil {
		t.Fatal(err)
	}
	var master struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&master)
	_ = resp.Body.Close()
	if err != nil || master.AccessToken == "" {
		t.Fatalf("master realm token: HTTP %d %v", resp.StatusCode, err)
	}
	cases := []struct {
		name, token, reason string
		desc                []string
	}{
		{"ID token", kc.IDToken, "typ", []string{`subject_token is an ID token (typ "ID")`, "send the access token"}},
		{"refresh token", kc.RefreshToken, "typ", []string{`subject_token is a refresh token (typ "Refresh")`}},
		{"master realm token", master.AccessToken, "issuer", []string{`subject_token was issued by "` + st.KeycloakURL() + `/realms/master"`,
			`not by the upstream provider "` + st.KeycloakIssuer() + `"`}},
	}
	for _, c := range cases {
		x, err := st.Exchange(ctx, c.token)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: HTTP %d %s %q", c.name, x.Status, x.Error, x.Description)
		if x.Status != http.StatusBadRequest || x.Error != "invalid_request" {
			t.Errorf("%s: HTTP %d %s, want 400 invalid_request", c.name, x.Status, x.Error)
		}
		for _, d := range c.desc {
			if !strings.Contains(x.Description, d) {
				t.Errorf("%s: description %q does not say %q", c.name, x.Description, d)
			}
		}
	}
	if x, err := st.Exchange(ctx, kc.AccessToken); err != nil || x.Status != http.StatusOK {
		t.Errorf("the access token of the same login: %v HTTP %d %s %s", err, x.Status, x.Error, x.Description)
	}
	logs, err := os.ReadFile(filepath.Join(st.Work, "tokengate.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if strings.Contains(string(logs), c.token) {
			t.Fatalf("%s: tokengate's log holds the token", c.name)
		}
		want := []string{`"event":"exchange_refused"`, `"reason":"` + c.reason + `"`, `"subject_token":"` + issuer.TokenHash(c.token) + `"`}
		found := false
		for _, l := range strings.Split(string(logs), "\n") {
			all := true
			for _, w := range want {
				all = all && strings.Contains(l, w)
			}
			found = found || all
		}
		if !found {
			t.Errorf("%s: tokengate's log has no line with %v", c.name, want)
		}
	}
}
