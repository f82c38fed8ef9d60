package signals_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/internal/testwait"
	"github.com/tokengate/tokengate/internal/upstream/signals"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// recorder records into a real bolt store the way the issuer does (RecordNewRevocation, the
// SET's jti claimed in the same transaction); it can be told to fail.
type recorder struct {
	st   *bolt.Store
	fail atomic.Int32 // calls left to fail
	mu   sync.Mutex
	got  []store.Revocation
}

func (r *recorder) RecordUpstreamSET(ctx context.Context, c store.Claim, rev store.Revocation) (bool, error) {
	if r.fail.Add(-1) >= 0 {
		return false, store.ErrUnavailable
	}
	rev.Expires = time.Now().Add(time.Hour)
	_, o, err := r.st.RecordNewRevocation(ctx, store.Event{ID: rev.SID + rev.Sub + rev.At.String(), Time: time.Now(), Revocation: rev, Claim: c})
	ok := o == store.Recorded
	if ok {
		r.mu.Lock()
		r.got = append(r.got, rev)
		r.mu.Unlock()
	}
	return ok, err
}

func (r *recorder) recorded() []store.Revocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]store.Revocation(nil), r.got...)
}

type fixture struct {
	tx   *transmitter
	st   *bolt.Store
	rec  *recorder
	rcv  *signals.Receiver
	reg  *prometheus.Registry
	logs *syncBuffer
	stop func()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs a receiver against tx with a fresh (or the given) store.
func start(t *testing.T, tx *transmitter, st *bolt.Store, events ...string) *fixture {
	t.Helper()
	return startWith(t, tx, st, nil, events...)
}

// startWith is start with the receiver's Config changed by edit first.
func startWith(t *testing.T, tx *transmitter, st *bolt.Store, edit func(*signals.Config), events ...string) *fixture {
	t.Helper()
	if st == nil {
		var err error
		st, err = bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
	}
	f := &fixture{tx: tx, st: st, rec: &recorder{st: st}, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	cfg := signals.Config{
		Issuer: tx.issuer(), ClientID: clientID, ClientSecret: clientSecret, Events: events,
		PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: f.reg,
	}
	if edit != nil {
		edit(&cfg)
	}
	rcv, err := signals.New(cfg, st, f.rec)
	if err != nil {
		t.Fatal(err)
	}
	f.rcv = rcv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rcv.Run(ctx)
	}()
	f.stop = func() { cancel(); <-done }
	t.Cleanup(f.stop)
	return f
}

// wait bounds every wait for the receiver: generous, the test machine is shared.
const wait = 15 * time.Second

func sessionSubject(iss, sub, sid string) map[string]any {
	return map[string]any{"format": "complex",
		"user":    map[string]any{"format": "iss_sub", "iss": iss, "sub": sub},
		"session": map[string]any{"format": "opaque", "id": sid}}
}

func userSubject(iss, sub string) map[string]any {
	return map[string]any{"format": "iss_sub", "iss": iss, "sub": sub}
}

func TestReceiver_SessionRevokedIsRecordedThenAcknowledged(t *testing.T) {
	tx := newTransmitter(t)
	f := start(t, tx, nil)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	stream := tx.Stream()
	jti := tx.Enqueue(tx.SET(stream, "caep/event-type/session-revoked",
		map[string]any{"event_timestamp": time.Now().Unix(), "initiating_entity": "user"},
		sessionSubject(tx.issuer(), "alice", "sid-1")))
	testwait.Eventually(t, wait, "the SET is acknowledged", func() bool { acked, _, _ := tx.Outcome(jti); return acked })
	got, err := f.st.SessionRevocation(context.Background(), "sid-1")
	if err != nil || got.Sub != "alice" || got.Reason != "ssf:session-revoked" {
		t.Fatalf("session revocation = %+v, %v", got, err)
	}
	if v := metric(t, f.reg, "tokengate_upstream_signals_up"); v != 1 {
		t.Errorf("up = %v, want 1", v)
	}
	// The stream id is kept for the next start.
	doc, err := f.st.ReceiverStream(context.Background())
	if err != nil || !strings.Contains(string(doc), stream) {
		t.Errorf("stored stream document = %s, %v", doc, err)
	}
}

func TestReceiver_ForgedOrForeignSETsAreRefusedAndChangeNothing(t *testing.T) {
	tx := newTransmitter(t)
	f := start(t, tx, nil)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	stream := tx.Stream()
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	base := func() map[string]any {
		return tx.claims(stream, "caep/event-type/session-revoked", map[string]any{},
			sessionSubject(tx.issuer(), "mallory", "sid-forged"))
	}
	with := func(k string, v any) map[string]any { c := base(); c[k] = v; return c }
	cases := []struct {
		name, set, wantErr string
	}{
		{"signed by another key", tx.Sign(base(), other, jose.ES256, "secevent+jwt"), "invalid_key"},
		{"HMAC", tx.Sign(base(), []byte("0123456789abcdef0123456789abcdef"), jose.HS256, "secevent+jwt"), "invalid_request"},
		{"not a JWS", "not.a.jws", "invalid_request"},
		{"typ JWT", tx.Sign(base(), tx.key, jose.ES256, "JWT"), "invalid_request"},
		{"another issuer", tx.Sign(with("iss", "https://evil.test/realms/demo"), tx.key, jose.ES256, "secevent+jwt"), "invalid_issuer"},
		{"another stream's aud", tx.Sign(with("aud", clientID+"/other-stream"), tx.key, jose.ES256, "secevent+jwt"), "invalid_audience"},
		{"two audiences", tx.Sign(with("aud", []string{clientID + "/" + stream, "x"}), tx.key, jose.ES256, "secevent+jwt"), "invalid_audience"},
		{"iat in the future", tx.Sign(with("iat", time.Now().Add(time.Hour).Unix()), tx.key, jose.ES256, "secevent+jwt"), "invalid_request"},
		{"iat too old", tx.Sign(with("iat", time.Now().Add(-72*time.Hour).Unix()), tx.key, jose.ES256, "secevent+jwt"), "invalid_request"},
		{"no iat", tx.Sign(with("iat", nil), tx.key, jose.ES256, "secevent+jwt"), "invalid_request"},
		{"unknown event", tx.Sign(with("events", map[string]any{"https://example.test/event/other": map[string]any{}}), tx.key, jose.ES256, "secevent+jwt"), "invalid_request"},
		{"two events", tx.Sign(with("events", map[string]any{secevent.EventSessionRevoked: map[string]any{}, secevent.EventCredentialChange: map[string]any{}}), tx.key, jose.ES256, "secevent+jwt"), "invalid_request"},
		{"email subject", tx.Sign(with("sub_id", map[string]any{"format": "email", "email": "m@example.test"}), tx.key, jose.ES256, "secevent+jwt"), "invalid_request"},
		{"user of another issuer", tx.Sign(with("sub_id", sessionSubject("https://evil.test", "mallory", "sid-forged")), tx.key, jose.ES256, "secevent+jwt"), "invalid_request"},
	}
	jtis := map[string]string{}
	for _, c := range cases {
		jtis[c.name] = tx.Enqueue(c.set)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var code string
			testwait.Eventually(t, wait, "the SET is answered", func() bool { _, code, _ = tx.Outcome(jtis[c.name]); return code != "" })
			if code != c.wantErr {
				t.Errorf("setErrs err = %q, want %q", code, c.wantErr)
			}
		})
	}
	if got := f.rec.recorded(); len(got) != 0 {
		t.Fatalf("refused SETs recorded %+v", got)
	}
	if _, err := f.st.SessionRevocation(context.Background(), "sid-forged"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("forged session revocation stored: %v", err)
	}
	if evs, _ := f.st.Events(context.Background(), 0, 10); len(evs) != 0 {
		t.Errorf("events after refused SETs: %+v", evs)
	}
	if !strings.Contains(f.logs.String(), "signals_set_refused") {
		t.Error("refusals are not logged")
	}
}

func TestReceiver_UnrecordedSETIsNotAcknowledgedAndComesAgain(t *testing.T) {
	tx := newTransmitter(t)
	f := start(t, tx, nil)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	f.rec.fail.Store(2)
	jti := tx.Enqueue(tx.SET(tx.Stream(), "caep/event-type/session-revoked", map[string]any{},
		sessionSubject(tx.issuer(), "bob", "sid-2")))
	testwait.Eventually(t, wait, "the SET is acknowledged after the store recovered", func() bool { acked, _, _ := tx.Outcome(jti); return acked })
	if f.rec.fail.Load() >= 0 {
		t.Fatal("the recorder did not fail first")
	}
	if got := f.rec.recorded(); len(got) != 1 || got[0].SID != "sid-2" {
		t.Fatalf("recorded %+v", got)
	}
}

func TestReceiver_UserEventsRevokeTheSubjectAsOfTheEvent(t *testing.T) {
	tx := newTransmitter(t)
	f := start(t, tx, nil, secevent.EventCredentialChange)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	when := time.Now().Add(-10 * time.Second).Truncate(time.Second)
	jti := tx.Enqueue(tx.SET(tx.Stream(), "caep/event-type/credential-change",
		map[string]any{"event_timestamp": when.Unix(), "credential_type": "password", "change_type": "update"},
		userSubject(tx.issuer(), "carol")))
	testwait.Eventually(t, wait, "acknowledged", func() bool { acked, _, _ := tx.Outcome(jti); return acked })
	got, err := f.st.SubjectRevocation(context.Background(), "carol")
	if err != nil || !got.At.Equal(when) || got.Reason != "ssf:credential-change" {
		t.Fatalf("subject revocation = %+v, %v; want At %v", got, err, when)
	}
}

func TestReceiver_CredentialChangeIsIgnoredByDefault(t *testing.T) {
	tx := newTransmitter(t)
	f := start(t, tx, nil)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	jti := tx.Enqueue(tx.SET(tx.Stream(), "caep/event-type/credential-change", map[string]any{},
		userSubject(tx.issuer(), "dave")))
	testwait.Eventually(t, wait, "acknowledged", func() bool { acked, _, _ := tx.Outcome(jti); return acked })
	if _, err := f.st.SubjectRevocation(context.Background(), "dave"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("credential-change acted on although not configured: %v", err)
	}
}

func TestReceiver_ReusesItsStreamAfterARestartAndRecreatesALostOne(t *testing.T) {
	tx := newTransmitter(t)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f := start(t, tx, st)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	first := tx.Stream()
	f.stop()

	// While tokengate is down a logout waits in the stream; the restarted receiver reuses the
	// stream and gets it.
	jti := tx.Enqueue(tx.SET(first, "caep/event-type/session-revoked", map[string]any{},
		sessionSubject(tx.issuer(), "erin", "sid-down")))
	f = start(t, tx, st)
	testwait.Eventually(t, wait, "the waiting SET is acknowledged", func() bool { acked, _, _ := tx.Outcome(jti); return acked })
	if _, err := st.SessionRevocation(context.Background(), "sid-down"); err != nil {
		t.Fatal(err)
	}
	tx.mu.Lock()
	creates := tx.creates
	tx.mu.Unlock()
	if creates != 1 {
		t.Fatalf("streams created %d, want 1 (reused)", creates)
	}

	// Keycloak loses the stream: the receiver creates a new one and stores its id.
	tx.Lose()
	testwait.Eventually(t, wait, "a new stream exists", func() bool { s := tx.Stream(); return s != "" && s != first })
	testwait.Eventually(t, wait, "the new stream's id is stored", func() bool {
		doc, err := st.ReceiverStream(context.Background())
		return err == nil && strings.Contains(string(doc), `"`+tx.Stream()+`"`)
	})
	testwait.Eventually(t, wait, "the new stream is verified", f.rcv.Verified)
	if !strings.Contains(f.logs.String(), "signals_stream_recreated") {
		t.Error("the lost stream is not logged")
	}
}

func TestReceiver_NoTransmitterDegradesWithALogLineAndAMetric(t *testing.T) {
	tx := newTransmitter(t)
	tx.mu.Lock()
	tx.offline = true
	tx.mu.Unlock()
	f := start(t, tx, nil)
	testwait.Eventually(t, wait, "a failure is counted", func() bool {
		return metric(t, f.reg, "tokengate_upstream_signals_failures_total") >= 1
	})
	if v := metric(t, f.reg, "tokengate_upstream_signals_up"); v != 0 {
		t.Errorf("up = %v, want 0", v)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "signals_down") || !strings.Contains(logs, "--features=ssf") {
		t.Errorf("log does not say what is wrong: %s", logs)
	}
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		if strings.Contains(l, "signals_down") {
			_ = json.Unmarshal([]byte(l), &line)
		}
	}
	if line["level"] != "ERROR" {
		t.Errorf("log line %v is not an error", line)
	}
}

func TestNew_RefusesUnknownEventsAndMissingCredentials(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec := &recorder{st: st}
	if _, err := signals.New(signals.Config{Issuer: "https://kc.test/realms/demo", ClientID: "c"}, st, rec); err == nil {
		t.Error("New without a secret succeeded")
	}
	if _, err := signals.New(signals.Config{Issuer: "https://kc.test/realms/demo", ClientID: "c", ClientSecret: "s",
		Events: []string{"https://example.test/other"}}, st, rec); err == nil {
		t.Error("New with an unknown event succeeded")
	}
}

// metric returns the value of an unlabelled gauge or counter.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.Metric) == 0 {
			continue
		}
		m := mf.Metric[0]
		if m.Gauge != nil {
			return m.Gauge.GetValue()
		}
		return m.Counter.GetValue()
	}
	return -1
}

func TestReceiver_CaughtUpAfterTheWaitingLogoutsAreRecorded(t *testing.T) {
	tx := newTransmitter(t)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f := start(t, tx, st)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	f.stop()
	// Logouts wait in the stream while tokengate is down.
	for _, sid := range []string{"sid-a", "sid-b", "sid-c"} {
		tx.Enqueue(tx.SET(tx.Stream(), "caep/event-type/session-revoked", map[string]any{},
			sessionSubject(tx.issuer(), "frank", sid)))
	}
	f = start(t, tx, st)
	select {
	case <-f.rcv.CaughtUp():
	case <-time.After(5 * time.Second):
		t.Fatal("not caught up")
	}
	for _, sid := range []string{"sid-a", "sid-b", "sid-c"} {
		if _, err := st.SessionRevocation(context.Background(), sid); err != nil {
			t.Errorf("%s not recorded when CaughtUp closed: %v", sid, err)
		}
	}
}

func TestReceiver_CaughtUpDoesNotWaitForAnUnreachableKeycloak(t *testing.T) {
	tx := newTransmitter(t)
	tx.mu.Lock()
	tx.offline = true
	tx.mu.Unlock()
	f := start(t, tx, nil)
	select {
	case <-f.rcv.CaughtUp():
	case <-time.After(5 * time.Second):
		t.Fatal("CaughtUp waits for a transmitter that is not there")
	}
}
