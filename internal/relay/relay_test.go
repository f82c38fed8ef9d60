package relay

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/proctest"
	"github.com/tokengate/tokengate/internal/testwait"
)

func newRelay(t *testing.T, cfg Config) (*Relay, *proctest.SyncBuffer) {
	t.Helper()
	logs := &proctest.SyncBuffer{}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff = 5 * time.Millisecond
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, logs
}

func run(t *testing.T, r *Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestForward_DeliversFormPostToEveryTarget(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]string{}
	recv := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if ct := req.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
				t.Errorf("%s: Content-Type %q", name, ct)
			}
			if req.Method != http.MethodPost {
				t.Errorf("%s: method %s", name, req.Method)
			}
			mu.Lock()
			got[name] = append(got[name], req.PostFormValue("logout_token"))
			mu.Unlock()
		}))
	}
	a, b := recv("a"), recv("b")
	defer a.Close()
	defer b.Close()
	r, logs := newRelay(t, Config{Targets: []string{a.URL + "/bcl", b.URL}})
	run(t, r)
	if !r.Forward("tok-1") || !r.Forward("tok-2") {
		t.Fatal("Forward refused with empty queues")
	}
	testwait.Eventually(t, 5*time.Second, "4 deliveries", func() bool { return r.Stats().Delivered == 4 })
	mu.Lock()
	defer mu.Unlock()
	for _, n := range []string{"a", "b"} {
		if strings.Join(got[n], ",") != "tok-1,tok-2" {
			t.Errorf("%s received %v, want [tok-1 tok-2] in order", n, got[n])
		}
	}
	if strings.Contains(logs.String(), "tok-1") {
		t.Error("a raw logout token reached the logs")
	}
}

func TestForward_RetriesWithBackoffUntilAccepted(t *testing.T) {
	var calls atomic.Int32
	var times []time.Time
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		switch calls.Add(1) {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer srv.Close()
	r, _ := newRelay(t, Config{Targets: []string{srv.URL}, InitialBackoff: 20 * time.Millisecond})
	run(t, r)
	r.Forward("tok")
	testwait.Eventually(t, 5*time.Second, "delivery", func() bool { return r.Stats().Delivered == 1 })
	st := r.Stats()
	if calls.Load() != 3 || st.Retries != 2 || st.Failed != 0 {
		t.Fatalf("calls=%d stats=%+v, want 3 calls, 2 retries, 0 failed", calls.Load(), st)
	}
	mu.Lock()
	defer mu.Unlock()
	if d1, d2 := times[1].Sub(times[0]), times[2].Sub(times[1]); d1 < 20*time.Millisecond || d2 < 40*time.Millisecond {
		t.Errorf("waits %v, %v: want ≥20ms then ≥40ms (doubling backoff)", d1, d2)
	}
}

func TestForward_RetriesWhenReceiverIsDown(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	u := srv.URL
	srv.Close() // nothing listens: connection refused
	r, logs := newRelay(t, Config{Targets: []string{u}, MaxAttempts: 3})
	run(t, r)
	r.Forward("tok")
	testwait.Eventually(t, 5*time.Second, "give up", func() bool { return r.Stats().Failed == 1 })
	if st := r.Stats(); st.Retries != 2 || st.Delivered != 0 {
		t.Fatalf("stats %+v, want 2 retries", st)
	}
	if !strings.Contains(logs.String(), `"event":"logout_relay_failed"`) {
		t.Errorf("no failure logged: %s", logs.String())
	}
}

func TestForward_ClientErrorIsFinal(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer srv.Close()
	r, _ := newRelay(t, Config{Targets: []string{srv.URL}})
	run(t, r)
	r.Forward("tok")
	testwait.Eventually(t, 5*time.Second, "failure", func() bool { return r.Stats().Failed == 1 })
	if calls.Load() != 1 || r.Stats().Retries != 0 {
		t.Fatalf("calls=%d stats=%+v: a 400 must not be retried", calls.Load(), r.Stats())
	}
}

func TestForward_FullQueueDropsCountsAndLogs(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		<-release
	}))
	defer srv.Close()
	defer close(release)
	r, logs := newRelay(t, Config{Targets: []string{srv.URL}, QueueSize: 2})
	run(t, r)
	r.Forward("first") // taken by the worker, which then blocks in the receiver
	testwait.Eventually(t, 5*time.Second, "worker busy", func() bool { return calls.Load() == 1 })
	if !r.Forward("q1") || !r.Forward("q2") {
		t.Fatal("queue of 2 refused its first two tokens")
	}
	if r.Forward("q3") || r.Forward("q4") {
		t.Fatal("full queue accepted a token")
	}
	if st := r.Stats(); st.Dropped != 2 {
		t.Fatalf("dropped %d, want 2", st.Dropped)
	}
	if n := strings.Count(logs.String(), `"event":"logout_relay_dropped"`); n != 2 {
		t.Errorf("%d drop lines logged, want 2", n)
	}
}

func TestForward_SlowTargetDoesNotDelayOthers(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer slow.Close()
	defer close(release)
	var fastCalls atomic.Int32
	fast := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { fastCalls.Add(1) }))
	defer fast.Close()
	r, _ := newRelay(t, Config{Targets: []string{slow.URL, fast.URL}})
	run(t, r)
	for range 3 {
		r.Forward("tok")
	}
	testwait.Eventually(t, 5*time.Second, "fast target served", func() bool { return fastCalls.Load() == 3 })
}

func TestRun_StopsOnCancelDuringBackoff(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	r, _ := newRelay(t, Config{Targets: []string{srv.URL}, InitialBackoff: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	r.Forward("tok")
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel while backing off")
	}
}

func TestNew_RefusesBadTargets(t *testing.T) {
	for _, targets := range [][]string{nil, {"ftp://x/y"}, {"/relative"}, {"http://"}} {
		if _, err := New(Config{Targets: targets}); err == nil {
			t.Errorf("New(%q) accepted", targets)
		}
	}
}
