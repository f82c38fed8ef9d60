package app

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	etcdstore "github.com/tokengate/tokengate/internal/store/etcd"
	"github.com/tokengate/tokengate/internal/store/etcd/etcdtest"
	"github.com/tokengate/tokengate/internal/testwait"
)

// TestWhileLeader_OnePollerPerDeployment: replicas sharing etcd run the Shared Signals receiver
// on the elected leader only; when it stops, another replica takes over.
func TestWhileLeader_OnePollerPerDeployment(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var (
		running, maxRunning atomic.Int32
		mu                  sync.Mutex
		ran                 = map[int]bool{}
	)
	replica := func(i int) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
		defer ocancel()
		es, err := etcdstore.Open(octx, etcdstore.Config{Endpoints: c.Endpoints(), Prefix: "/signals-test/",
			ElectionTTL: 2 * time.Second, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			whileLeader(ctx, es, signalsElection, func(ctx context.Context) {
				n := running.Add(1)
				for m := maxRunning.Load(); n > m && !maxRunning.CompareAndSwap(m, n); m = maxRunning.Load() {
				}
				mu.Lock()
				ran[i] = true
				mu.Unlock()
				<-ctx.Done()
				running.Add(-1)
			}, quiet)
		}()
		return func() { cancel(); <-done; _ = es.Close() }
	}
	stops := []func(){replica(0), replica(1), replica(2)}
	wait := func(what string, cond func() bool) { t.Helper(); testwait.Eventually(t, 20*time.Second, what, cond) }
	wait("one replica polls", func() bool { return running.Load() == 1 })
	time.Sleep(500 * time.Millisecond) // no second poller appears
	mu.Lock()
	var leader int
	for i := range ran {
		leader = i
	}
	mu.Unlock()
	stops[leader]()
	stops[leader] = func() {}
	wait("another replica takes over", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ran) == 2 && running.Load() == 1
	})
	for _, stop := range stops {
		stop()
	}
	if m := maxRunning.Load(); m != 1 {
		t.Errorf("up to %d replicas polled at once, want 1", m)
	}
}
