package signals_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/internal/testwait"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// defaultEvents are the events of the configuration's default besides session-revoked.
var defaultEvents = []string{secevent.EventAccountDisabled, secevent.EventAccountPurged, secevent.EventCredentialCompromise}

func openStore(t *testing.T) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// logLines returns the receiver's JSON log lines whose message contains msg.
func logLines(t *testing.T, f *fixture, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if s, _ := m["msg"].(string); strings.Contains(s, msg) {
			out = append(out, m)
		}
	}
	return out
}

// byEvent returns the log lines with the given "event" attribute.
func byEvent(t *testing.T, f *fixture, event string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range logLines(t, f, "") {
		if m["event"] == event {
			out = append(out, m)
		}
	}
	return out
}

// notDelivered returns the event types the receiver logged as not delivered.
func notDelivered(t *testing.T, f *fixture) []string {
	var out []string
	for _, m := range byEvent(t, f, "signals_events_not_delivered") {
		for _, e := range m["event_types"].([]any) {
			out = append(out, e.(string))
		}
	}
	return out
}

// A deployment that adds credential-change to its events after its stream was created: the
// restarted receiver reuses the stream, updates its events_requested to exactly the configured
// events, re-reads it, and then acts on credential-change.
func TestReceiver_ReusedStreamIsUpdatedToRequestTheConfiguredEvents(t *testing.T) {
	tx := newTransmitter(t)
	st := openStore(t)
	f := start(t, tx, st, defaultEvents...)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	stream := tx.Stream()
	if p := tx.Patches(); len(p) != 0 {
		t.Fatalf("a created stream was updated: %+v", p)
	}
	if slices.Contains(tx.Requested(stream), secevent.EventCredentialChange) {
		t.Fatal("the default events request credential-change")
	}
	f.stop()

	f = start(t, tx, st, secevent.EventSessionRevoked, secevent.EventCredentialChange)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	tx.mu.Lock()
	creates := tx.creates
	tx.mu.Unlock()
	if s := tx.Stream(); s != stream || creates != 1 {
		t.Fatalf("stream %s (created %d), want %s reused", s, creates, stream)
	}
	patches := tx.Patches()
	if len(patches) != 1 {
		t.Fatalf("%d stream updates, want 1", len(patches))
	}
	if p := patches[0]; p.auth != "Bearer receiver-token" || p.contentType != "application/json" {
		t.Errorf("update sent with Authorization %q, Content-Type %q", p.auth, p.contentType)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(patches[0].body), &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"stream_id": stream, "events_requested": []any{secevent.EventSessionRevoked, secevent.EventCredentialChange}}
	if b, w := mustJSON(body), mustJSON(want); b != w {
		t.Errorf("update body %s, want %s (exactly the configured events: the RISC events of the earlier configuration are dropped)", b, w)
	}
	if got := tx.Requested(stream); !slices.Equal(got, []string{secevent.EventSessionRevoked, secevent.EventCredentialChange}) {
		t.Errorf("events_requested at the transmitter = %v", got)
	}
	lines := byEvent(t, f, "signals_stream_events_updated")
	if len(lines) != 1 || lines[0]["level"] != "INFO" || mustJSON(lines[0]["added"]) != `["credential-change"]` ||
		lines[0]["stream"] != stream {
		t.Errorf("update log lines: %v", lines)
	}
	if nd := notDelivered(t, f); len(nd) != 0 {
		t.Errorf("after the update the receiver still logs %v as not delivered (it must re-read the stream)", nd)
	}

	// credential-change is now acted on.
	when := time.Now().Add(-5 * time.Second).Truncate(time.Second)
	jti := tx.Enqueue(tx.SET(stream, "caep/event-type/credential-change",
		map[string]any{"event_timestamp": when.Unix(), "credential_type": "password", "change_type": "update"},
		userSubject(tx.issuer(), "frank")))
	testwait.Eventually(t, wait, "acknowledged", func() bool { acked, _, _ := tx.Outcome(jti); return acked })
	if got, err := st.SubjectRevocation(context.Background(), "frank"); err != nil || got.Reason != "ssf:credential-change" {
		t.Fatalf("subject revocation = %+v, %v", got, err)
	}
}

// A stream that already requests every configured event, or more, is left as it is.
func TestReceiver_StreamRequestingEveryConfiguredEventIsNotUpdated(t *testing.T) {
	tx := newTransmitter(t)
	st := openStore(t)
	f := start(t, tx, st, secevent.EventCredentialChange)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	stream := tx.Stream()
	f.stop()
	for _, events := range [][]string{{secevent.EventCredentialChange}, nil} {
		f = start(t, tx, st, events...)
		testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
		f.stop()
		if p := tx.Patches(); len(p) != 0 {
			t.Fatalf("events %v: stream updated %+v", events, p)
		}
		if l := byEvent(t, f, "signals_stream_events_updated"); len(l) != 0 {
			t.Errorf("events %v: logged an update: %v", events, l)
		}
	}
	if got := tx.Requested(stream); !slices.Equal(got, []string{secevent.EventSessionRevoked, secevent.EventCredentialChange}) {
		t.Errorf("events_requested = %v, want the stream's as created", got)
	}
}

// Keycloak refuses the update: the receiver says so at ERROR, naming the events that stay
// undelivered, and follows the stream as it is.
func TestReceiver_RefusedStreamUpdateIsLoggedAndTheStreamStillFollowed(t *testing.T) {
	tx := newTransmitter(t)
	st := openStore(t)
	f := start(t, tx, st)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	stream := tx.Stream()
	f.stop()

	tx.RefuseUpdates(403)
	f = start(t, tx, st, secevent.EventCredentialChange)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	if n := len(tx.Patches()); n != 1 {
		t.Fatalf("%d stream updates, want 1", n)
	}
	lines := byEvent(t, f, "signals_stream_events_update_failed")
	if len(lines) != 1 {
		t.Fatalf("failure log lines: %v\nlog:\n%s", lines, f.logs)
	}
	l := lines[0]
	if l["level"] != "ERROR" || l["stream"] != stream || mustJSON(l["not_requested"]) != `["credential-change"]` ||
		!strings.Contains(l["error"].(string), "HTTP 403") {
		t.Errorf("failure log line: %v", l)
	}
	if nd := notDelivered(t, f); !slices.Equal(nd, []string{secevent.EventCredentialChange}) {
		t.Errorf("not delivered logged for %v, want credential-change", nd)
	}
	if got := tx.Requested(stream); slices.Contains(got, secevent.EventCredentialChange) {
		t.Errorf("events_requested changed although refused: %v", got)
	}

	// The receiver follows the stream as it is.
	jti := tx.Enqueue(tx.SET(stream, "caep/event-type/session-revoked", map[string]any{},
		sessionSubject(tx.issuer(), "gina", "sid-refused")))
	testwait.Eventually(t, wait, "acknowledged", func() bool { acked, _, _ := tx.Outcome(jti); return acked })
	if _, err := st.SessionRevocation(context.Background(), "sid-refused"); err != nil {
		t.Fatal(err)
	}
	if v := metric(t, f.reg, "tokengate_upstream_signals_up"); v != 1 {
		t.Errorf("up = %v, want 1", v)
	}
	if l := byEvent(t, f, "signals_down"); len(l) != 0 {
		t.Errorf("a refused update is not an outage: %v", l)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
