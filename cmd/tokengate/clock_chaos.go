//go:build chaosclock

package main

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/tokengate/cmd/internal/app"
)

// envClockFile names a file holding a duration (time.ParseDuration: "30s", "-30s", "0s") that
// the gateway's clock is offset by. Only a binary built with -tags chaosclock reads it: the
// chaos suite (integration/chaos, scenario 6) steps one replica's clock with it while that
// replica runs. A release build ignores it (options.go).
const envClockFile = "TOKENGATE_CHAOS_CLOCK_FILE"

// clockReread is how often the offset file is read again.
const clockReread = 50 * time.Millisecond

// testOptions gives the assembly a clock offset by the duration in the file envClockFile
// names, when it is set.
func testOptions(log *slog.Logger) []app.Option {
	path := os.Getenv(envClockFile)
	if path == "" {
		return nil
	}
	log.Warn("chaosclock build: the gateway's clock is offset by the duration in a file; never run this build in production",
		"event", "chaos_clock", "file", path)
	c := &fileClock{path: path}
	return []app.Option{app.WithClock(c.Now)}
}

// fileClock is time.Now plus the offset last read from path (read again every clockReread; an
// unreadable or malformed file keeps the last offset). The offset moves the wall and the
// monotonic readings alike, so a duration the issuer measures across a step sees the step,
// where a real step of the wall clock would leave Go's monotonic readings alone.
type fileClock struct {
	path string

	mu   sync.Mutex
	off  time.Duration
	read time.Time
}

// Now returns the stepped time.
func (c *fileClock) Now() time.Time {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.read.IsZero() || now.Sub(c.read) >= clockReread {
		c.read = now
		if b, err := os.ReadFile(c.path); err == nil {
			if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
				c.off = d
			}
		}
	}
	return now.Add(c.off)
}
