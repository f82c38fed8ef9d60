package kcsignals

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/demostack"
	"github.com/tokengate/tokengate/internal/testwait"
	"github.com/tokengate/tokengate/verifier/secevent"
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
	// resetAlice puts alice's password back and waits for the credential-change SET this
	// sends, so that it is not counted for the next action.
	resetAlice := func(uid string) {
		t.Helper()
		before := metric(t, ctx, "tokengate_upstream_signals_sets_total", `event="credential-change"`)
		admin(http.MethodPut, "/users/"+uid+"/reset-password",
			map[string]any{"type": "password", "value": "alice-password", "temporary": false}, http.StatusNoContent)
		if err := testwait.Poll(ctx, 10*time.Second, 50*time.Millisecond, func() error {
			if metric(t, ctx, "tokengate_upstream_signals_sets_total", `event="credential-change"`) <= before {
				return errors.New("no credential-change SET for the admin reset of alice's password")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	restartTokengate := func(events []string) {
		if err := st.Stop("tokengate", syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		st.SignalEvents = events
		if err := st.StartTokengate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// tokengate's stream asks for the events tokengate acts on; with its default (no
	// credential-change) Keycloak would not deliver credential-change at all. The stream asks
	// for it during the measurement, so the table shows what Keycloak sends; tokengate
	// acknowledges and ignores it unless configured to act on it. (tokengate updates the stream
	// only when it lacks an event tokengate acts on; TestSignals_AddedEventIsRequestedFromTheReusedStream
	// proves it.)
	requestStreamEvents(t, ctx, secevent.EventSessionRevoked, secevent.EventCredentialChange)
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
		// allowed: tokengate still renews although a signal came (one it is not configured
		// to act on).
		allowed bool
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
		{name: "admin resets the password", user: "alice", want: []string{"set:credential-change"}, allowed: true,
			act: func(_, uid string) {
				admin(http.MethodPut, "/users/"+uid+"/reset-password",
					map[string]any{"type": "password", "value": "alice-password-2", "temporary": false}, http.StatusNoContent)
			},
			undo: resetAlice},
		// The user's own password update: Keycloak's update-password form reached as an
		// application-initiated action (kc_action=UPDATE_PASSWORD) in real Chromium, with its
		// "Sign out from other devices" box checked (as Keycloak presents it) and unchecked. The
		// measured session is another (password-grant) session of the same user.
		{name: "the user updates the password, signing out other devices", user: "alice",
			want: []string{"bc", "set:credential-change", "set:session-revoked"}, watch: 3 * time.Second,
			act:  func(string, string) { updatePassword(t, ctx, "alice", "alice-password", "alice-password-2", true) },
			undo: resetAlice},
		{name: "the user updates the password, keeping other devices", user: "alice",
			want: []string{"set:credential-change"}, allowed: true, watch: 3 * time.Second,
			act:  func(string, string) { updatePassword(t, ctx, "alice", "alice-password", "alice-password-2", false) },
			undo: resetAlice},
		{name: "the same, tokengate acting on credential-change", user: "alice",
			want: []string{"set:credential-change"}, watch: 3 * time.Second,
			before: func() {
				restartTokengate([]string{"session-revoked", "credential-change"})
				// The last undo's credential-change (an admin reset) may come again (its
				// acknowledgement rides on the next poll) and is now acted on: it revokes
				// alice's sessions started up to its second (event_timestamp is in seconds),
				// so the next login must start in a later second.
				time.Sleep(1100 * time.Millisecond)
			},
			after: func() { restartTokengate(nil) },
			act:   func(string, string) { updatePassword(t, ctx, "alice", "alice-password", "alice-password-2", false) },
			undo:  resetAlice},
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
		if wantRefused := len(c.want) > 0 && !c.allowed; refused(r) != wantRefused {
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

var browser *demostack.Browser

// updatePassword changes user's password in real Chromium through Keycloak's update-password
// form, reached by an authorization request of client bff with kc_action=UPDATE_PASSWORD (the
// user signs in, then gets the form). Keycloak redirects to tokengate's discovery URL (any
// loopback URL is a valid redirect of bff); the code is not redeemed.
func updatePassword(t *testing.T, ctx context.Context, user, pass, newPass string, signOutOthers bool) {
	t.Helper()
	if browser == nil {
		root, err := demostack.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		path, err := demostack.Chromium(root)
		if err != nil {
			t.Fatal(err)
		}
		if browser, err = demostack.NewBrowser(ctx, path, t.TempDir()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { browser.Close(); browser = nil })
	}
	verifier := rand.Text() + rand.Text()
	challenge := sha256.Sum256([]byte(verifier))
	redirect := st.TokengateURL() + "/.well-known/openid-configuration"
	q := url.Values{
		"client_id":             {"bff"},
		"response_type":         {"code"},
		"scope":                 {"openid"},
		"redirect_uri":          {redirect},
		"state":                 {rand.Text()},
		"nonce":                 {rand.Text()},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(challenge[:])},
		"code_challenge_method": {"S256"},
		"kc_action":             {"UPDATE_PASSWORD"},
	}
	if err := browser.UpdatePassword(st.KeycloakIssuer()+"/protocol/openid-connect/auth?"+q.Encode(), redirect,
		user, pass, newPass, signOutOthers); err != nil {
		t.Fatal(err)
	}
}

// requestStreamEvents sets the events_requested of the receiver client's stream at Keycloak
// (SSF stream update, PATCH) until the test ends, then puts the former list back.
func requestStreamEvents(t *testing.T, ctx context.Context, events ...string) {
	t.Helper()
	endpoint := st.KeycloakIssuer() + "/ssf/transmitter/streams"
	type stream struct {
		StreamID        string   `json:"stream_id"`
		EventsRequested []string `json:"events_requested"`
		EventsDelivered []string `json:"events_delivered"`
	}
	var list []stream
	if err := signalsCall(ctx, http.MethodGet, endpoint, nil, &list); err != nil || len(list) != 1 {
		t.Fatalf("tokengate's stream at Keycloak: %v (%d streams)", err, len(list))
	}
	patch := func(events []string) stream {
		var out stream
		if err := signalsCall(ctx, http.MethodPatch, endpoint,
			map[string]any{"stream_id": list[0].StreamID, "events_requested": events}, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := patch(events)
	t.Logf("stream %s now delivers %v", got.StreamID, got.EventsDelivered)
	for _, e := range events {
		if !slices.Contains(got.EventsDelivered, e) {
			t.Fatalf("stream %s does not deliver %s after the update: %v", got.StreamID, e, got.EventsDelivered)
		}
	}
	t.Cleanup(func() { patch(list[0].EventsRequested) })
}

// signalsCall calls Keycloak's SSF stream API with a client-credentials token of the
// receiver client.
func signalsCall(ctx context.Context, method, u string, body, out any) error {
	form := url.Values{"grant_type": {"client_credentials"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.KeycloakIssuer()+"/protocol/openid-connect/token",
		strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(demostack.SignalsClientID, demostack.SignalsClientSecret)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := doJSON(req, http.StatusOK, &tok); err != nil {
		return fmt.Errorf("receiver token: %w", err)
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	if req, err = http.NewRequestWithContext(ctx, method, u, rd); err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	return doJSON(req, http.StatusOK, out)
}

func doJSON(req *http.Request, want int, out any) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d %s", req.Method, req.URL, resp.StatusCode, bytes.TrimSpace(raw))
	}
	return json.Unmarshal(raw, out)
}
