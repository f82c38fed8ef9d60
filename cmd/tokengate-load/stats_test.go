package main

import "testing"

func TestPercentileAndSlope(t *testing.T) {
	cases := []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"empty", nil, 50, 0},
		{"median of 1..100", seq(100), 50, 50},
		{"p99 of 1..100", seq(100), 99, 99},
		{"p100", seq(10), 100, 10},
	}
	for _, c := range cases {
		if got := percentile(c.xs, c.p); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if s := slope([]float64{0, 1, 2, 3}, []float64{1, 3, 5, 7}); s != 2 {
		t.Errorf("slope = %v, want 2", s)
	}
	if s := slope([]float64{0, 1, 2}, []float64{5, 5, 5}); s != 0 {
		t.Errorf("flat slope = %v", s)
	}
}

func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i + 1)
	}
	return out
}
