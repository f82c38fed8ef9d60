//go:build !race

package ssf

const raceEnabled = false
