package signals

import (
	"context"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store"
)

type nopState struct{}

func (nopState) ReceiverStream(context.Context) ([]byte, error)  { return nil, nil }
func (nopState) PutReceiverStream(context.Context, []byte) error { return nil }

type nopRecorder struct{}

func (nopRecorder) RecordUpstreamSET(context.Context, store.Claim, store.Revocation) (bool, error) {
	return false, nil
}

// The receiver's reconnect backoff doubles from 1 s and stops at 15 s: after a long Keycloak
// outage it polls again within 15 s of Keycloak's return (it was a minute: 28–51 s measured).
func TestNew_ReconnectBackoffDoublesTo15s(t *testing.T) {
	r, err := New(Config{Issuer: "https://kc.example/realms/r", ClientID: "c", ClientSecret: "s"}, nopState{}, nopRecorder{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // sleep returns at once and still grows the pause
	var got []time.Duration
	for range 7 {
		r.backoff.sleep(ctx)
		got = append(got, r.backoff.cur)
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second, 15 * time.Second, 15 * time.Second, 15 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pauses after each failure: %v, want %v", got, want)
		}
	}
	r.backoff.reset()
	r.backoff.sleep(ctx)
	if r.backoff.cur != 2*time.Second {
		t.Fatalf("after reset the pause restarts at 1 s (next 2 s), got next %v", r.backoff.cur)
	}
}
