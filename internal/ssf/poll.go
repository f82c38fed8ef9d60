package ssf

import (
	"context"
	"time"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// Limits of a poll.
const (
	// DefaultMaxEvents is how many SETs a poll without maxEvents returns at most.
	DefaultMaxEvents = 100
	// MaxMaxEvents caps maxEvents.
	MaxMaxEvents = 1000
	// maxAcks bounds the acknowledgements and errors one poll may carry.
	maxAcks = 2000
)

// Poll serves one poll of stream id, whose receiver has been authenticated: it records the
// acknowledgements and errors, then returns the oldest unacknowledged SETs. With nothing to
// return and returnImmediately false it waits for an event up to min(wait, PollTimeout); a
// cancelled ctx or Close end the wait with an empty answer.
func (t *Transmitter) Poll(ctx context.Context, id string, req secevent.PollRequest, wait time.Duration) (secevent.PollResponse, error) {
	maxEvents := DefaultMaxEvents
	if req.MaxEvents != nil {
		maxEvents = *req.MaxEvents
	}
	switch {
	case maxEvents < 0:
		return secevent.PollResponse{}, invalidRequest("maxEvents must not be negative")
	case len(req.Ack)+len(req.SETErrs) > maxAcks:
		return secevent.PollResponse{}, invalidRequest("too many acknowledgements in one poll")
	}
	maxEvents = min(maxEvents, MaxMaxEvents)
	t.catchUp(ctx, req)
	if err := t.acknowledge(id, req); err != nil {
		return secevent.PollResponse{}, err
	}
	hold := min(wait, t.cfg.PollTimeout)
	if req.ReturnImmediately || maxEvents == 0 || hold < 0 {
		hold = 0
	}
	var timeout <-chan time.Time
	if hold > 0 {
		timer := time.NewTimer(hold)
		defer timer.Stop()
		timeout = timer.C
	}
	waiting := false
	defer func() {
		if waiting {
			t.m.waiting.Dec()
		}
	}()
	for {
		resp, changed, err := t.collect(ctx, id, maxEvents)
		if err != nil || len(resp.Sets) > 0 || hold == 0 || changed == nil {
			return resp, err
		}
		if !waiting {
			waiting = true
			t.m.waiting.Inc()
		}
		select {
		case <-changed:
		case <-timeout:
			return resp, nil
		case <-ctx.Done():
			return resp, nil
		}
	}
}

// catchUp reads the log's newest Seq when the poll acknowledges an event this replica has not
// heard of yet (delivered by another replica), so the acknowledgement is not dropped.
func (t *Transmitter) catchUp(ctx context.Context, req secevent.PollRequest) {
	var top uint64
	for _, jti := range req.Ack {
		if seq, ok := seqOf(jti); ok {
			top = max(top, seq)
		}
	}
	for jti := range req.SETErrs {
		if seq, ok := seqOf(jti); ok {
			top = max(top, seq)
		}
	}
	t.mu.Lock()
	behind := top > t.head
	t.mu.Unlock()
	if behind && t.shared() {
		if seq, err := t.store.LastEventSeq(ctx); err == nil {
			t.advance(seq)
		}
	}
}

// acknowledge applies a poll's ack and setErrs.
func (t *Transmitter) acknowledge(id string, req secevent.PollRequest) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.streams[id]
	if !ok {
		return errAuthentication
	}
	s.lastPoll = t.cfg.Now()
	if t.shared() && s.def.Source == SourceReceiver && s.lastPoll.Sub(s.storedPoll) > t.cfg.InactivityTimeout/4 {
		s.dirty = true // replicas share the inactivity timeout through the stored last poll
	}
	n := 0
	take := func(jti string) {
		if seq, ok := seqOf(jti); ok && seq <= t.head && s.ack(seq) {
			n++
		}
	}
	for _, jti := range req.Ack {
		take(jti)
	}
	for jti, e := range req.SETErrs {
		take(jti)
		t.m.setErrors.WithLabelValues(id, errLabel(e.Code)).Inc()
		t.cfg.Logger.Warn("ssf: receiver refused a SET", "event", "ssf_set_error", "stream", id, "jti", truncate(jti, 64),
			"err", truncate(e.Code, 64), "description", truncate(e.Description, 200))
	}
	if n > 0 {
		t.m.acked.WithLabelValues(id).Add(float64(n))
	}
	return nil
}

// collect returns the stream's oldest unacknowledged SETs (up to maxEvents). When it returns
// none, changed is the channel that will signal news (nil: do not wait, the transmitter is
// closing).
func (t *Transmitter) collect(ctx context.Context, id string, maxEvents int) (secevent.PollResponse, <-chan struct{}, error) {
	resp := secevent.PollResponse{Sets: map[string]string{}}
	t.mu.Lock()
	s, ok := t.streams[id]
	if !ok {
		t.mu.Unlock()
		return resp, nil, errAuthentication
	}
	changed, closed, head := t.changed, t.closed, t.head
	after := max(s.acked, t.floor)
	pending := s.backlog(t.floor, head)
	skip := make(map[uint64]struct{}, len(s.above))
	for q := range s.above {
		skip[q] = struct{}{}
	}
	def := s.def
	t.mu.Unlock()
	if closed {
		changed = nil
	}
	if pending == 0 || maxEvents == 0 {
		resp.MoreAvailable = pending > 0
		return resp, changed, nil
	}

	evs, err := t.store.Events(ctx, after, maxEvents+len(skip)+1)
	if err != nil {
		return resp, nil, &Error{Code: CodeTemporarilyUnavailable, Description: "the event log cannot be read"}
	}
	var out []store.Event
	for _, e := range evs {
		if _, done := skip[e.Seq]; !done && e.Seq <= head {
			out = append(out, e)
		}
	}
	// Events missing from the start of the range were trimmed: nothing left to deliver there.
	gone := head
	if len(evs) > 0 {
		gone = evs[0].Seq - 1
	}
	if gone > after {
		t.mu.Lock()
		if s, ok := t.streams[id]; ok {
			s.skipTo(gone)
		}
		t.mu.Unlock()
	}
	if len(out) > maxEvents {
		out, resp.MoreAvailable = out[:maxEvents], true
	}
	now := t.cfg.Now()
	first := 0
	for _, e := range out {
		tok, err := sign(t.signer, newSET(t.cfg.Issuer, def, e))
		if err != nil {
			t.cfg.Logger.Error("ssf: signing a SET", "stream", id, "seq", e.Seq, "error", err.Error())
			return secevent.PollResponse{Sets: map[string]string{}}, nil, &Error{Code: CodeTemporarilyUnavailable,
				Description: "SETs cannot be signed"}
		}
		resp.Sets[jtiOf(def.ID, e)] = tok
	}
	// First deliveries feed the lag histogram; later ones count as redeliveries.
	t.mu.Lock()
	if s, ok := t.streams[id]; ok {
		for _, e := range out {
			if e.Seq > s.delivered {
				first++
				t.m.lag.WithLabelValues(id).Observe(now.Sub(e.Time).Seconds())
			}
		}
		if len(out) > 0 {
			s.delivered = max(s.delivered, out[len(out)-1].Seq)
		}
	}
	t.mu.Unlock()
	t.m.delivered.WithLabelValues(id).Add(float64(first))
	t.m.redelivered.WithLabelValues(id).Add(float64(len(out) - first))
	return resp, changed, nil
}

// errLabel bounds the err label's values to the registry's codes.
func errLabel(code string) string {
	switch code {
	case secevent.CodeInvalidRequest, secevent.CodeInvalidKey, secevent.CodeInvalidIssuer, secevent.CodeInvalidAudience,
		secevent.CodeAuthenticationFailed, secevent.CodeAccessDenied:
		return code
	}
	return "other"
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
