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

// TestOwnRevocations_LastAsLongAsTheUpstreamSession: a session tokengate revoked itself (admin,
// RFC 7009) lives on at Keycloak, which keeps issuing access tokens for it; the revocation must
// outlive every upstream access token (max_token_lifetime, 1h here) — it is kept for the
// session's longest life (MaxSessionLifetime, 10h by default) and survives the store's GC.
func TestOwnRevocations_LastAsLongAsTheUpstreamSession(t *testing.T) {
	for _, tc := range []struct {
		name   string
		revoke func(f *fixture, refresh string)
	}{
		{"admin session revocation", func(f *fixture, _ string) {
			if _, err := f.is.RevokeSession(context.Background(), "sid-own", "admin:ops"); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"RFC 7009 revoke", func(f *fixture, refresh string) {
			if err := f.is.Revoke(context.Background(), f.bff, refresh, "refresh_token"); err != nil {
				f.t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			r := f.exchange("olga", "sid-own")
			tc.revoke(f, r.RefreshToken)
			f.clock.Advance(2 * time.Hour) // past every upstream token of the time of the revocation
			if _, err := f.store.GC(context.Background(), f.clock.Now()); err != nil {
				t.Fatal(err)
			}
			_, err := f.exchangeToken(f.token("olga", "sid-own")) // Keycloak's next token of the session
			wantCode(t, "a new upstream token of the revoked session, 2h later", err, issuer.CodeInvalidRequest)
			f.clock.Advance(9 * time.Hour)
			if _, err := f.store.GC(context.Background(), f.clock.Now()); err != nil {
				t.Fatal(err)
			}
			_, err = f.exchangeToken(f.token("olga", "sid-own"))
			wantCode(t, "past the longest session (10h): the record may go", err, "")
		})
	}
}

// TestStreamSubjectRevocations_LastAsLongAsTheUpstreamSession: a user-wide revocation from
// Keycloak's Shared Signals stream (credential-change, credential-compromise, account-disabled)
// ends sessions Keycloak keeps alive (a password changed without signing out other devices, an
// admin's password reset): Keycloak goes on issuing access tokens for them, so the record must
// outlive the store's GC for the session's longest life (MaxSessionLifetime, 10h by default), as
// an operator's revocation does — not only the 1h of upstream tokens a logout Keycloak knows of
// needs. A session logout from the stream (Keycloak ended the session) keeps that shorter life.
func TestStreamSubjectRevocations_LastAsLongAsTheUpstreamSession(t *testing.T) {
	for _, reason := range []string{"ssf:credential-change", "ssf:credential-compromise", "ssf:account-disabled"} {
		t.Run(reason, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			login := f.clock.Now()
			f.exchange("olga", "sid-pw")
			f.clock.Advance(time.Minute)
			if ok, err := f.is.RecordUpstreamLogout(ctx, store.Revocation{Sub: "olga", At: f.clock.Now(), Reason: reason}); err != nil || !ok {
				t.Fatalf("RecordUpstreamLogout = %v, %v", ok, err)
			}
			if ok, err := f.is.RecordUpstreamLogout(ctx, store.Revocation{SID: "sid-gone", Sub: "olga", At: f.clock.Now(), Reason: "ssf:session-revoked"}); err != nil || !ok {
				t.Fatalf("RecordUpstreamLogout(session) = %v, %v", ok, err)
			}
			// Keycloak's next token of the session the user meant to end: refreshed now, same auth_time.
			next := func() string {
				return f.realm.AccessToken(kctest.Token{Subject: "olga", SID: "sid-pw", IssuedAt: f.clock.Now(), AuthTime: login})
			}
			f.clock.Advance(77 * time.Minute) // past every upstream token of the time of the revocation
			if _, err := f.store.GC(ctx, f.clock.Now()); err != nil {
				t.Fatal(err)
			}
			_, err := f.exchangeToken(next())
			wantCode(t, "a new upstream token of a session the stream ended user-wide, 78 min later", err, issuer.CodeInvalidRequest)
			if _, err := f.store.SessionRevocation(ctx, "sid-gone"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a session logout Keycloak knows of outlived its upstream tokens: %v", err)
			}
			f.clock.Advance(9 * time.Hour)
			if _, err := f.store.GC(ctx, f.clock.Now()); err != nil {
				t.Fatal(err)
			}
			_, err = f.exchangeToken(next())
			wantCode(t, "past the longest session (10h): the record may go", err, "")
		})
	}
}

// TestSubjectRevocation_ComparesWithTheSessionStart: a subject revocation ends the sessions that
// started (auth_time) before it, including their access tokens refreshed after it; a login
// after it is not refused.
func TestSubjectRevocation_ComparesWithTheSessionStart(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	login := f.clock.Now()
	first := f.realm.AccessToken(kctest.Token{Subject: "pia", SID: "sid-p", IssuedAt: login})
	if _, err := f.exchangeToken(first); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	if _, err := f.is.RevokeSubject(ctx, "pia", "admin:ops"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5 * time.Minute)
	refreshed := f.realm.AccessToken(kctest.Token{Subject: "pia", SID: "sid-p", IssuedAt: f.clock.Now(), AuthTime: login})
	_, err := f.exchangeToken(refreshed)
	wantCode(t, "a token of the same session refreshed after the revocation", err, issuer.CodeInvalidRequest)
	later := f.realm.AccessToken(kctest.Token{Subject: "pia", SID: "sid-p2", IssuedAt: f.clock.Now()})
	_, err = f.exchangeToken(later)
	wantCode(t, "a login after the revocation", err, "")
}

// TestRecheck_TokenWithoutSIDRevokesNoMoreThanItsGrant: the provider calls a token without sid
// inactive: the grant is refused, but nothing subject-wide is recorded or published, so the
// user's other sessions live on.
func TestRecheck_TokenWithoutSIDRevokesNoMoreThanItsGrant(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := f.clock.Now()
	noSID := f.realm.Sign(map[string]any{"iss": f.realm.Issuer(), "sub": "uma", "typ": "Bearer", "azp": "bff",
		"aud": []string{"account", kctest.ClientID}, "iat": now.Unix(), "exp": now.Add(3 * time.Hour).Unix(), "jti": "at-nosid",
		"scope": "openid", "auth_time": now.Unix()})
	r, err := f.exchangeToken(noSID)
	if err != nil {
		t.Fatal(err)
	}
	other := f.exchange("uma", "sid-u2")
	f.clock.Advance(61 * time.Second)
	f.realm.SetClockAhead(4 * time.Hour) // the provider now calls both tokens inactive
	_, err = f.renew(r.RefreshToken)
	wantCode(t, "renewal of the sid-less grant the provider calls inactive", err, issuer.CodeInvalidGrant)
	f.realm.SetClockAhead(0)
	if rev, err := f.store.SubjectRevocation(ctx, "uma"); err == nil {
		t.Fatalf("a recheck of a token without sid recorded a subject-wide revocation: %+v", rev)
	}
	if evs, _ := f.pub.snapshot(); len(evs) != 0 {
		t.Fatalf("published %+v, want nothing", evs)
	}
	_, err = f.renew(r.RefreshToken)
	wantCode(t, "the refused grant stays refused", err, issuer.CodeInvalidGrant)
	f.mustRenew(other.RefreshToken)
}

// TestRecheck_InactiveWithinSkewOfExpiryIsExpiry: a provider whose clock runs ahead answers
// inactive in a token's last seconds: the renewal is refused as expired, and no logout is
// recorded, so the session's next token exchanges.
func TestRecheck_InactiveWithinSkewOfExpiryIsExpiry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok := f.realm.AccessToken(kctest.Token{Subject: "vic", SID: "sid-v", IssuedAt: f.clock.Now(), Lifetime: 2 * time.Minute})
	r, err := f.exchangeToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(115 * time.Second) // 5s before exp by our clock
	f.realm.SetClockAhead(time.Hour)   // the provider says inactive
	_, err = f.renew(r.RefreshToken)
	wantCode(t, "renewal in the token's last seconds, provider says inactive", err, issuer.CodeInvalidGrant)
	f.realm.SetClockAhead(0)
	if rev, err := f.store.SessionRevocation(ctx, "sid-v"); err == nil {
		t.Fatalf("expiry recorded as a logout: %+v", rev)
	}
	if _, err := f.exchangeToken(f.token("vic", "sid-v")); err != nil {
		t.Fatalf("the session's next token: %v", err)
	}
}

// TestExchange_CachedAnswerRecheckedAfterRecheckAfter: re-exchanging the same upstream token
// after RecheckAfter asks the provider again; a session ended upstream is refused (and its
// logout recorded), without waiting for the token's exp.
func TestExchange_CachedAnswerRecheckedAfterRecheckAfter(t *testing.T) {
	f := newFixture(t)
	tok := f.token("wes", "sid-w")
	if _, err := f.exchangeToken(tok); err != nil {
		t.Fatal(err)
	}
	f.realm.EndSession("sid-w")
	_, err := f.exchangeToken(tok)
	wantCode(t, "within RecheckAfter: the cached answer", err, "")
	f.clock.Advance(61 * time.Second)
	n := f.up.calls.Load()
	_, err = f.exchangeToken(tok)
	wantCode(t, "after RecheckAfter", err, issuer.CodeInvalidRequest)
	if f.up.calls.Load() != n+1 {
		t.Errorf("introspections: %d, want one more", f.up.calls.Load()-n)
	}
	if _, err := f.store.SessionRevocation(context.Background(), "sid-w"); err != nil {
		t.Errorf("the session's end was not recorded: %v", err)
	}
}
