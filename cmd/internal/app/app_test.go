package app_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/cmd/internal/app"
	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/testwait"
)

// TestRun_RelaysOnlyVerifiedRecordedLogouts: with upstream.forward_logout_to, a back-channel
// logout token reaches the relay target once it is verified and durably recorded; invalid and
// replayed tokens are never forwarded.
func TestRun_RelaysOnlyVerifiedRecordedLogouts(t *testing.T) {
	realm := kctest.New(t)
	var (
		a   *app.App
		mu  sync.Mutex
		got []string
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := a.Store().SessionRevocation(r.Context(), "sid-relay"); err != nil {
			t.Errorf("forwarded before the logout was recorded: %v", err)
		}
		mu.Lock()
		got = append(got, r.PostFormValue("logout_token"))
		mu.Unlock()
	}))
	defer recv.Close()
	cfg := config.Config{
		Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Issuer: "http://tokengate.test", DataDir: t.TempDir(),
		Upstream: config.Upstream{Issuer: realm.Issuer(), ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret,
			LogoutAudiences: []string{kctest.LogoutAudience}, ForwardLogoutTo: []string{recv.URL + "/backchannel-logout"}},
	}
	cfg.SetDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var err error
	if a, err = app.New(ctx, cfg, app.WithLogger(slog.New(slog.DiscardHandler))); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	}()
	pub := httptest.NewServer(a.Handler())
	defer pub.Close()
	logout := func(lt string) int {
		resp, err := http.PostForm(pub.URL+"/backchannel-logout", url.Values{"logout_token": {lt}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	lt := realm.LogoutToken("rita", "sid-relay")
	if c := logout(lt); c != http.StatusOK {
		t.Fatalf("logout: %d", c)
	}
	if c := logout(lt); c != http.StatusBadRequest {
		t.Fatalf("replayed logout: %d", c)
	}
	if c := logout(lt[:len(lt)-4] + "AAAA"); c != http.StatusBadRequest {
		t.Fatalf("tampered logout: %d", c)
	}
	_ = testwait.Poll(context.Background(), 5*time.Second, testwait.Interval, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			return errors.New("no delivery yet")
		}
		return nil
	})
	time.Sleep(50 * time.Millisecond) // room for a wrong second delivery
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != lt {
		t.Fatalf("receiver got %d tokens, want exactly the one verified logout token", len(got))
	}
}
