package issuer_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/issuer"
)

// TestSubjectLogout_ReplicaClockBehindStillRefusesEarlierSessions: this replica's clock runs
// 30s behind Keycloak's (within Skew). A subject-wide logout Keycloak issued at its time T —
// by back-channel (the token's iat) or on its Shared Signals stream (the event's time) — must
// refuse every session that began before T by Keycloak's clock, one that began 10s before it
// included. Recording the logout at the replica's own (earlier) clock instead left that
// session renewable: a renewal of a logged-out session (chaos scenario 6).
func TestSubjectLogout_ReplicaClockBehindStillRefusesEarlierSessions(t *testing.T) {
	for _, channel := range []string{"backchannel", "ssf"} {
		t.Run(channel, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			real := time.Now()
			f.clock.Advance(-30 * time.Second)
			began := real.Add(-10 * time.Second)
			r, err := f.exchangeToken(f.realm.AccessToken(kctest.Token{Subject: "sam", SID: "sid-early",
				IssuedAt: began, AuthTime: began}))
			if err != nil {
				t.Fatal(err)
			}
			switch channel {
			case "backchannel":
				if _, err := f.is.RecordLogout(ctx, f.realm.LogoutToken("sam", "")); err != nil {
					t.Fatal(err)
				}
			case "ssf":
				if ok, err := f.is.RecordUpstreamLogout(ctx, store.Revocation{Sub: "sam", At: real, Reason: "ssf:credential-change"}); err != nil || !ok {
					t.Fatalf("RecordUpstreamLogout = %v, %v", ok, err)
				}
			}
			_, err = f.renew(r.RefreshToken)
			wantCode(t, "renewal of a session begun 10s before the subject's logout (by Keycloak's clock)", err, issuer.CodeInvalidGrant)
			later := real.Add(2 * time.Second)
			_, err = f.exchangeToken(f.realm.AccessToken(kctest.Token{Subject: "sam", SID: "sid-later", IssuedAt: later, AuthTime: later}))
			wantCode(t, "a login after the logout", err, "")
		})
	}
}

// TestUpstreamLogout_FarFutureTimeIsNotTrusted: a subject-wide logout whose time lies beyond
// Skew in the future is recorded at the replica's own clock, so it cannot refuse logins
// that begin after it.
func TestUpstreamLogout_FarFutureTimeIsNotTrusted(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if ok, err := f.is.RecordUpstreamLogout(ctx, store.Revocation{Sub: "sue", At: f.clock.Now().Add(time.Hour), Reason: "ssf:credential-change"}); err != nil || !ok {
		t.Fatalf("RecordUpstreamLogout = %v, %v", ok, err)
	}
	rev, err := f.store.SubjectRevocation(ctx, "sue")
	if err != nil {
		t.Fatal(err)
	}
	if rev.At.After(f.clock.Now()) {
		t.Errorf("recorded at %s, after the replica's clock %s", rev.At, f.clock.Now())
	}
}
