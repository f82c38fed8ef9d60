// Package testwait is the tests' one way to wait for something another goroutine or process
// does: poll a condition until it holds or a bound passes. It imports only the standard
// library, so that any test in the module may use it (verifier's tests, which may import
// nothing of tokengate, keep their own).
package testwait

import (
	"context"
	"errors"
	"time"
)

// Interval is how often Eventually asks its condition.
const Interval = 5 * time.Millisecond

// Poll calls f, then again every interval, until it returns nil, d has passed or ctx ends;
// it returns f's last error (nil once f succeeded).
func Poll(ctx context.Context, d, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
}

// TB is the part of testing.TB that Eventually uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

var errNotYet = errors.New("not yet")

// Eventually polls cond every Interval until it holds and returns how long that took; when d
// passes first it fails the test with "what: not within d". Like t.Fatalf, it must be called
// from the test's goroutine.
func Eventually(t TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	err := Poll(context.Background(), d, Interval, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
	if err != nil {
		t.Fatalf("%s: not within %s", what, d)
	}
	return time.Since(start)
}
