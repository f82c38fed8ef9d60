package signals_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store/storetest"
	"github.com/tokengate/tokengate/internal/testwait"
)

// TestReceiver_FailedRecordClaimsNothing: the jti of a SET is claimed only with its logout, in
// the issuer's one store write. While recording fails the store holds no claim of it (before,
// the receiver claimed the jti itself first, so a crash between the two writes left a claim
// without its logout); once the store recovers the SET, delivered again, is recorded.
func TestReceiver_FailedRecordClaimsNothing(t *testing.T) {
	tx := newTransmitter(t)
	f := start(t, tx, nil)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	f.rec.fail.Store(1 << 20)
	jti := tx.Enqueue(tx.SET(tx.Stream(), "caep/event-type/session-revoked", map[string]any{},
		sessionSubject(tx.issuer(), "bob", "sid-2")))
	testwait.Eventually(t, wait, "recording failed twice", func() bool { return f.rec.fail.Load() < 1<<20-2 })
	if st, err := f.st.Stats(context.Background()); err != nil || st.JTIs != 0 || st.Sessions != 0 {
		t.Fatalf("after failed records the store holds %+v, %v; want no claim and no revocation", st, err)
	}
	if acked, _, _ := tx.Outcome(jti); acked {
		t.Fatal("a SET whose logout was not recorded was acknowledged")
	}
	f.rec.fail.Store(0)
	testwait.Eventually(t, wait, "the SET is acknowledged after the store recovered", func() bool { acked, _, _ := tx.Outcome(jti); return acked })
	st, err := f.st.Stats(context.Background())
	if err != nil || st.JTIs != 1 || st.Sessions != 1 {
		t.Fatalf("after the record the store holds %+v, %v; want the claim and the revocation", st, err)
	}
	if fresh, err := storetest.ClaimJTI(context.Background(), f.st, "ssf:"+jti, time.Now().Add(time.Hour)); err != nil || fresh {
		t.Fatalf("ClaimJTI of the recorded SET's jti = %v, %v; want claimed", fresh, err)
	}
}
