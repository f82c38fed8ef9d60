package signals_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/testwait"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// Events tokengate acts on that Keycloak does not deliver (the RISC events on 26.7.3) are one
// INFO line naming them all, not a WARN each: they are acted on when a later Keycloak delivers
// them, nothing is misconfigured. With only events Keycloak delivers, nothing is said.
func TestReceiver_UndeliveredEventsAreOneInfoLine(t *testing.T) {
	tx := newTransmitter(t)
	f := start(t, tx, openStore(t), secevent.EventAccountDisabled, secevent.EventAccountPurged, secevent.EventCredentialCompromise)
	testwait.Eventually(t, wait, "the stream is verified", f.rcv.Verified)
	lines := byEvent(t, f, "signals_events_not_delivered")
	if len(lines) != 1 || lines[0]["level"] != "INFO" || lines[0]["stream"] != tx.Stream() {
		t.Fatalf("not-delivered lines %v, want one INFO\nlog:\n%s", lines, f.logs)
	}
	want := []string{secevent.EventAccountDisabled, secevent.EventAccountPurged, secevent.EventCredentialCompromise}
	if got := notDelivered(t, f); !slices.Equal(got, want) {
		t.Errorf("event_types %v, want %v", got, want)
	}
	if strings.Contains(f.logs.String(), `"level":"WARN"`) {
		t.Errorf("WARN at start with events Keycloak does not deliver:\n%s", f.logs)
	}
	f.stop()

	g := start(t, newTransmitter(t), openStore(t))
	testwait.Eventually(t, wait, "the stream is verified", g.rcv.Verified)
	if l := byEvent(t, g, "signals_events_not_delivered"); len(l) != 0 || strings.Contains(g.logs.String(), `"level":"WARN"`) {
		t.Errorf("with only session-revoked: %v\nlog:\n%s", l, g.logs)
	}
}
