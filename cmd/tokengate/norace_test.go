//go:build !race

package main

// raceEnabled reports whether the test binary, and so the gateway binary built for the
// subprocess tests, uses the race detector.
const raceEnabled = false
