package upstream

import (
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// ClockOffsetWarn is the clock offset from Keycloak beyond which tokengate logs a WARN (once
// per crossing) and the alert TokengateClockOffset fires: the tokens a replica issues carry its
// clock, so services on the real clock see them expire that much early (replica behind) or
// late (replica ahead).
const ClockOffsetWarn = 5 * time.Second

const (
	// clockMaxRTT is the longest round trip a measurement is taken from: its error is up to
	// half the round trip plus half a second (the Date header's resolution).
	clockMaxRTT = time.Second
	// clockBound bounds the reported offset: a Date header further than this from the local
	// clock (a year 1970 or 9999, a clock that lost its battery) reads as ±clockBound.
	clockBound = 24 * time.Hour
)

// ClockMeter measures this process's clock against Keycloak's from the HTTP Date header
// (RFC 9110 §6.6.1, one-second resolution) of the answers Keycloak already sends: discovery,
// JWKS, introspection, the token endpoint, Shared Signals polls. It makes no request of its
// own, and sees only the answers that pass through the transport it wraps (never a client's
// request to tokengate). It never refuses anything: it reports.
type ClockMeter struct {
	now func() time.Time
	log *slog.Logger

	mu       sync.Mutex
	offset   time.Duration
	measured bool
	warned   bool
}

// NewClockMeter returns a meter reading local time from now (time.Now when nil), logging to
// log (slog.Default when nil).
func NewClockMeter(now func() time.Time, log *slog.Logger) *ClockMeter {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &ClockMeter{now: now, log: log}
}

// Offset returns the last measured offset, Keycloak's clock minus this process's (positive:
// this clock is behind Keycloak's), within ±24 h, and whether any answer has been measured.
func (c *ClockMeter) Offset() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset, c.measured
}

// Transport wraps next (http.DefaultTransport when nil) so that every answer it returns is
// measured.
func (c *ClockMeter) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return clockTransport{meter: c, next: next}
}

type clockTransport struct {
	meter *ClockMeter
	next  http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t clockTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := t.meter.now()
	resp, err := t.next.RoundTrip(req)
	if err == nil && resp != nil {
		t.meter.observe(sent, t.meter.now(), resp.Header.Values("Date"))
	}
	return resp, err
}

// observe takes one measurement from an answer whose headers arrived between sent and got. A
// missing, repeated or unparseable Date, or a round trip longer than clockMaxRTT (or negative:
// the local clock stepped meanwhile), leaves the offset as it was.
func (c *ClockMeter) observe(sent, got time.Time, dates []string) {
	if len(dates) != 1 {
		return
	}
	rtt := got.Sub(sent)
	if rtt < 0 || rtt > clockMaxRTT {
		return
	}
	date, err := http.ParseTime(dates[0])
	if err != nil {
		return
	}
	// Date names the second Keycloak generated the answer in: its middle is the best guess,
	// and the middle of the round trip is when, by this clock, that was.
	off := date.Add(500 * time.Millisecond).Sub(sent.Add(rtt / 2))
	off = max(-clockBound, min(off, clockBound))

	c.mu.Lock()
	c.offset, c.measured = off, true
	out := off > ClockOffsetWarn || off < -ClockOffsetWarn
	first := out && !c.warned
	back := !out && c.warned
	c.warned = out
	c.mu.Unlock()

	switch {
	case first:
		side := "behind"
		if off < 0 {
			side = "ahead of"
		}
		c.log.Warn("this clock is "+side+" Keycloak's by more than "+ClockOffsetWarn.String()+
			": the tokens tokengate issues expire that much early (behind) or late (ahead) at services on the right time; synchronise the clock (chrony)",
			"event", "upstream_clock_offset", "offset_seconds", off.Seconds())
	case back:
		c.log.Info("this clock is again within "+ClockOffsetWarn.String()+" of Keycloak's",
			"event", "upstream_clock_offset", "offset_seconds", off.Seconds())
	}
}
