package issuer

import (
	"testing"
	"time"
)

func TestExpiringMap_LookupsIgnoreExpiredWritesSweepBoundEvicts(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := newExpiringMap[string, int](3)
	c.put("a", 1, t0.Add(10*time.Second), t0)
	c.put("b", 2, t0.Add(2*time.Hour), t0)
	c.put("dead", 3, t0, t0) // already expired: not stored
	if v, ok := c.get("a", t0.Add(9*time.Second)); !ok || v != 1 {
		t.Errorf("get before expiry = %v, %v", v, ok)
	}
	if _, ok := c.get("a", t0.Add(10*time.Second)); ok {
		t.Error("an entry is returned at its expiry")
	}
	if _, ok := c.get("dead", t0); ok || c.len() != 2 {
		t.Errorf("an expired put was stored: len %d", c.len())
	}
	// A write within sweepEvery of the last sweep leaves the expired entry; a later one removes it.
	c.put("c", 3, t0.Add(time.Hour), t0.Add(30*time.Second))
	if c.len() != 3 {
		t.Fatalf("len = %d, want 3 (no sweep yet)", c.len())
	}
	c.put("d", 4, t0.Add(time.Hour), t0.Add(2*time.Minute))
	if _, present := c.m["a"]; present || c.len() != 3 {
		t.Errorf("the sweep kept the expired entry (len %d)", c.len())
	}
	// Full (3 entries): a new key evicts one; an existing key replaces in place.
	c.put("e", 5, t0.Add(time.Hour), t0.Add(2*time.Minute))
	if c.len() != 3 {
		t.Errorf("bound exceeded: len %d", c.len())
	}
	if _, ok := c.get("e", t0.Add(2*time.Minute)); !ok {
		t.Error("the new entry is missing")
	}
}

func TestExpiringMap_UpdateSeesTheCurrentValue(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := newExpiringMap[string, time.Time](0)
	later := func(due time.Time) func(time.Time, bool) (time.Time, time.Time, bool) {
		return func(old time.Time, ok bool) (time.Time, time.Time, bool) {
			if ok && !due.After(old) {
				return old, time.Time{}, false
			}
			return due, due.Add(time.Hour), true
		}
	}
	c.update("s", t0, later(t0.Add(time.Minute)))
	c.update("s", t0, later(t0.Add(5*time.Second))) // earlier: kept
	if v, _ := c.get("s", t0); !v.Equal(t0.Add(time.Minute)) {
		t.Errorf("value = %v, want the later due time", v)
	}
	c.update("s", t0, later(t0.Add(2*time.Minute)))
	if v, _ := c.get("s", t0); !v.Equal(t0.Add(2 * time.Minute)) {
		t.Errorf("value = %v, want the newer later due time", v)
	}
}
