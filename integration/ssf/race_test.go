//go:build race

package ssf

// raceEnabled: the test process runs under the race detector, which makes every probe of a
// service many times dearer; the probes are spaced accordingly.
const raceEnabled = true
