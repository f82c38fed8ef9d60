package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
)

// TestExchange_RechecksAfterRecheckAfter: a session that ended at Keycloak without a
// back-channel logout (user disabled, lost delivery) stops exchanging once recheck_after has
// passed, like its renewals: the BFF exchanging the same Keycloak token again gets
// invalid_request, not new internal tokens until that token's exp.
func TestExchange_RechecksAfterRecheckAfter(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	c := baseConfig(realm.Issuer(), t.TempDir())
	c.Tokens.RecheckAfter = seconds(2)
	g := startGateway(t, c)
	sid := "sid-silent-" + randID(t)
	tok := realm.AccessToken(kctest.Token{Subject: "quinn", SID: sid})
	g.mustExchange(tok)
	g.mustExchange(tok) // within recheck_after: the cached answer
	realm.EndSession(sid)
	time.Sleep(3 * time.Second)
	wantError(t, "re-exchange 3s after the session ended silently (recheck_after 2s)", g.exchange(tok),
		http.StatusBadRequest, "invalid_request")
	wantError(t, "and again", g.exchange(tok), http.StatusBadRequest, "invalid_request")
}

// TestRecheck_NearExpiryWithKeycloakClockAheadIsNotALogout: Keycloak's clock runs 3s ahead, so
// it answers active:false for a token in its last 3s by tokengate's clock. A recheck then is the
// token's expiry, not a logout: the renewal is refused (the BFF exchanges its next Keycloak
// token), no logout is recorded or published, and the next Keycloak token of the same session
// exchanges.
func TestRecheck_NearExpiryWithKeycloakClockAheadIsNotALogout(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	realm.SetClockAhead(3 * time.Second)
	c := baseConfig(realm.Issuer(), t.TempDir())
	c.Tokens.RecheckAfter = seconds(1)
	g := startGateway(t, c)
	sid := "sid-clock-" + randID(t)
	tok := realm.AccessToken(kctest.Token{Subject: "rita", SID: sid, Lifetime: 8 * time.Second})
	rt := g.mustExchange(tok).RefreshToken
	deadline := time.Now().Add(10 * time.Second)
	var last reply
	for time.Now().Before(deadline) {
		if last = g.renew(rt); last.Status != http.StatusOK {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	wantError(t, "renewal at the end of the Keycloak token's life", last, http.StatusBadRequest, "invalid_grant")
	next := realm.AccessToken(kctest.Token{Subject: "rita", SID: sid})
	if r := g.exchange(next); r.Status != http.StatusOK {
		t.Fatalf("the next Keycloak token of the live session: %v (a recheck near expiry was taken for a logout)", r)
	}
	if out := g.Output(); strings.Contains(out, `"reason":"recheck"`) && strings.Contains(out, `"event":"logout"`) {
		t.Fatalf("a logout was recorded for an expiring token:\n%s", out)
	}
}

// TestSubjectRevocation_RefusesTokensRefreshedAfterIt: an operator revokes a user; Keycloak's
// session lives on and refreshes its access token (later iat, same auth_time): that token is
// refused, a new login is not.
func TestSubjectRevocation_RefusesTokensRefreshedAfterIt(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	g := startGateway(t, withAdmin(realm.Issuer(), t.TempDir()))
	login := time.Now().Add(-2 * time.Second)
	sub, sid := "sam-"+randID(t), "sid-s-"+randID(t)
	g.mustExchange(realm.AccessToken(kctest.Token{Subject: sub, SID: sid, IssuedAt: login}))
	if out, err := cli(t, g, cliAdminToken, "subjects", "revoke", sub); err != nil {
		t.Fatalf("subjects revoke: %v\n%s", err, out)
	}
	time.Sleep(1100 * time.Millisecond) // the refreshed token's iat is after the revocation
	refreshed := realm.AccessToken(kctest.Token{Subject: sub, SID: sid, AuthTime: login})
	wantError(t, "a token of the revoked user's session refreshed after the revocation", g.exchange(refreshed),
		http.StatusBadRequest, "invalid_request")
	fresh := realm.AccessToken(kctest.Token{Subject: sub, SID: fmt.Sprint("sid-new-", randID(t))})
	g.mustExchange(fresh)
}
