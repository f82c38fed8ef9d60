package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/relay"
)

// TestLogoutRelay_ForwardsOnlyVerifiedRecordedLogouts: the issuer's OnLogoutToken hook sees a
// logout token only once it is verified and durably recorded; the relay then POSTs it to the
// configured receiver. Invalid and replayed tokens are never forwarded.
func TestLogoutRelay_ForwardsOnlyVerifiedRecordedLogouts(t *testing.T) {
	s := newStack(t)
	var mu sync.Mutex
	var got []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.PostFormValue("logout_token"))
		mu.Unlock()
	}))
	defer recv.Close()
	rl, err := relay.New(relay.Config{Targets: []string{recv.URL + "/backchannel-logout"}, InitialBackoff: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rl.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	s.issuer.OnLogoutToken = func(raw string) {
		// Recorded before the hook runs.
		if _, err := s.store.SessionRevocation(context.Background(), "sid-relay"); err != nil {
			t.Errorf("hook called before the logout was recorded: %v", err)
		}
		rl.Forward(raw)
	}

	lt := s.realm.LogoutToken("rita", "sid-relay")
	if r := s.logout(lt); r.Status != http.StatusOK {
		t.Fatalf("logout: %d %s", r.Status, r.Raw)
	}
	if r := s.logout(lt); r.Status != http.StatusBadRequest { // replay
		t.Fatalf("replayed logout: %d %s", r.Status, r.Raw)
	}
	if r := s.logout(lt[:len(lt)-4] + "AAAA"); r.Status != http.StatusBadRequest { // bad signature
		t.Fatalf("tampered logout: %d %s", r.Status, r.Raw)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rl.Stats().Delivered < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // room for a wrong second delivery
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != lt {
		t.Fatalf("receiver got %d tokens, want exactly the one verified logout token", len(got))
	}
}
