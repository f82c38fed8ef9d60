package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/demostack"
)

// bffOther is a Keycloak client created without the audience mapper; tokengate's other-bff
// exchanges its tokens (upstream_clients: [bff-other]).
const (
	bffOther       = "bff-other"
	bffOtherSecret = "bff-other-secret-0123456789-abcdefgh"
)

// Issue 13 on the real Keycloak: a client without the audience mapper gets its tokens
// refused, before introspection, naming the missing audience (and Keycloak ≥ 26.6 itself
// refuses to introspect them for tokengate); the kcadm.sh commands of docs/keycloak.md,
// run as written, add the mapper and the next token is exchanged. A token of bff is not
// other-bff's to exchange, nor bff-other's bff's; those refusals change nothing.
func TestAudienceMapper_DocsCommandsMakeANewClientsTokensExchangeable(t *testing.T) {
	need(t)
	ctx := testContext(t, 4*time.Minute)
	if err := st.AdminCreateClient(ctx, bffOther, bffOtherSecret); err != nil {
		t.Fatal(err)
	}
	kc, err := st.PasswordGrantAs(ctx, bffOther, bffOtherSecret, "alice", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	x, err := st.ExchangeAs(ctx, otherBFF.ID, otherBFF.Secret, kc.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if x.Status != http.StatusBadRequest || x.Error != "invalid_request" ||
		!strings.Contains(x.Description, `aud does not contain "tokengate"`) || !strings.Contains(x.Description, "audience mapper") {
		t.Fatalf("exchange of a token without the audience: HTTP %d %s %q, want 400 invalid_request naming the audience",
			x.Status, x.Error, x.Description)
	}
	intro, err := st.Introspect(ctx, kc.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	version := st.KeycloakVersionRunning()
	t.Logf("Keycloak %s introspects a token without tokengate in aud as active=%v", version, intro["active"])
	if after26_6(version) && intro["active"] != false {
		t.Errorf("Keycloak %s introspected a token without tokengate in aud as %v; FACTS.md says 26.6+ answers active:false", version, intro)
	}

	runDocsMapperCommands(t, ctx, bffOther)
	kc, err = st.PasswordGrantAs(ctx, bffOther, bffOtherSecret, "alice", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	if x, err = st.ExchangeAs(ctx, otherBFF.ID, otherBFF.Secret, kc.AccessToken); err != nil || x.Status != http.StatusOK {
		t.Fatalf("exchange after the docs' kcadm.sh commands: %v HTTP %d %s %s", err, x.Status, x.Error, x.Description)
	}

	// Caller binding: each BFF exchanges only its own Keycloak client's tokens.
	bob, err := st.PasswordGrant(ctx, "bob", "bob-password")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ caller, secret, token, azp string }{
		{otherBFF.ID, otherBFF.Secret, bob.AccessToken, "bff"},
		{"bff", demostack.BFFTokengateSecret, kc.AccessToken, bffOther},
	} {
		x, err := st.ExchangeAs(ctx, c.caller, c.secret, c.token)
		if err != nil {
			t.Fatal(err)
		}
		if x.Status != http.StatusBadRequest || x.Error != "invalid_request" || !strings.Contains(x.Description, `issued to upstream client "`+c.azp+`"`) {
			t.Errorf("%s exchanging a token of %s: HTTP %d %s %q, want 400 invalid_request naming %s", c.caller, c.azp, x.Status, x.Error, x.Description, c.azp)
		}
	}
	if reason := revocationReason(t, ctx, bob.SessionState); reason != "" {
		t.Errorf("a refused exchange revoked bob's session (%s)", reason)
	}
	if x, err := st.Exchange(ctx, bob.AccessToken); err != nil || x.Status != http.StatusOK {
		t.Errorf("bff exchanging its own token after other-bff was refused: %v HTTP %d %s", err, x.Status, x.Description)
	}
	logs, err := os.ReadFile(filepath.Join(st.Work, "tokengate.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"reason":"audience"`, `"reason":"upstream_client"`} {
		if !strings.Contains(string(logs), want) {
			t.Errorf("tokengate's log has no exchange_refused line with %s", want)
		}
	}
}

// after26_6 reports whether a Keycloak version string (26.7.3) is 26.6 or later.
func after26_6(v string) bool {
	var major, minor int
	var rest string
	if n, _ := fmt.Sscanf(v, "%d.%d%s", &major, &minor, &rest); n < 2 {
		return false
	}
	return major > 26 || major == 26 && minor >= 6
}

// runDocsMapperCommands runs the login and audience-mapper kcadm.sh steps of docs/keycloak.md's
// checklist, as written, for client, with the admin CLI of the Keycloak distribution the suite
// runs.
func runDocsMapperCommands(t *testing.T, ctx context.Context, client string) {
	t.Helper()
	runChecklist(t, ctx, "kcadm", map[string]string{
		"KEYCLOAK_URL": st.KeycloakURL(), "KEYCLOAK_ADMIN": "admin", "KC_CLI_PASSWORD": "admin",
		"REALM": demostack.Realm, "BFF_CLIENT": client, "TOKENGATE_CLIENT": "tokengate",
	}, "login", "audience-mapper")
}
