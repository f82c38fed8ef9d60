package issuer_test

import (
	"context"
	"errors"
	"testing"

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
