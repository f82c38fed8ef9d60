package issuer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/issuer"
)

// TestRevoke_EndsTheSession: RFC 7009 revocation of a refresh token records its session as
// logged out; what is not revocable is refused or ignored without changing state.
func TestRevoke_EndsTheSession(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.exchange("frank", "sid-rev")
	cases := []struct {
		name   string
		client issuer.Client
		token  string
		hint   string
		code   string
	}{
		{"another client's token is refused", f.other, r.RefreshToken, "", issuer.CodeUnauthorizedClient},
		{"an access token is not revocable", f.bff, r.AccessToken, "", issuer.CodeUnsupportedTokenType},
		{"a token hinted as an access token is not revocable", f.bff, "opaque", "access_token", issuer.CodeUnsupportedTokenType},
		{"an unknown token is fine (RFC 7009 §2.2)", f.bff, "not-a-token", "", ""},
		{"no token", f.bff, "", "", issuer.CodeInvalidRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantCode(t, "revoke", f.is.Revoke(ctx, c.client, c.token, c.hint), c.code)
			if _, err := f.store.SessionRevocation(ctx, "sid-rev"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("state changed: %v", err)
			}
		})
	}
	if evs, _ := f.pub.snapshot(); len(evs) != 0 {
		t.Fatalf("published without a revocation: %+v", evs)
	}
	wantCode(t, "revoke", f.is.Revoke(ctx, f.bff, r.RefreshToken, "refresh_token"), "")
	_, err := f.renew(r.RefreshToken)
	wantCode(t, "renewal after revoke", err, issuer.CodeInvalidGrant)
	evs, tokens := f.pub.snapshot()
	if len(evs) != 1 || evs[0].Revocation.SID != "sid-rev" || evs[0].Revocation.Sub != "frank" ||
		evs[0].Revocation.Reason != "revoke" || tokens[0] != "" {
		t.Errorf("published %+v %q, want the one revoke event", evs, tokens)
	}
}

// TestRevokeSessionAndSubject_AdminRevocations: an operator's session revocation ends that
// session only; a subject revocation ends every session of the subject issued until then. Both
// are recorded with their event; an empty id is refused and records nothing.
func TestRevokeSessionAndSubject_AdminRevocations(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a1, a2 := f.exchange("ann", "sid-a1"), f.exchange("ann", "sid-a2")
	b := f.exchange("ben", "sid-b")

	_, err := f.is.RevokeSession(ctx, "", "admin:ops")
	wantCode(t, "RevokeSession without sid", err, issuer.CodeInvalidRequest)
	_, err = f.is.RevokeSubject(ctx, "", "admin:ops")
	wantCode(t, "RevokeSubject without sub", err, issuer.CodeInvalidRequest)
	if evs, _ := f.pub.snapshot(); len(evs) != 0 {
		t.Fatalf("a refused revocation was recorded: %+v", evs)
	}

	if _, err := f.is.RevokeSession(ctx, "sid-a1", "admin:ops"); err != nil {
		t.Fatal(err)
	}
	_, err = f.renew(a1.RefreshToken)
	wantCode(t, "the revoked session", err, issuer.CodeInvalidGrant)
	_, err = f.renew(a2.RefreshToken)
	wantCode(t, "another session of the subject", err, "")

	f.clock.Advance(1) // the subject revocation is after both logins
	if _, err := f.is.RevokeSubject(ctx, "ann", "admin:ops"); err != nil {
		t.Fatal(err)
	}
	_, err = f.renew(a2.RefreshToken)
	wantCode(t, "a session of the revoked subject", err, issuer.CodeInvalidGrant)
	_, err = f.renew(b.RefreshToken)
	wantCode(t, "another subject", err, "")

	evs, _ := f.pub.snapshot()
	if len(evs) != 2 || evs[0].Revocation.SID != "sid-a1" || evs[1].Revocation.Sub != "ann" || evs[1].Revocation.SID != "" {
		t.Errorf("published %+v, want the session then the subject revocation", evs)
	}
}

// TestRevoke_WithoutSIDEndsOnlyThatGrant: RFC 7009 revocation of a refresh token whose grant
// has no sid (a Keycloak token without a session id) ends that grant — its renewals and a
// re-exchange of the same Keycloak token — and nothing more: no subject-wide revocation is
// recorded or published, so the user's other sessions and grants, at this client and every
// other, live on (as the recheck of such a token does).
func TestRevoke_WithoutSIDEndsOnlyThatGrant(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	noSID := func(jti string) string {
		now := f.clock.Now()
		return f.realm.Sign(map[string]any{"iss": f.realm.Issuer(), "sub": "uma", "typ": "Bearer", "azp": "bff",
			"aud": []string{"account", kctest.ClientID}, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": jti,
			"scope": "openid", "auth_time": now.Unix()})
	}
	revoked := noSID("at-nosid-1")
	r, err := f.exchangeToken(revoked)
	if err != nil {
		t.Fatal(err)
	}
	sibling, err := f.exchangeToken(noSID("at-nosid-2"))
	if err != nil {
		t.Fatal(err)
	}
	session := f.exchange("uma", "sid-u1")
	atOther, err := f.is.Exchange(ctx, f.other, issuer.ExchangeRequest{SubjectToken: f.realm.AccessToken(kctest.Token{
		Subject: "uma", SID: "sid-u2", AZP: "other", IssuedAt: f.clock.Now()}), SubjectTokenType: issuer.TokenTypeAccessToken})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Second) // every grant above began before the revocation

	wantCode(t, "revoke", f.is.Revoke(ctx, f.bff, r.RefreshToken, "refresh_token"), "")

	_, err = f.renew(r.RefreshToken)
	wantCode(t, "renewal of the revoked grant", err, issuer.CodeInvalidGrant)
	_, err = f.exchangeToken(revoked)
	wantCode(t, "the revoked grant's Keycloak token exchanged again", err, issuer.CodeInvalidRequest)
	if rev, err := f.store.SubjectRevocation(ctx, "uma"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking one grant without sid recorded a subject-wide revocation: %+v %v", rev, err)
	}
	evs, _ := f.pub.snapshot()
	for _, e := range evs {
		if e.Revocation.SID == "" {
			t.Fatalf("published a subject-wide revocation: %+v", e)
		}
	}
	f.mustRenew(sibling.RefreshToken)
	f.mustRenew(session.RefreshToken)
	if _, err := f.is.Renew(ctx, f.other, atOther.RefreshToken, ""); err != nil {
		t.Fatalf("the user's session at another client: %v", err)
	}
	if _, err := f.exchangeToken(noSID("at-nosid-3")); err != nil {
		t.Fatalf("a new Keycloak token of the user: %v", err)
	}
	// The grant stays ended while its Keycloak token can be presented: after the store's GC too.
	f.clock.Advance(50 * time.Minute)
	if _, err := f.store.GC(ctx, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = f.exchangeToken(revoked)
	wantCode(t, "re-exchange 50 min later, after the store's GC", err, issuer.CodeInvalidRequest)
}
