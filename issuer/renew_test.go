package issuer_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/issuer"
)

func TestRenew_NoUpstreamCallsUntilRecheckAfter(t *testing.T) {
	f := newFixture(t)
	r := f.exchange("", "sid-r")
	for range 50 {
		f.mustRenew(r.RefreshToken)
		f.clock.Advance(time.Second)
	}
	if n := f.up.calls.Load(); n != 1 {
		t.Fatalf("introspections after 50 renewals = %d, want 1 (the exchange's)", n)
	}
	f.clock.Advance(11 * time.Second) // 61s since the exchange
	for range 10 {
		f.mustRenew(r.RefreshToken)
	}
	if n := f.up.calls.Load(); n != 2 {
		t.Errorf("introspections after recheck_after = %d, want 2", n)
	}
}

func TestRenew_NewTokenEachTimeWithoutARefreshToken(t *testing.T) {
	f := newFixture(t)
	r := f.exchange("bob-id", "sid-b")
	rn := f.mustRenew(r.RefreshToken)
	if rn.AccessToken == r.AccessToken || rn.AccessToken == "" {
		t.Error("renewal must mint a new access token")
	}
	if rn.RefreshToken != "" {
		t.Error("renewal answered a refresh_token; the client keeps the one it has (RFC 6749 §6)")
	}
	if rn.TokenType != "Bearer" || rn.ExpiresIn != 30 || rn.Scope != r.Scope {
		t.Errorf("renewal = %+v, exchange = %+v", rn, r)
	}
}

func TestRenew_RefusedAfterBackchannelLogout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	up := f.token("alice-id", "sid-out")
	r, err := f.exchangeToken(up)
	if err != nil {
		t.Fatal(err)
	}
	other := f.exchange("alice-id", "sid-other-device")
	f.mustRenew(r.RefreshToken)
	lt := f.realm.LogoutToken("alice-id", "sid-out")
	rev, err := f.is.RecordLogout(ctx, lt)
	if err != nil || rev.SID != "sid-out" || rev.Reason != "backchannel" {
		t.Fatalf("logout: %+v, %v", rev, err)
	}
	_, err = f.renew(r.RefreshToken)
	wantCode(t, "renewal after logout", err, issuer.CodeInvalidGrant)
	_, err = f.exchangeToken(up)
	wantCode(t, "re-exchange after logout", err, issuer.CodeInvalidRequest)
	_, err = f.renew(other.RefreshToken)
	wantCode(t, "another session of the same user", err, "")
	evs, tokens := f.pub.snapshot()
	if len(evs) != 1 || evs[0].Revocation.SID != "sid-out" || evs[0].Revocation.Reason != "backchannel" || tokens[0] != lt {
		t.Errorf("published %+v with tokens %d, want the one back-channel logout with its token", evs, len(tokens))
	}
}

func TestRenew_RefusedAfterSubjectWideLogoutALaterLoginIsNot(t *testing.T) {
	f := newFixture(t)
	before := f.realm.AccessToken(kctest.Token{Subject: "carol", IssuedAt: f.clock.Now().Add(-time.Minute)})
	r, err := f.exchangeToken(before)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.is.RecordLogout(context.Background(), f.realm.LogoutToken("carol", "")); err != nil {
		t.Fatal(err)
	}
	_, err = f.renew(r.RefreshToken)
	wantCode(t, "renewal after the subject's logout", err, issuer.CodeInvalidGrant)
	after := f.realm.AccessToken(kctest.Token{Subject: "carol", IssuedAt: time.Now().Add(2 * time.Second)})
	_, err = f.exchangeToken(after)
	wantCode(t, "a login after the logout", err, "")
}

func TestRenew_RecheckEndsSessionThatEndedUpstreamSilently(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.exchange("dave", "sid-idle")
	f.realm.EndSession("sid-idle") // idle expiry: Keycloak sends no logout
	_, err := f.renew(r.RefreshToken)
	wantCode(t, "before recheck_after the issuer does not ask", err, "")
	f.clock.Advance(61 * time.Second)
	_, err = f.renew(r.RefreshToken)
	wantCode(t, "after the recheck", err, issuer.CodeInvalidGrant)
	rev, err := f.store.SessionRevocation(ctx, "sid-idle")
	if err != nil || rev.Reason != "recheck" || rev.Sub != "dave" {
		t.Errorf("revocation = %+v, %v", rev, err)
	}
	evs, tokens := f.pub.snapshot()
	if len(evs) != 1 || evs[0].Revocation.Reason != "recheck" || tokens[0] != "" {
		t.Errorf("published %+v %q, want one recheck event without a logout token", evs, tokens)
	}
	n := f.up.calls.Load()
	_, err = f.renew(r.RefreshToken)
	wantCode(t, "renewal of a recorded session", err, issuer.CodeInvalidGrant)
	if f.up.calls.Load() != n {
		t.Error("a recorded session must be refused without asking upstream")
	}
}

// TestRenew_ProviderDownKeepsRenewingAndRetriesAfterBackoff: a recheck the provider cannot
// answer lets the renewal through (availability over a check that is only a backstop to
// back-channel logout), and the next attempt waits the 5s backoff, not RecheckAfter.
func TestRenew_ProviderDownKeepsRenewingAndRetriesAfterBackoff(t *testing.T) {
	f := newFixture(t)
	r := f.exchange("erin", "sid-down")
	f.realm.SetDown(true)
	f.clock.Advance(2 * time.Minute) // a recheck is due
	for range 3 {
		f.mustRenew(r.RefreshToken)
	}
	if n := f.up.calls.Load(); n != 2 {
		t.Fatalf("introspections = %d, want 2: the exchange and one failed recheck", n)
	}
	f.clock.Advance(4 * time.Second)
	f.mustRenew(r.RefreshToken)
	if n := f.up.calls.Load(); n != 2 {
		t.Fatalf("introspections 4s after a failed recheck = %d, want 2 (backoff 5s)", n)
	}
	f.clock.Advance(2 * time.Second)
	f.mustRenew(r.RefreshToken)
	if n := f.up.calls.Load(); n != 3 {
		t.Fatalf("introspections 6s after a failed recheck = %d, want 3", n)
	}
	_, err := f.exchangeToken(f.token("erin", "sid-new"))
	wantCode(t, "exchange while the provider is down", err, issuer.CodeTemporarilyUnavailable)

	f.realm.SetDown(false)
	_, err = f.exchangeToken(f.token("erin", "sid-back"))
	wantCode(t, "exchange once the provider is back", err, "")
	f.realm.EndSession("sid-down")
	f.clock.Advance(6 * time.Second)
	_, err = f.renew(r.RefreshToken)
	wantCode(t, "the first recheck the provider answers", err, issuer.CodeInvalidGrant)
}

func TestRenew_NeverPastUpstreamExpiry(t *testing.T) {
	f := newFixture(t)
	up := f.realm.AccessToken(kctest.Token{SID: "sid-short", Lifetime: 45 * time.Second, IssuedAt: f.clock.Now()})
	r, err := f.exchangeToken(up)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(20 * time.Second)
	if rn := f.mustRenew(r.RefreshToken); rn.ExpiresIn > 25 {
		t.Errorf("expires_in = %d: the token must end with the upstream token", rn.ExpiresIn)
	}
	f.clock.Advance(30 * time.Second)
	_, err = f.renew(r.RefreshToken)
	wantCode(t, "renewal past the upstream exp", err, issuer.CodeInvalidGrant)
}

func TestRenew_RefusesMalformedAndAnotherClientsToken(t *testing.T) {
	f := newFixture(t)
	r := f.exchange("gus", "sid-g")
	for name, c := range map[string]struct {
		client  issuer.Client
		refresh string
	}{
		"empty":                    {f.bff, ""},
		"not a sealed grant":       {f.bff, "junk"},
		"an access token":          {f.bff, r.AccessToken},
		"tampered":                 {f.bff, r.RefreshToken[:len(r.RefreshToken)-4] + "AAAA"},
		"issued to another client": {f.other, r.RefreshToken},
	} {
		_, err := f.is.Renew(context.Background(), c.client, c.refresh, "")
		wantCode(t, name, err, issuer.CodeInvalidGrant)
	}
	if evs, _ := f.pub.snapshot(); len(evs) != 0 {
		t.Errorf("a refused renewal recorded something: %+v", evs)
	}
}

func TestRenew_ScopeNarrowsNeverWidens(t *testing.T) {
	f := newFixture(t)
	r, err := f.is.Exchange(context.Background(), f.bff, issuer.ExchangeRequest{SubjectToken: f.token("hal", "sid-h"),
		SubjectTokenType: issuer.TokenTypeAccessToken, Scope: "openid email", Audience: []string{"demo-service"}})
	if err != nil || r.Scope != "openid email" {
		t.Fatalf("exchange: %+v, %v", r, err)
	}
	rn, err := f.is.Renew(context.Background(), f.bff, r.RefreshToken, "email")
	if err != nil || rn.Scope != "email" {
		t.Errorf("narrowing renewal: %+v, %v", rn, err)
	}
	_, err = f.is.Renew(context.Background(), f.bff, r.RefreshToken, "profile")
	wantCode(t, "widening renewal", err, issuer.CodeInvalidScope)
}

// TestRenew_RefusedWhenRevocationStateIsUnknown: renewal fails closed when the store cannot
// say whether the session was logged out.
func TestRenew_RefusedWhenRevocationStateIsUnknown(t *testing.T) {
	f := newFixture(t)
	r := f.exchange("ida", "sid-i")
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := f.renew(r.RefreshToken)
	wantCode(t, "renewal with a closed store", err, issuer.CodeTemporarilyUnavailable)
	if _, err := f.store.SessionRevocation(context.Background(), "sid-i"); err == nil || err == store.ErrNotFound {
		t.Errorf("the closed store answered: %v", err)
	}
}
