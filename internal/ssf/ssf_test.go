package ssf_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tokengate/tokengate/internal/ssf"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/internal/testwait"
	"github.com/tokengate/tokengate/keys"
	"github.com/tokengate/tokengate/verifier/secevent"
)

const issuerURL = "https://tokengate.test"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	t    *testing.T
	path string
	st   *bolt.Store
	km   *keys.Manager
	tx   *ssf.Transmitter
	reg  *prometheus.Registry
	ck   *clock
	cfg  ssf.Config
	n    int
}

var orders = ssf.StreamConfig{ID: "orders", Audience: "orders-api", SecretSHA256: sha256.Sum256([]byte("orders-secret"))}

func newFixture(t *testing.T, streams ...ssf.StreamConfig) *fixture {
	t.Helper()
	f := &fixture{t: t, path: filepath.Join(t.TempDir(), "db"), ck: &clock{t: time.Now().UTC().Round(0)}}
	var err error
	if f.st, err = bolt.Open(f.path, bolt.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.st.Close() })
	if f.km, err = keys.Open(context.Background(), f.st, keys.Config{}); err != nil {
		t.Fatal(err)
	}
	f.cfg = ssf.Config{Issuer: issuerURL, Retention: 2 * time.Minute, Streams: streams, Now: f.ck.Now,
		PollTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	f.start()
	return f
}

// start makes a new transmitter on the fixture's store (a restart).
func (f *fixture) start() {
	f.t.Helper()
	f.reg = prometheus.NewRegistry()
	cfg := f.cfg
	cfg.Registerer = f.reg
	tx, err := ssf.New(context.Background(), cfg, f.st, f.km)
	if err != nil {
		f.t.Fatal(err)
	}
	f.tx = tx
}

// record records a logout like the issuer does and notifies the transmitter.
func (f *fixture) record(sid, sub, reason string) store.Event {
	f.t.Helper()
	f.n++
	now := f.ck.Now()
	e, err := f.st.RecordRevocation(context.Background(), store.Event{ID: fmt.Sprint("ev-", f.n, "-", now.UnixNano()), Time: now,
		Revocation: store.Revocation{SID: sid, Sub: sub, At: now, Expires: now.Add(time.Hour), Reason: reason}})
	if err != nil {
		f.t.Fatal(err)
	}
	f.tx.Notify(e)
	return e
}

func (f *fixture) poll(id string, req secevent.PollRequest, wait time.Duration) secevent.PollResponse {
	f.t.Helper()
	resp, err := f.tx.Poll(context.Background(), id, req, wait)
	if err != nil {
		f.t.Fatalf("Poll(%s): %v", id, err)
	}
	return resp
}

func intp(n int) *int { return &n }

// verify checks a SET's signature against the published key and its header, and decodes it.
func (f *fixture) verify(tok string) (secevent.SET, map[string]any) {
	f.t.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		f.t.Fatal(err)
	}
	h := jws.Signatures[0].Protected
	if h.ExtraHeaders[jose.HeaderType] != "secevent+jwt" {
		f.t.Errorf("SET typ = %v, want secevent+jwt", h.ExtraHeaders[jose.HeaderType])
	}
	pub, err := f.km.PublicKey(h.KeyID)
	if err != nil {
		f.t.Fatal(err)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		f.t.Fatalf("SET does not verify with the published key: %v", err)
	}
	var s secevent.SET
	var raw map[string]any
	if err := json.Unmarshal(payload, &s); err != nil {
		f.t.Fatal(err)
	}
	_ = json.Unmarshal(payload, &raw)
	return s, raw
}

func jtis(r secevent.PollResponse) []string {
	var out []string
	for j := range r.Sets {
		out = append(out, j)
	}
	sort.Strings(out)
	return out
}

func seqs(r secevent.PollResponse) []string {
	var out []string
	for j := range r.Sets {
		n, _, _ := strings.Cut(j, "-")
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func TestPoll_LongPollAnswersWhenALogoutIsRecorded(t *testing.T) {
	f := newFixture(t, orders)
	got := make(chan secevent.PollResponse, 1)
	start := time.Now()
	go func() { got <- f.poll("orders", secevent.PollRequest{}, 5*time.Second) }()
	time.Sleep(50 * time.Millisecond) // the poll is waiting
	e := f.record("sid-1", "alice", "backchannel")
	var resp secevent.PollResponse
	select {
	case resp = <-got:
	case <-time.After(3 * time.Second):
		t.Fatal("the long poll did not answer after the logout")
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("long poll answered after %s", waited)
	}
	if len(resp.Sets) != 1 || resp.MoreAvailable {
		t.Fatalf("poll = %d SETs (more %v), want 1", len(resp.Sets), resp.MoreAvailable)
	}
	for jti, tok := range resp.Sets {
		s, raw := f.verify(tok)
		if s.JTI != jti || s.Issuer != issuerURL || !s.Audience.Is("orders-api") || s.TXN != e.ID || s.IssuedAt == nil || *s.IssuedAt != e.Time.Unix() {
			t.Errorf("SET claims = %+v", s)
		}
		if _, ok := raw["sub"]; ok {
			t.Error("SET carries sub (SSF forbids it)")
		}
		if _, ok := raw["exp"]; ok {
			t.Error("SET carries exp (SSF forbids it)")
		}
		sub := s.SubID
		if sub == nil || sub.Format != "complex" || sub.Session == nil || sub.Session.Format != "opaque" || sub.Session.ID != "sid-1" ||
			sub.User == nil || sub.User.Format != "iss_sub" || sub.User.Iss != issuerURL || sub.User.Sub != "alice" {
			t.Errorf("sub_id = %+v", sub)
		}
		ev, ok, err := s.Event(secevent.EventSessionRevoked)
		if len(s.Events) != 1 || !ok || err != nil || ev.EventTimestamp == nil || *ev.EventTimestamp != e.Revocation.At.Unix() ||
			ev.InitiatingEntity != "system" {
			t.Errorf("events = %+v", s.Events)
		}
	}
}

func TestPoll_SubjectWideLogoutIsAUserEvent(t *testing.T) {
	f := newFixture(t, orders)
	f.record("", "bob", "admin:ops")
	resp := f.poll("orders", secevent.PollRequest{ReturnImmediately: true}, 0)
	for _, tok := range resp.Sets {
		s, _ := f.verify(tok)
		if s.SubID == nil || *s.SubID != (secevent.SubjectID{Format: "iss_sub", Iss: issuerURL, Sub: "bob"}) {
			t.Errorf("sub_id = %+v, want iss_sub of bob", s.SubID)
		}
		if ev, _, _ := s.Event(secevent.EventSessionRevoked); ev.InitiatingEntity != "admin" {
			t.Errorf("initiating_entity = %q", ev.InitiatingEntity)
		}
	}
	if len(resp.Sets) != 1 {
		t.Fatalf("%d SETs, want 1", len(resp.Sets))
	}
}

func TestPoll_ShortPollAndTimeoutAnswerEmpty(t *testing.T) {
	f := newFixture(t, orders)
	start := time.Now()
	if r := f.poll("orders", secevent.PollRequest{ReturnImmediately: true}, 5*time.Second); len(r.Sets) != 0 || r.Sets == nil {
		t.Errorf("short poll of an empty stream = %+v, want an empty sets object", r)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("short poll took %s", d)
	}
	start = time.Now()
	f.poll("orders", secevent.PollRequest{}, 300*time.Millisecond)
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("long poll with wait 300ms returned after %s", d)
	}
	// The configured PollTimeout caps the wait.
	f.cfg.PollTimeout = 200 * time.Millisecond
	f.start()
	start = time.Now()
	f.poll("orders", secevent.PollRequest{}, time.Hour)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("long poll held %s past PollTimeout 200ms", d)
	}
}

func TestPoll_UnacknowledgedAreDeliveredAgainAcknowledgedNever(t *testing.T) {
	f := newFixture(t, orders)
	for i := range 3 {
		f.record(fmt.Sprint("sid-", i), "alice", "revoke")
	}
	first := f.poll("orders", secevent.PollRequest{ReturnImmediately: true}, 0)
	ids := jtis(first)
	if len(ids) != 3 {
		t.Fatalf("first poll: %d SETs, want 3", len(ids))
	}
	// Acknowledge the first and the third: only the second comes back, with the same jti.
	var one, two, three string
	for _, j := range ids {
		switch {
		case strings.HasPrefix(j, "1-"):
			one = j
		case strings.HasPrefix(j, "2-"):
			two = j
		case strings.HasPrefix(j, "3-"):
			three = j
		}
	}
	again := f.poll("orders", secevent.PollRequest{Ack: []string{one, three}, ReturnImmediately: true}, 0)
	if fmt.Sprint(jtis(again)) != fmt.Sprint([]string{two}) {
		t.Fatalf("after acking 1 and 3: %v, want [%s]", jtis(again), two)
	}
	// A retransmitted SET is the same event: same claims.
	s1, _ := f.verify(first.Sets[two])
	s2, _ := f.verify(again.Sets[two])
	if !reflect.DeepEqual(s1, s2) {
		t.Errorf("redelivered SET differs:\n%+v\n%+v", s1, s2)
	}
	// Acks of unknown, foreign or future jtis are ignored.
	last := f.poll("orders", secevent.PollRequest{Ack: []string{two, "99-AAAAAAAAAAAAAAAA", "nonsense"}, ReturnImmediately: true}, 0)
	if len(last.Sets) != 0 {
		t.Errorf("after acking everything: %v", jtis(last))
	}
	if info, _ := f.tx.Stream("orders"); info.AckedSeq != 3 || info.Backlog != 0 {
		t.Errorf("stream = %+v, want acked 3 backlog 0", info)
	}
	// An event recorded later gets the next seq and is delivered.
	f.record("sid-9", "", "recheck")
	if r := f.poll("orders", secevent.PollRequest{ReturnImmediately: true}, 0); fmt.Sprint(seqs(r)) != "[4]" {
		t.Errorf("next poll seqs = %v, want [4]", seqs(r))
	}
}

func TestPoll_MaxEventsMoreAvailableAndAckOnly(t *testing.T) {
	f := newFixture(t, orders)
	for i := range 5 {
		f.record(fmt.Sprint("sid-", i), "", "backchannel")
	}
	r := f.poll("orders", secevent.PollRequest{MaxEvents: intp(2), ReturnImmediately: true}, 0)
	if fmt.Sprint(seqs(r)) != "[1 2]" || !r.MoreAvailable {
		t.Fatalf("maxEvents 2: seqs %v more %v, want [1 2] true", seqs(r), r.MoreAvailable)
	}
	// maxEvents 0: acknowledge only, answered at once even without returnImmediately.
	start := time.Now()
	r = f.poll("orders", secevent.PollRequest{MaxEvents: intp(0), Ack: jtis(r)}, 5*time.Second)
	if len(r.Sets) != 0 || !r.MoreAvailable || time.Since(start) > time.Second {
		t.Errorf("ack-only poll = %+v after %s", r, time.Since(start))
	}
	r = f.poll("orders", secevent.PollRequest{MaxEvents: intp(10)}, 5*time.Second)
	if fmt.Sprint(seqs(r)) != "[3 4 5]" || r.MoreAvailable {
		t.Errorf("rest: seqs %v more %v, want [3 4 5] false", seqs(r), r.MoreAvailable)
	}
	if _, err := f.tx.Poll(context.Background(), "orders", secevent.PollRequest{MaxEvents: intp(-1)}, 0); err == nil {
		t.Error("negative maxEvents accepted")
	}
}

func TestPoll_SETErrsAreNotDeliveredAgain(t *testing.T) {
	f := newFixture(t, orders)
	f.record("sid-1", "", "backchannel")
	r := f.poll("orders", secevent.PollRequest{ReturnImmediately: true}, 0)
	errs := map[string]secevent.SETError{}
	for j := range r.Sets {
		errs[j] = secevent.SETError{Code: "invalid_audience", Description: "not for me"}
	}
	r = f.poll("orders", secevent.PollRequest{SETErrs: errs, ReturnImmediately: true}, 0)
	if len(r.Sets) != 0 {
		t.Errorf("a SET reported in setErrs came back: %v", jtis(r))
	}
	if v := metric(t, f.reg, "tokengate_ssf_set_errors_total", "err", "invalid_audience"); v != 1 {
		t.Errorf("set errors metric = %v, want 1", v)
	}
}

func TestRestart_AcknowledgementsSurviveUnacknowledgedComeBack(t *testing.T) {
	f := newFixture(t, orders)
	for i := range 4 {
		f.record(fmt.Sprint("sid-", i), "", "backchannel")
	}
	r := f.poll("orders", secevent.PollRequest{MaxEvents: intp(2), ReturnImmediately: true}, 0)
	f.poll("orders", secevent.PollRequest{MaxEvents: intp(0), Ack: jtis(r)}, 0)
	if err := f.tx.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The third is acknowledged but not flushed before the "crash": it comes back (at least once).
	r = f.poll("orders", secevent.PollRequest{MaxEvents: intp(1), ReturnImmediately: true}, 0)
	f.poll("orders", secevent.PollRequest{MaxEvents: intp(0), Ack: jtis(r)}, 0)

	f.start()
	r = f.poll("orders", secevent.PollRequest{ReturnImmediately: true}, 0)
	if fmt.Sprint(seqs(r)) != "[3 4]" {
		t.Errorf("after restart: seqs %v, want [3 4]", seqs(r))
	}
	f.poll("orders", secevent.PollRequest{MaxEvents: intp(0), Ack: jtis(r)}, 0)
	// Run flushes on the way out.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.tx.Run(ctx); close(done) }()
	cancel()
	<-done
	f.start()
	if r := f.poll("orders", secevent.PollRequest{ReturnImmediately: true}, 0); len(r.Sets) != 0 {
		t.Errorf("after a clean stop: %v delivered again", seqs(r))
	}
}

func TestRetention_OldEventsAreTrimmedAndSkipped(t *testing.T) {
	f := newFixture(t, orders)
	f.record("sid-old-1", "", "backchannel")
	f.record("sid-old-2", "", "backchannel")
	f.ck.Advance(3 * time.Minute) // past the 2m retention
	f.record("sid-new", "", "backchannel")
	if info, _ := f.tx.Stream("orders"); info.Backlog != 3 {
		t.Errorf("backlog before trim = %d, want 3", info.Backlog)
	}
	if err := f.tx.Trim(context.Background()); err != nil {
		t.Fatal(err)
	}
	if info, _ := f.tx.Stream("orders"); info.Backlog != 1 {
		t.Errorf("backlog after trim = %d, want 1", info.Backlog)
	}
	if r := f.poll("orders", secevent.PollRequest{ReturnImmediately: true}, 0); fmt.Sprint(seqs(r)) != "[3]" {
		t.Errorf("after trim: seqs %v, want [3]", seqs(r))
	}
	// A stream created now gets what is still in the log.
	_, _, err := f.tx.CreateStream(context.Background(), ssf.StreamConfig{ID: "late"})
	if err != nil {
		t.Fatal(err)
	}
	if r := f.poll("late", secevent.PollRequest{ReturnImmediately: true}, 0); fmt.Sprint(seqs(r)) != "[3]" {
		t.Errorf("new stream: seqs %v, want [3]", seqs(r))
	}
}

func TestStreams_ConfigAndAdmin(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, orders, ssf.StreamConfig{ID: "billing", SecretSHA256: sha256.Sum256([]byte("billing-secret"))})
	if err := f.tx.Authenticate(context.Background(), "orders", "orders-secret"); err != nil {
		t.Errorf("configured secret refused: %v", err)
	}
	for _, bad := range [][2]string{{"orders", "billing-secret"}, {"nope", "orders-secret"}, {"orders", ""}} {
		err := f.tx.Authenticate(context.Background(), bad[0], bad[1])
		var se *ssf.Error
		if !errors.As(err, &se) || se.Code != secevent.CodeAuthenticationFailed {
			t.Errorf("Authenticate(%q, %q) = %v, want authentication_failed", bad[0], bad[1], err)
		}
	}
	if ids, err := f.tx.StreamsFor(context.Background(), "billing-secret"); err != nil || fmt.Sprint(ids) != "[billing]" {
		t.Errorf("StreamsFor = %q, %v", ids, err)
	}
	info, secret, err := f.tx.CreateStream(ctx, ssf.StreamConfig{ID: "search", Description: "search API"})
	if err != nil || secret == "" || info.Audience != "search" || info.Source != ssf.SourceAdmin ||
		info.Delivery.EndpointURL != issuerURL+"/ssf/poll/search" {
		t.Fatalf("CreateStream = %+v, secret %q, %v", info, secret, err)
	}
	if err := f.tx.Authenticate(context.Background(), "search", secret); err != nil {
		t.Errorf("generated secret refused: %v", err)
	}
	if _, _, err := f.tx.CreateStream(ctx, ssf.StreamConfig{ID: "orders"}); !errors.Is(err, ssf.ErrStreamExists) {
		t.Errorf("duplicate id = %v", err)
	}
	if _, _, err := f.tx.CreateStream(ctx, ssf.StreamConfig{ID: "a/b"}); !errors.Is(err, ssf.ErrInvalidStream) {
		t.Errorf("bad id = %v", err)
	}
	if err := f.tx.DeleteStream(ctx, "orders"); !errors.Is(err, ssf.ErrConfigStream) {
		t.Errorf("deleting a configured stream = %v, want ErrConfigStream", err)
	}
	// A poll waiting on a stream that is deleted ends.
	done := make(chan error, 1)
	go func() {
		_, err := f.tx.Poll(ctx, "search", secevent.PollRequest{}, 5*time.Second)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := f.tx.DeleteStream(ctx, "search"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("poll of a deleted stream answered without error")
		}
	case <-time.After(2 * time.Second):
		t.Error("poll of a deleted stream still waiting")
	}
	if err := f.tx.DeleteStream(ctx, "search"); !errors.Is(err, ssf.ErrNoStream) {
		t.Errorf("second delete = %v", err)
	}
	// Restart with billing gone from the configuration and an admin stream kept.
	if _, _, err := f.tx.CreateStream(ctx, ssf.StreamConfig{ID: "kept", SecretSHA256: sha256.Sum256([]byte("k"))}); err != nil {
		t.Fatal(err)
	}
	f.cfg.Streams = []ssf.StreamConfig{orders}
	f.start()
	var got []string
	for _, s := range f.tx.Streams() {
		got = append(got, s.ID+":"+s.Source)
	}
	if fmt.Sprint(got) != "[kept:admin orders:config]" {
		t.Errorf("streams after restart = %v", got)
	}
}

func TestClose_EndsWaitingPolls(t *testing.T) {
	f := newFixture(t, orders)
	done := make(chan struct{})
	go func() { f.poll("orders", secevent.PollRequest{}, 5*time.Second); close(done) }()
	time.Sleep(50 * time.Millisecond)
	f.tx.Close()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close left a poll waiting")
	}
	start := time.Now()
	f.poll("orders", secevent.PollRequest{}, 5*time.Second)
	if time.Since(start) > time.Second {
		t.Error("a poll after Close waited")
	}
}

func TestMetrics_EmittedDeliveredAckedBacklogLag(t *testing.T) {
	f := newFixture(t, orders)
	f.record("sid-1", "", "backchannel")
	f.record("sid-2", "", "backchannel")
	if v := metric(t, f.reg, "tokengate_ssf_stream_backlog", "stream", "orders"); v != 2 {
		t.Errorf("backlog = %v, want 2", v)
	}
	r := f.poll("orders", secevent.PollRequest{ReturnImmediately: true}, 0)
	f.poll("orders", secevent.PollRequest{ReturnImmediately: true}, 0) // redelivery
	f.poll("orders", secevent.PollRequest{MaxEvents: intp(0), Ack: jtis(r)}, 0)
	for name, want := range map[string]float64{
		"tokengate_ssf_events_emitted_total":     2,
		"tokengate_ssf_events_delivered_total":   2,
		"tokengate_ssf_events_redelivered_total": 2,
		"tokengate_ssf_events_acked_total":       2,
		"tokengate_ssf_stream_backlog":           0,
		"tokengate_ssf_delivery_lag_seconds":     2, // sample count
	} {
		if v := metric(t, f.reg, name, "stream", "orders"); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
}

// metric returns the value (or histogram sample count) of the series of name with label=value.
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabel(m, label, value) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// notifyingLog is a Log whose appends by "another process" are announced on EventsChanged.
type notifyingLog struct {
	*bolt.Store
	changed chan struct{}
}

func (n notifyingLog) EventsChanged() <-chan struct{} { return n.changed }

// TestRun_EventsFromAnotherProcessWakePolls: an event appended elsewhere (not through Notify)
// reaches a waiting poll as soon as the log announces it, without waiting for TailInterval.
func TestRun_EventsFromAnotherProcessWakePolls(t *testing.T) {
	f := newFixture(t, orders)
	lg := notifyingLog{Store: f.st, changed: make(chan struct{}, 1)}
	cfg := f.cfg
	cfg.TailInterval = time.Hour
	tx, err := ssf.New(context.Background(), cfg, lg, f.km)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tx.Run(ctx)
	got := make(chan secevent.PollResponse, 1)
	go func() {
		r, _ := tx.Poll(context.Background(), "orders", secevent.PollRequest{}, 5*time.Second)
		got <- r
	}()
	time.Sleep(50 * time.Millisecond)
	now := f.ck.Now()
	if _, err := f.st.RecordRevocation(context.Background(), store.Event{ID: "elsewhere", Time: now,
		Revocation: store.Revocation{SID: "sid-x", At: now, Expires: now.Add(time.Hour), Reason: "backchannel"}}); err != nil {
		t.Fatal(err)
	}
	lg.changed <- struct{}{}
	select {
	case r := <-got:
		if len(r.Sets) != 1 {
			t.Errorf("poll = %v", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("an event announced by the log did not wake the poll")
	}
}

var ordersReceiver = ssf.ReceiverConfig{ID: "orders", Audience: "orders-api", SecretSHA256: sha256.Sum256([]byte("receiver-secret"))}

// TestReceiverStreams: a receiver credential creates one stream per service process; each
// starts with the events still in the log (a restarted process relearns recent revocations),
// is acknowledged independently, and expires without polls.
func TestReceiverStreams(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.cfg.Receivers = []ssf.ReceiverConfig{ordersReceiver, {ID: "billing", Audience: "billing", SecretSHA256: sha256.Sum256([]byte("b"))}}
	f.cfg.InactivityTimeout = 2 * time.Second
	f.start()
	f.record("sid-before-1", "alice", "backchannel")
	f.record("sid-before-2", "bob", "backchannel")

	if id, err := f.tx.Receiver("receiver-secret"); err != nil || id != "orders" {
		t.Fatalf("Receiver = %q, %v", id, err)
	}
	if _, err := f.tx.Receiver("orders-secret"); err == nil {
		t.Error("a wrong secret was taken for a receiver credential")
	}
	pod1, err := f.tx.CreateReceiverStream(ctx, "orders", "pod 1")
	if err != nil {
		t.Fatal(err)
	}
	pod2, err := f.tx.CreateReceiverStream(ctx, "orders", "pod 2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pod1.StreamID, "orders.") || !pod1.Audience.Is("orders-api") || pod1.InactivityTimeout != 2 ||
		pod1.StreamID == pod2.StreamID || pod1.Delivery.EndpointURL != issuerURL+"/ssf/poll/"+pod1.StreamID {
		t.Errorf("receiver streams = %+v, %+v", pod1, pod2)
	}
	if err := f.tx.Authenticate(context.Background(), pod1.StreamID, "receiver-secret"); err != nil {
		t.Errorf("the receiver credential does not authenticate its stream: %v", err)
	}
	if ids, err := f.tx.StreamsFor(context.Background(), "receiver-secret"); err != nil || len(ids) != 2 {
		t.Errorf("StreamsFor(receiver) = %v, %v", ids, err)
	}
	// Each process gets every event, the earlier ones included, and acknowledges on its own.
	r1 := f.poll(pod1.StreamID, secevent.PollRequest{ReturnImmediately: true}, 0)
	if fmt.Sprint(seqs(r1)) != "[1 2]" {
		t.Errorf("pod 1: seqs %v, want the events from before it existed", seqs(r1))
	}
	f.poll(pod1.StreamID, secevent.PollRequest{MaxEvents: intp(0), Ack: jtis(r1)}, 0)
	f.record("sid-after", "carol", "revoke")
	if r := f.poll(pod1.StreamID, secevent.PollRequest{ReturnImmediately: true}, 0); fmt.Sprint(seqs(r)) != "[3]" {
		t.Errorf("pod 1 after ack: %v", seqs(r))
	}
	if r := f.poll(pod2.StreamID, secevent.PollRequest{ReturnImmediately: true}, 0); fmt.Sprint(seqs(r)) != "[1 2 3]" {
		t.Errorf("pod 2: %v", seqs(r))
	}
	if err := f.tx.DeleteReceiverStream(ctx, "billing", pod1.StreamID); !errors.Is(err, ssf.ErrNoStream) {
		t.Errorf("another receiver deleted the stream: %v", err)
	}
	if err := f.tx.DeleteReceiverStream(ctx, "orders", "orders"); !errors.Is(err, ssf.ErrNoStream) {
		t.Errorf("a receiver deleted a configured stream: %v", err)
	}
	if err := f.tx.DeleteReceiverStream(ctx, "orders", pod1.StreamID); err != nil {
		t.Fatal(err)
	}

	// Restart: pod 2's stream is kept; without polls it expires after the inactivity timeout.
	f.start()
	if _, err := f.tx.Stream(pod2.StreamID); err != nil {
		t.Fatalf("receiver stream lost in a restart: %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go f.tx.Run(runCtx)
	f.ck.Advance(3 * time.Second)
	testwait.Eventually(t, 5*time.Second, "expired", func() bool { _, err := f.tx.Stream(pod2.StreamID); return errors.Is(err, ssf.ErrNoStream) })
	cancel()

	// A receiver removed from the configuration takes its streams along.
	pod3, err := f.tx.CreateReceiverStream(ctx, "billing", "")
	if err != nil {
		t.Fatal(err)
	}
	f.cfg.Receivers = []ssf.ReceiverConfig{ordersReceiver}
	f.start()
	if _, err := f.tx.Stream(pod3.StreamID); !errors.Is(err, ssf.ErrNoStream) {
		t.Errorf("stream of a removed receiver: %v", err)
	}
}
