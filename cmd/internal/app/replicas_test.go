package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/cmd/internal/app"
	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/store/etcd/etcdtest"
)

// TestRun_HeldPollWakesWhenAnotherReplicaRecords: two replicas on one etcd; a long poll held on
// replica A answers as soon as replica B records a logout (etcd's EventsChanged reaches A's
// transmitter), not at A's next once-a-second look at the log. Without the notifier the wait
// is spread evenly over that second, so four answers in a row under 400ms would be luck.
func TestRun_HeldPollWakesWhenAnotherReplicaRecords(t *testing.T) {
	cluster := etcdtest.Start(t, 1, etcdtest.Options{})
	realm := kctest.New(t)
	const secret = "orders-stream-secret-0123456789-abcdefgh"
	sum := sha256.Sum256([]byte(secret))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	replica := func() *app.App {
		cfg := config.Config{
			Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Issuer: "http://tokengate.test", DataDir: t.TempDir(),
			Upstream: config.Upstream{Issuer: realm.Issuer(), ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret,
				LogoutAudiences: []string{kctest.LogoutAudience}},
			Store: config.Store{Backend: config.BackendEtcd, Etcd: config.Etcd{Endpoints: cluster.Endpoints(), Prefix: "/wake/"}},
			SSF:   config.SSF{Streams: []config.SSFStream{{ID: "orders", SecretSHA256: hex.EncodeToString(sum[:])}}},
		}
		cfg.SetDefaults()
		a, err := app.New(ctx, cfg, app.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a, b := replica(), replica()
	defer b.Close()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		_ = a.Close()
	}()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()

	var ack []string
	for i := range 4 {
		type answer struct {
			sets map[string]string
			err  error
		}
		got := make(chan answer, 1)
		go func() {
			body, _ := json.Marshal(map[string]any{"ack": ack})
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ssf/poll/orders", strings.NewReader(string(body)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+secret)
			req.Header.Set("Prefer", "wait=10")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				got <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var out struct {
				Sets map[string]string `json:"sets"`
			}
			if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != http.StatusOK {
				got <- answer{err: fmt.Errorf("poll: %d %s", resp.StatusCode, raw)}
				return
			}
			got <- answer{sets: out.Sets}
		}()
		time.Sleep(300 * time.Millisecond) // the poll is held on A
		start := time.Now()
		if _, err := b.Issuer().RevokeSession(ctx, fmt.Sprint("sid-wake-", i), "admin:test"); err != nil {
			t.Fatal(err)
		}
		r := <-got
		took := time.Since(start)
		if r.err != nil {
			t.Fatal(r.err)
		}
		if len(r.sets) != 1 {
			t.Fatalf("round %d: %d SETs, want 1", i, len(r.sets))
		}
		t.Logf("round %d: A's held poll answered %s after B recorded", i, took.Round(time.Millisecond))
		if took > 400*time.Millisecond {
			t.Errorf("round %d: A's held poll answered %s after B recorded; want at once", i, took)
		}
		ack = ack[:0]
		for jti := range r.sets {
			ack = append(ack, jti)
		}
	}
}
