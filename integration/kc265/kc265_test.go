// Package kc265 keeps Keycloak 26.5 supported: a short smoke path of the logout story against
// a real Keycloak 26.5.6 (the line before the 26.6 introspection audience rule), with the same
// realm file and the same machinery (internal/demostack) as the full suite in integration/,
// which runs on scripts/keycloak.sh's default version. Browser login through the BFF (which
// exchanges the Keycloak token at tokengate), a service call, logout in the browser: the
// back-channel logout reaches tokengate and the next renewal is refused. It runs when
// TOKENGATE_INTEGRATION=1 (make test).
package kc265

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/demostack"
)

// version is the Keycloak line this package keeps working.
const version = "26.5.6"

var suite demostack.Suite

func TestMain(m *testing.M) {
	os.Exit(demostack.RunSuite(m, demostack.SuiteOptions{
		Name: "kc265", KeycloakVersion: version, TTL: 5 * time.Second, RecheckAfter: 10 * time.Second,
	}, &suite))
}

func TestKeycloak265_LoginExchangeLogoutRenewalRefused(t *testing.T) {
	suite.Need(t)
	st := suite.Stack
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if v := st.KeycloakVersionRunning(); v != version {
		t.Fatalf("the stack runs Keycloak %s, want %s", v, version)
	}
	br, err := demostack.NewBrowser(ctx, suite.Chromium, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	if err := br.Login(st.BFFURL(), "alice", "alice-password"); err != nil {
		t.Fatal(err)
	}
	s := st.LiveBFFSessionT(t, ctx, "alice")
	if r, err := st.Renew(ctx, s.InternalRefreshToken); err != nil || r.Status != http.StatusOK {
		t.Fatalf("renewal before logout: %v HTTP %d %s", err, r.Status, r.Description)
	}
	t0, err := br.Logout(st.KeycloakIssuer() + "/protocol/openid-connect/logout")
	if err != nil {
		t.Fatal(err)
	}
	r, err := st.Renew(ctx, s.InternalRefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusBadRequest || r.Error != "invalid_grant" {
		t.Fatalf("renewal after the browser logout: HTTP %d %s, want 400 invalid_grant", r.Status, r.Error)
	}
	t.Logf("Keycloak %s: renewal refused %d ms after the end_session response", version, time.Since(t0).Milliseconds())
	rev, err := st.AdminSession(ctx, s.SID)
	if err != nil {
		t.Fatal(err)
	}
	if !rev.Revoked || rev.Revocation.Reason != "backchannel" {
		t.Errorf("session %s at tokengate: %+v, want revoked by the back-channel logout", s.SID, rev)
	}
}
