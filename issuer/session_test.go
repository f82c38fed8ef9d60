package issuer_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
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
