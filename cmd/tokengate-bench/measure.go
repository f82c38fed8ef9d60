package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Dist summarises one measured latency distribution. Times are microseconds.
type Dist struct {
	Name        string  `json:"name"`
	Concurrency int     `json:"concurrency"`
	N           int     `json:"n"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds,omitempty"`
	PerSecond   float64 `json:"per_second,omitempty"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	MaxUs       float64 `json:"max_us"`
	MeanUs      float64 `json:"mean_us"`
	// samples are kept for the plot, not written to the JSON.
	samples []float64
}

func (d Dist) String() string {
	s := fmt.Sprintf("%s: n=%d c=%d p50=%s p99=%s max=%s", d.Name, d.N, d.Concurrency, fmtUs(d.P50us), fmtUs(d.P99us), fmtUs(d.MaxUs))
	if d.PerSecond > 0 {
		s += fmt.Sprintf(" %.0f/s", d.PerSecond)
	}
	if d.Errors > 0 {
		s += fmt.Sprintf(" errors=%d", d.Errors)
	}
	return s
}

// fmtUs prints a duration given in microseconds with a readable unit.
func fmtUs(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.2f s", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.2f ms", us/1e3)
	default:
		return fmt.Sprintf("%.1f µs", us)
	}
}

// percentile is the nearest-rank p-th percentile of sorted xs.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// summarise builds a Dist from samples in microseconds.
func summarise(name string, conc int, us []float64, elapsed time.Duration, errs int64) Dist {
	s := append([]float64(nil), us...)
	sort.Float64s(s)
	d := Dist{Name: name, Concurrency: conc, N: len(s), Errors: errs, samples: s}
	if len(s) > 0 {
		var sum float64
		for _, v := range s {
			sum += v
		}
		d.P50us, d.P99us, d.MaxUs, d.MeanUs = percentile(s, 50), percentile(s, 99), s[len(s)-1], sum/float64(len(s))
	}
	if elapsed > 0 {
		d.Seconds = elapsed.Seconds()
		d.PerSecond = float64(len(s)) / elapsed.Seconds()
	}
	return d
}

// load runs fn from conc workers until dur has passed (or limit calls were made when limit > 0),
// timing each call. Failed calls count as errors and are not timed.
func load(ctx context.Context, name string, conc int, dur time.Duration, limit int, fn func(ctx context.Context, worker int) error) (Dist, error) {
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var (
		mu      sync.Mutex
		all     []float64
		errs    atomic.Int64
		calls   atomic.Int64
		firstMu sync.Mutex
		first   error
		wg      sync.WaitGroup
	)
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]float64, 0, 4096)
			for ctx.Err() == nil {
				if limit > 0 && calls.Add(1) > int64(limit) {
					break
				}
				t0 := time.Now()
				err := fn(ctx, w)
				d := time.Since(t0)
				if ctx.Err() != nil && err != nil {
					break // cut off by the deadline: neither timed nor an error
				}
				if err != nil {
					errs.Add(1)
					firstMu.Lock()
					if first == nil {
						first = err
					}
					firstMu.Unlock()
					continue
				}
				local = append(local, float64(d.Nanoseconds())/1e3)
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	d := summarise(name, conc, all, time.Since(start), errs.Load())
	logf("%s", d)
	if len(all) == 0 {
		return d, fmt.Errorf("%s: no successful call (first error: %v)", name, first)
	}
	if first != nil && float64(errs.Load()) > 0.01*float64(len(all)) {
		return d, fmt.Errorf("%s: %d errors, first: %w", name, errs.Load(), first)
	}
	return d, nil
}
