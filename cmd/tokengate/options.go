//go:build !chaosclock

package main

import (
	"log/slog"

	"github.com/tokengate/tokengate/cmd/internal/app"
)

// testOptions adds nothing to the assembly in a release build. The chaos suite's build
// (-tags chaosclock, clock_chaos.go) adds a clock it can step; this file keeps that code, and
// the environment variable it reads, out of every other build.
func testOptions(*slog.Logger) []app.Option { return nil }
