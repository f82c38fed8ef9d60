//go:build chaosclock

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFileClock_FollowsTheFile: the chaos build's clock reads its offset again while it runs,
// and keeps the last good one when the file is malformed or gone (go test -tags chaosclock).
func TestFileClock_FollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offset")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * clockReread)
	}
	c := &fileClock{path: path}
	near := func(what string, want time.Duration) {
		t.Helper()
		if got := time.Until(c.Now()); (got - want).Abs() > time.Second {
			t.Errorf("%s: clock is %s off, want %s", what, got.Round(time.Millisecond), want)
		}
	}
	near("no file", 0)
	write("30s\n")
	near("+30s", 30*time.Second)
	write("-30s")
	near("-30s", -30*time.Second)
	write("soon")
	near("malformed", -30*time.Second)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * clockReread)
	near("removed", -30*time.Second)
}
