package config

import (
	"strings"
	"testing"
)

func TestCaches_DefaultsAndPartialBlock(t *testing.T) {
	c, err := parseWith(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.Caches != DefaultCaches() {
		t.Errorf("caches = %+v, want the defaults %+v", c.Limits.Caches, DefaultCaches())
	}
	c, err = parseWith(t, "limits:\n  caches: {introspection: 5000}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultCaches()
	want.Introspection = 5000
	if c.Limits.Caches != want {
		t.Errorf("caches = %+v, want %+v", c.Limits.Caches, want)
	}
	if *c.Limits.Logout != *DefaultLimits().Logout {
		t.Errorf("a caches block dropped the rate limits' defaults: %+v", *c.Limits.Logout)
	}
}

// TestCaches_HostileValuesRefused: a bound below 1 or beyond MaxCacheEntries, or not a
// number, is a start-up error naming the key (or, for a value of the wrong type, its line);
// never an unbounded or silently clamped cache.
func TestCaches_HostileValuesRefused(t *testing.T) {
	for _, v := range []string{"-1", "100000001", "9223372036854775807", "1e9", "\"many\"", "[1]"} {
		_, err := parseWith(t, "limits:\n  caches: {recheck_schedule: "+v+"}\n", nil)
		if err == nil || !strings.Contains(err.Error(), "limits.caches.recheck_schedule") && !strings.Contains(err.Error(), "line 14") {
			t.Errorf("recheck_schedule %s: %v, want an error naming the key", v, err)
		}
	}
}
