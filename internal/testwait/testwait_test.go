package testwait

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestPoll_ReturnsOnceFSucceeds(t *testing.T) {
	n := 0
	err := Poll(context.Background(), time.Second, time.Millisecond, func() error {
		if n++; n < 3 {
			return fmt.Errorf("try %d", n)
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("err %v after %d calls, want nil after 3", err, n)
	}
}

func TestPoll_ReturnsTheLastErrorAfterTheBound(t *testing.T) {
	n := 0
	err := Poll(context.Background(), 20*time.Millisecond, time.Millisecond, func() error { n++; return fmt.Errorf("try %d", n) })
	if err == nil || err.Error() != fmt.Sprintf("try %d", n) {
		t.Fatalf("err %v, want the last of %d tries", err, n)
	}
}

func TestPoll_StopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	want := errors.New("never")
	start := time.Now()
	if err := Poll(ctx, time.Minute, time.Second, func() error { return want }); err != want {
		t.Fatalf("err %v, want %v", err, want)
	}
	if time.Since(start) > 500*time.Millisecond {
		t.Fatal("Poll waited past a cancelled context")
	}
}

type fakeT struct{ failed string }

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
}

func TestEventually_FailsWithWhatAfterTheBound(t *testing.T) {
	f := &fakeT{}
	Eventually(f, 10*time.Millisecond, "the sky falls", func() bool { return false })
	if f.failed != "the sky falls: not within 10ms" {
		t.Fatalf("failed with %q", f.failed)
	}
	f = &fakeT{}
	n := 0
	Eventually(f, time.Second, "third time", func() bool { n++; return n == 3 })
	if f.failed != "" || n != 3 {
		t.Fatalf("failed with %q after %d calls", f.failed, n)
	}
}
