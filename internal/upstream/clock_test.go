package upstream_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/upstream"
)

// skewedUpstream is a fake Keycloak whose Date header is its real time plus skew.
func skewedUpstream(t *testing.T, skew *time.Duration, mu *sync.Mutex) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		d := *skew
		mu.Unlock()
		w.Header().Set("Date", time.Now().Add(d).UTC().Format(http.TimeFormat))
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, hc *http.Client, url string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
}

func near(got, want time.Duration) bool {
	d := got - want
	return d > -1500*time.Millisecond && d < 1500*time.Millisecond // ±0.5 s Date resolution, ±rtt/2, a second boundary
}

// A fake Keycloak 30 s behind, then ahead: the meter reports Keycloak's clock minus ours
// within the Date header's resolution, from the answers themselves (no request of its own),
// and logs one WARN per crossing of 5 s, not one per answer.
func TestClockMeter_MeasuresKeycloaksDate(t *testing.T) {
	var mu sync.Mutex
	skew := time.Duration(0)
	srv := skewedUpstream(t, &skew, &mu)
	var logs bytes.Buffer
	m := upstream.NewClockMeter(nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if _, ok := m.Offset(); ok {
		t.Fatal("an offset before any answer")
	}
	hc := &http.Client{Transport: m.Transport(nil)}

	get(t, hc, srv.URL)
	if off, ok := m.Offset(); !ok || !near(off, 0) {
		t.Fatalf("in sync: offset %v (measured %v)", off, ok)
	}
	for _, s := range []time.Duration{-30 * time.Second, 30 * time.Second} {
		mu.Lock()
		skew = s
		mu.Unlock()
		for range 5 {
			get(t, hc, srv.URL)
		}
		if off, _ := m.Offset(); !near(off, s) {
			t.Fatalf("Keycloak %v off: offset %v", s, off)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d WARN lines over 10 skewed answers, want 1 (the first crossing):\n%s", n, logs.String())
	}
	mu.Lock()
	skew = 0
	mu.Unlock()
	get(t, hc, srv.URL)
	if !strings.Contains(logs.String(), "level=INFO") {
		t.Fatalf("no INFO when the clock came back within 5 s:\n%s", logs.String())
	}
	mu.Lock()
	skew = -10 * time.Second
	mu.Unlock()
	get(t, hc, srv.URL)
	if n := strings.Count(logs.String(), "level=WARN"); n != 2 {
		t.Fatalf("%d WARN lines after a second crossing, want 2:\n%s", n, logs.String())
	}
}

// This process's clock stepped 30 s ahead (Keycloak on the right time): offset −30 s.
func TestClockMeter_LocalClockAhead(t *testing.T) {
	var mu sync.Mutex
	skew := time.Duration(0)
	srv := skewedUpstream(t, &skew, &mu)
	m := upstream.NewClockMeter(func() time.Time { return time.Now().Add(30 * time.Second) }, slog.New(slog.DiscardHandler))
	get(t, &http.Client{Transport: m.Transport(nil)}, srv.URL)
	if off, _ := m.Offset(); !near(off, -30*time.Second) {
		t.Fatalf("offset %v, want about -30s", off)
	}
}

// fakeRT answers with the given Date header values, advancing clock by rtt during the call.
type fakeRT struct {
	dates []string
	rtt   time.Duration
	clock *time.Time
}

func (f fakeRT) RoundTrip(*http.Request) (*http.Response, error) {
	*f.clock = f.clock.Add(f.rtt)
	h := http.Header{}
	for _, d := range f.dates {
		h.Add("Date", d)
	}
	return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader(""))}, nil
}

// Hostile or broken Date headers: a missing, repeated or garbage Date changes nothing, nor
// does a slow answer (over 1 s: its error would be half of it); a Date in 1970 or 9999 reads
// as ±24 h (the gauge is bounded, and the alert fires: something is badly wrong). Nothing panics.
func TestClockMeter_HostileDates(t *testing.T) {
	now := time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC)
	clock := now
	m := upstream.NewClockMeter(func() time.Time { return clock }, slog.New(slog.DiscardHandler))
	do := func(rt fakeRT) {
		t.Helper()
		rt.clock = &clock
		req, _ := http.NewRequest(http.MethodGet, "https://kc.test/realms/r/.well-known/openid-configuration", nil)
		resp, err := m.Transport(rt).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	// Baseline: Keycloak 7 s ahead (Date names the second; the meter takes its middle).
	do(fakeRT{dates: []string{clock.Add(7 * time.Second).Format(http.TimeFormat)}, rtt: 20 * time.Millisecond})
	base, ok := m.Offset()
	if !ok || base != 7*time.Second+490*time.Millisecond {
		t.Fatalf("baseline offset %v (%v), want 7.49s", base, ok)
	}
	for _, c := range []struct {
		name  string
		dates []string
		rtt   time.Duration
	}{
		{"missing", nil, 0},
		{"empty", []string{""}, 0},
		{"garbage", []string{"yesterday, around noon"}, 0},
		{"overlong", []string{strings.Repeat("Fri, ", 10000)}, 0},
		{"five-digit year", []string{"Fri, 01 Jan 10000 00:00:00 GMT"}, 0},
		{"two Dates", []string{clock.Format(http.TimeFormat), clock.Add(time.Hour).Format(http.TimeFormat)}, 0},
		{"slow answer", []string{clock.Add(time.Minute).Format(http.TimeFormat)}, 3 * time.Second},
		{"clock stepped back during the call", []string{clock.Add(time.Minute).Format(http.TimeFormat)}, -30 * time.Second},
	} {
		do(fakeRT{dates: c.dates, rtt: c.rtt})
		if off, _ := m.Offset(); off != base {
			t.Errorf("%s: offset %v, want it unchanged (%v)", c.name, off, base)
		}
	}
	for _, c := range []struct {
		date string
		want time.Duration
	}{
		{"Thu, 01 Jan 1970 00:00:00 GMT", -24 * time.Hour},
		{"Fri, 31 Dec 9999 23:59:59 GMT", 24 * time.Hour},
		{"Monday, 01-Jan-01 00:00:00 GMT", -24 * time.Hour}, // RFC 850 form, 2001
	} {
		do(fakeRT{dates: []string{c.date}})
		if off, _ := m.Offset(); off != c.want {
			t.Errorf("Date %q: offset %v, want %v (bounded)", c.date, off, c.want)
		}
	}
}
