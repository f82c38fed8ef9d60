package issuer_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/store/storetest"
)

// TestRecordUpstreamSET_ClaimsTheJTIWithTheRecord: a logout carried by a Shared Signals SET is
// recorded and its jti claimed in one store write; the same jti again, even carrying another
// logout, records and publishes nothing; a logout already on record still claims the jti.
func TestRecordUpstreamSET_ClaimsTheJTIWithTheRecord(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := f.clock.Now()
	claim := func(jti string) store.Claim { return store.Claim{JTI: jti, Expires: now.Add(time.Hour)} }

	ok, err := f.is.RecordUpstreamSET(ctx, claim("ssf:set-1"), store.Revocation{SID: "sid-1", Sub: "ann", At: now, Reason: "ssf:session-revoked"})
	if err != nil || !ok {
		t.Fatalf("RecordUpstreamSET = %v, %v; want recorded", ok, err)
	}
	if fresh, err := storetest.ClaimJTI(ctx, f.store, "ssf:set-1", now.Add(time.Hour)); err != nil || fresh {
		t.Fatalf("the SET's jti is not claimed by the record: ClaimJTI = %v, %v", fresh, err)
	}
	// Replayed: the jti is claimed, so the logout it carries now is not recorded.
	ok, err = f.is.RecordUpstreamSET(ctx, claim("ssf:set-1"), store.Revocation{SID: "sid-2", Sub: "ann", At: now, Reason: "ssf:session-revoked"})
	if err != nil || ok {
		t.Fatalf("replayed RecordUpstreamSET = %v, %v; want not recorded", ok, err)
	}
	if _, err := f.store.SessionRevocation(ctx, "sid-2"); err == nil {
		t.Fatal("a replayed SET's logout was recorded")
	}
	// The other channel was first: nothing recorded, the jti claimed all the same.
	if _, err := f.is.RevokeSession(ctx, "sid-3", "admin:ops"); err != nil {
		t.Fatal(err)
	}
	ok, err = f.is.RecordUpstreamSET(ctx, claim("ssf:set-3"), store.Revocation{SID: "sid-3", Sub: "bo", At: now, Reason: "ssf:session-revoked"})
	if err != nil || ok {
		t.Fatalf("covered RecordUpstreamSET = %v, %v; want not recorded", ok, err)
	}
	if fresh, err := storetest.ClaimJTI(ctx, f.store, "ssf:set-3", now.Add(time.Hour)); err != nil || fresh {
		t.Fatalf("a covered SET's jti is not claimed: ClaimJTI = %v, %v", fresh, err)
	}
	if evs, _ := f.pub.snapshot(); len(evs) != 2 {
		t.Fatalf("published %d events, want 2 (the SET's logout and the admin's)", len(evs))
	}
}
