package kcsignals

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testwait"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// streamAtKeycloak is the part of the receiver client's stream configuration this test reads.
type streamAtKeycloak struct {
	StreamID        string   `json:"stream_id"`
	EventsRequested []string `json:"events_requested"`
	EventsDelivered []string `json:"events_delivered"`
}

// Promise: adding an event to upstream.shared_signals.events takes effect on the stream
// tokengate already has. tokengate (started by the package with its default events) created
// the stream without credential-change; restarted with events [session-revoked,
// credential-change] it reuses the stream, updates its events_requested at Keycloak, and acts on
// the credential-change SET of an admin password reset. Restarted with the default events
// again ([session-revoked]), it leaves the stream as it is: it requests every configured event.
func TestSignals_AddedEventIsRequestedFromTheReusedStream(t *testing.T) {
	need(t)
	ctx := testContext(t, 3*time.Minute)
	endpoint := st.KeycloakIssuer() + "/ssf/transmitter/streams"
	stream := func() streamAtKeycloak {
		t.Helper()
		var list []streamAtKeycloak
		if err := signalsCall(ctx, http.MethodGet, endpoint, nil, &list); err != nil || len(list) != 1 {
			t.Fatalf("tokengate's stream at Keycloak: %v (%d streams)", err, len(list))
		}
		return list[0]
	}
	restart := func(events []string) {
		t.Helper()
		if err := st.Stop("tokengate", syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		st.SignalEvents = events
		if err := st.StartTokengate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitStream := func(what string, ok func(streamAtKeycloak) bool) streamAtKeycloak {
		t.Helper()
		var s streamAtKeycloak
		if err := testwait.Poll(ctx, 30*time.Second, 50*time.Millisecond, func() error {
			if s = stream(); !ok(s) {
				return fmt.Errorf("stream %s: events_requested %v, events_delivered %v", s.StreamID, s.EventsRequested, s.EventsDelivered)
			}
			return nil
		}); err != nil {
			t.Fatalf("waiting until %s: %v", what, err)
		}
		return s
	}

	before := stream()
	if slices.Contains(before.EventsRequested, secevent.EventCredentialChange) {
		t.Fatalf("precondition: the stream created with the default events requests credential-change: %v", before.EventsRequested)
	}

	restart([]string{"session-revoked", "credential-change"})
	restored := false
	t.Cleanup(func() {
		if !restored {
			st.SignalEvents = nil
			_ = st.Stop("tokengate", syscall.SIGTERM)
			_ = st.StartTokengate(ctx)
		}
	})
	after := waitStream("the stream requests credential-change", func(s streamAtKeycloak) bool {
		return slices.Contains(s.EventsRequested, secevent.EventCredentialChange)
	})
	t.Logf("stream %s: events_requested %v → %v, events_delivered %v", after.StreamID, before.EventsRequested,
		after.EventsRequested, after.EventsDelivered)
	if after.StreamID != before.StreamID {
		t.Fatalf("stream %s replaced by %s: it must be reused (the events waiting in it)", before.StreamID, after.StreamID)
	}
	want := []string{secevent.EventCredentialChange, secevent.EventSessionRevoked}
	if got := slices.Sorted(slices.Values(after.EventsRequested)); !slices.Equal(got, want) {
		t.Errorf("events_requested %v, want exactly the configured %v", got, want)
	}
	if !slices.Contains(after.EventsDelivered, secevent.EventCredentialChange) {
		t.Errorf("Keycloak does not deliver credential-change on the updated stream: %v", after.EventsDelivered)
	}

	// Keycloak now sends credential-change, and tokengate acts on it: an admin password reset
	// ends bob's session at tokengate (recheck_after is an hour: not by re-introspection).
	_, in := login(t, ctx, "bob")
	uid, err := st.KeycloakUserID(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	reset := func(pass string) {
		t.Helper()
		status, out, err := st.KeycloakAdmin(ctx, http.MethodPut, "/users/"+uid+"/reset-password",
			map[string]any{"type": "password", "value": pass, "temporary": false})
		if err != nil || status != http.StatusNoContent {
			t.Fatalf("reset bob's password: %v HTTP %d %.300s", err, status, out)
		}
	}
	ccBefore := setsOK(t, ctx, "credential-change")
	reset("bob-password-2")
	t.Cleanup(func() {
		reset("bob-password")
		// That reset's credential-change revokes bob's sessions up to its second
		// (event_timestamp is in seconds): the next login must start in a later second.
		time.Sleep(1100 * time.Millisecond)
	})
	if err := testwait.Poll(ctx, 15*time.Second, 50*time.Millisecond, func() error {
		if setsOK(t, ctx, "credential-change") <= ccBefore {
			return errors.New("no credential-change SET acted on after the admin reset of bob's password")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if r, err := st.Renew(ctx, in.RefreshToken); err != nil || !refused(r) {
		t.Fatalf("renewal after the password reset: %v HTTP %d %s, want refused", err, r.Status, r.Error)
	}

	// Back to the default events ([session-revoked]): the stream requests every configured
	// event, and more, so it is left as it is (narrowing events_requested would drop the SETs
	// queued for the events removed); Keycloak keeps delivering credential-change and
	// tokengate acknowledges and ignores it.
	restart(nil)
	restored = true
	back := stream()
	want = []string{secevent.EventCredentialChange, secevent.EventSessionRevoked}
	if got := slices.Sorted(slices.Values(back.EventsRequested)); !slices.Equal(got, want) || back.StreamID != before.StreamID {
		t.Errorf("stream %s events_requested %v, want %s left as it was with %v", back.StreamID, got, before.StreamID, want)
	}
}
