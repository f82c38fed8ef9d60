package kcsignals

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// channelTimes is when each channel first delivered after an action, relative to the action's
// return (zero: not within the watch).
type channelTimes struct {
	backchannel time.Duration
	sets        map[string]time.Duration // SET event name → first arrival
}

func (c channelTimes) String() string {
	var parts []string
	if c.backchannel > 0 {
		parts = append(parts, fmt.Sprintf("back-channel logout after %s", c.backchannel.Round(time.Millisecond)))
	}
	names := make([]string, 0, len(c.sets))
	for n := range c.sets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("SET %s after %s", n, c.sets[n].Round(time.Millisecond)))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

var signalEvents = []string{"session-revoked", "credential-change", "account-disabled", "account-enabled",
	"account-purged", "credential-compromise", "unknown"}

// snapshot reads the counters each channel moves.
func snapshot(t *testing.T, ctx context.Context) map[string]float64 {
	m := map[string]float64{
		"backchannel": metric(t, ctx, "tokengate_logouts_total", `source="backchannel"`),
	}
	for _, e := range signalEvents {
		m[e] = metric(t, ctx, "tokengate_upstream_signals_sets_total", `event="`+e+`"`)
	}
	return m
}

// watch records, for d after the action, when each counter first moved.
func watch(t *testing.T, ctx context.Context, before map[string]float64, d time.Duration) channelTimes {
	t.Helper()
	start := time.Now()
	out := channelTimes{sets: map[string]time.Duration{}}
	for time.Since(start) < d && ctx.Err() == nil {
		now := snapshot(t, ctx)
		for k, v := range now {
			if v <= before[k] {
				continue
			}
			if k == "backchannel" {
				if out.backchannel == 0 {
					out.backchannel = time.Since(start)
				}
			} else if _, seen := out.sets[k]; !seen {
				out.sets[k] = time.Since(start)
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	return out
}

// Measurement, per Keycloak action, of which signal reaches tokengate and when (the numbers in
// docs/keycloak-signals.md). Each action ends a fresh session of its user; the expectations are
// what Keycloak 26.7.3 was measured to do, so a Keycloak that changes fails here.
func TestSignals_WhichChannelDeliversEachKeycloakAction(t *testing.T) {
	need(t)
	ctx := testContext(t, 5*time.Minute)
	userID := func(name string) string {
		id, err := st.KeycloakUserID(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	admin := func(method, path string, body any, want int) {
		t.Helper()
		status, out, err := st.KeycloakAdmin(ctx, method, path, body)
		if err != nil || status != want {
			t.Fatalf("%s %s: %v HTTP %d %.300s", method, path, err, status, out)
		}
	}
	const watchFor = 8 * time.Second
	// want is what 26.7.3 delivers: "bc" back-channel logout, "set:<event>" a SET.
	cases := []struct {
		name   string
		user   string
		want   []string
		act    func(sid, uid string)
		undo   func(uid string)
		watch  time.Duration
		before func()
		after  func()
	}{
		{name: "end_session (RP logout with the refresh token)", user: "alice", want: []string{"bc", "set:session-revoked"}},
		{name: "admin deletes the session", user: "alice", want: []string{"bc"},
			act: func(sid, _ string) { admin(http.MethodDelete, "/sessions/"+sid, nil, http.StatusNoContent) }},
		{name: "admin signs the user out", user: "bob", want: []string{"bc", "set:session-revoked"},
			act: func(_, uid string) { admin(http.MethodPost, "/users/"+uid+"/logout", nil, http.StatusNoContent) }},
		{name: "admin disables the user", user: "bob",
			act: func(_, uid string) {
				admin(http.MethodPut, "/users/"+uid, map[string]any{"enabled": false}, http.StatusNoContent)
			},
			undo: func(uid string) {
				admin(http.MethodPut, "/users/"+uid, map[string]any{"enabled": true}, http.StatusNoContent)
			}},
		{name: "admin resets the password", user: "alice",
			act: func(_, uid string) {
				admin(http.MethodPut, "/users/"+uid+"/reset-password",
					map[string]any{"type": "password", "value": "alice-password-2", "temporary": false}, http.StatusNoContent)
			},
			undo: func(uid string) {
				admin(http.MethodPut, "/users/"+uid+"/reset-password",
					map[string]any{"type": "password", "value": "alice-password", "temporary": false}, http.StatusNoContent)
			}},
		{name: "session idle timeout (5 s) passes", user: "bob", watch: 20 * time.Second,
			before: func() { admin(http.MethodPut, "", map[string]any{"ssoSessionIdleTimeout": 5}, http.StatusNoContent) },
			after:  func() { admin(http.MethodPut, "", map[string]any{"ssoSessionIdleTimeout": 1800}, http.StatusNoContent) },
			act:    func(string, string) {}},
	}
	for _, c := range cases {
		if c.before != nil {
			c.before()
		}
		kc, in := login(t, ctx, c.user)
		uid := userID(c.user)
		before := snapshot(t, ctx)
		if c.act == nil {
			if code, err := st.KeycloakLogout(ctx, kc.RefreshToken); err != nil || code != http.StatusNoContent {
				t.Fatalf("Keycloak logout: %v HTTP %d", err, code)
			}
		} else {
			c.act(kc.SessionState, uid)
		}
		d := c.watch
		if d == 0 {
			d = watchFor
		}
		got := watch(t, ctx, before, d)
		r, _ := st.Renew(ctx, in.RefreshToken)
		rev, _ := st.AdminSession(ctx, kc.SessionState)
		reason := rev.Revocation.Reason
		if !rev.Revoked {
			reason = "not revoked"
		}
		t.Logf("MEASURED %-48s | %s | tokengate: %s, renewal %d %s", c.name, got, reason, r.Status, r.Error)
		var delivered []string
		if got.backchannel > 0 {
			delivered = append(delivered, "bc")
		}
		for e := range got.sets {
			delivered = append(delivered, "set:"+e)
		}
		sort.Strings(delivered)
		if st.KeycloakVersion == "26.7.3" && strings.Join(delivered, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: Keycloak %s delivered %v, measured before: %v (update docs/keycloak-signals.md)",
				c.name, st.KeycloakVersion, delivered, c.want)
		}
		if wantRefused := len(c.want) > 0; refused(r) != wantRefused {
			t.Errorf("%s: renewal HTTP %d %s, want refused=%v", c.name, r.Status, r.Error, wantRefused)
		}
		if c.undo != nil {
			c.undo(uid)
		}
		if c.after != nil {
			c.after()
		}
	}
}
