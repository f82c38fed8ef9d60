package kcsignals

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/demostack"
	"github.com/tokengate/tokengate/internal/testwait"
)

// login logs user in with the password grant (client bff), exchanges the Keycloak access
// token at tokengate and renews once.
func login(t *testing.T, ctx context.Context, user string) (kc, internal demostack.TokenResponse) {
	t.Helper()
	kc, internal = st.LoginT(t, ctx, user)
	if r, err := st.Renew(ctx, internal.RefreshToken); err != nil || r.Status != http.StatusOK {
		t.Fatalf("renewal before the logout: %v HTTP %d %s", err, r.Status, r.Error)
	}
	return kc, internal
}

func refused(r demostack.TokenResponse) bool {
	return r.Status == http.StatusBadRequest && r.Error == "invalid_grant"
}

func metric(t *testing.T, ctx context.Context, name string, labels ...string) float64 {
	t.Helper()
	v, err := st.TokengateMetric(ctx, name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// setsOK counts the SETs of an event tokengate's receiver acknowledged.
func setsOK(t *testing.T, ctx context.Context, event string) float64 {
	return metric(t, ctx, "tokengate_upstream_signals_sets_total", `event="`+event+`"`, `outcome="ok"`)
}

// Promise: a logout that happens while tokengate is down waits in Keycloak's stream; the very
// first renewal after tokengate is back is refused — by the Shared Signals record (tokengate
// serves once its receiver drained the stream), not by re-introspection (recheck_after is an
// hour here).
func TestSignals_LogoutWhileTokengateDownIsRefusedAtFirstRenewalAfterRestart(t *testing.T) {
	need(t)
	ctx := testContext(t, 3*time.Minute)
	kc, in := login(t, ctx, "alice")
	if err := st.Stop("tokengate", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := st.KeycloakLogout(ctx, kc.RefreshToken); err != nil || code != http.StatusNoContent {
		t.Fatalf("Keycloak logout: %v HTTP %d", err, code)
	}
	loggedOut := time.Now()
	if err := st.StartTokengate(ctx); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	// No waiting: tokengate serves once its receiver has drained the stream.
	r, err := st.Renew(ctx, in.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if !refused(r) {
		t.Fatalf("first renewal after the restart: HTTP %d %s, want invalid_grant", r.Status, r.Error)
	}
	rev, err := st.AdminSession(ctx, kc.SessionState)
	if err != nil || rev.Revocation.Reason != "ssf:session-revoked" {
		t.Fatalf("revocation = %+v, %v; want reason ssf:session-revoked", rev, err)
	}
	t.Logf("logout while down: tokengate restarted %s after the logout; its first renewal (ready → refused) took %s",
		started.Sub(loggedOut).Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
}

// Promise: a logout Keycloak delivers by back-channel logout and on its stream is one
// revocation and one event on tokengate's own feed.
func TestSignals_LogoutDeliveredByBothChannelsIsOneEventOnTheFeed(t *testing.T) {
	need(t)
	ctx := testContext(t, 2*time.Minute)
	feed := newFeed(t, ctx)
	kc, in := login(t, ctx, "bob")
	before := setsOK(t, ctx, "session-revoked")
	dupBefore := metric(t, ctx, "tokengate_logouts_total", `source="ssf"`, `result="duplicate"`)
	if code, err := st.KeycloakLogout(ctx, kc.RefreshToken); err != nil || code != http.StatusNoContent {
		t.Fatalf("Keycloak logout: %v HTTP %d", err, code)
	}
	if r, _ := st.Renew(ctx, in.RefreshToken); !refused(r) {
		t.Fatalf("renewal after the back-channel logout: HTTP %d %s", r.Status, r.Error)
	}
	if err := testwait.Poll(ctx, 30*time.Second, 50*time.Millisecond, func() error {
		if setsOK(t, ctx, "session-revoked") <= before {
			return errors.New("the session-revoked SET is not acknowledged yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if d := metric(t, ctx, "tokengate_logouts_total", `source="ssf"`, `result="duplicate"`) - dupBefore; d != 1 {
		t.Errorf("SETs found already on record: %v, want 1 (back-channel logout first)", d)
	}
	rev, err := st.AdminSession(ctx, kc.SessionState)
	if err != nil || rev.Revocation.Reason != "backchannel" {
		t.Fatalf("revocation = %+v, %v; want the back-channel logout's", rev, err)
	}
	if n := feed.count(t, ctx, kc.SessionState); n != 1 {
		t.Fatalf("tokengate's feed carries %d events for the session, want 1", n)
	}
}

// feed is a stream of tokengate's own Shared Signals transmitter, created with the demo
// service's receiver credential.
type feed struct{ pollURL string }

func newFeed(t *testing.T, ctx context.Context) *feed {
	t.Helper()
	body := `{"delivery":{"method":"urn:ietf:rfc:8936"},"events_requested":["https://schemas.openid.net/secevent/caep/event-type/session-revoked"]}`
	var sc struct {
		Delivery struct {
			EndpointURL string `json:"endpoint_url"`
		} `json:"delivery"`
	}
	if err := tgCall(ctx, http.MethodPost, st.TokengateURL()+"/ssf/streams", body, http.StatusCreated, &sc); err != nil {
		t.Fatalf("create a stream at tokengate: %v", err)
	}
	return &feed{pollURL: sc.Delivery.EndpointURL}
}

// count polls the feed (acknowledging what it got) and counts the SETs naming session sid.
func (f *feed) count(t *testing.T, ctx context.Context, sid string) int {
	t.Helper()
	n := 0
	var ack []string
	for range 20 {
		b, _ := json.Marshal(map[string]any{"maxEvents": 100, "returnImmediately": true, "ack": ack})
		var resp struct {
			Sets          map[string]string `json:"sets"`
			MoreAvailable bool              `json:"moreAvailable"`
		}
		if err := tgCall(ctx, http.MethodPost, f.pollURL, string(b), http.StatusOK, &resp); err != nil {
			t.Fatalf("poll tokengate's feed: %v", err)
		}
		ack = nil
		for jti, set := range resp.Sets {
			ack = append(ack, jti)
			parts := strings.Split(set, ".")
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var c struct {
				SubID struct {
					Session struct {
						ID string `json:"id"`
					} `json:"session"`
				} `json:"sub_id"`
			}
			_ = json.Unmarshal(payload, &c)
			if c.SubID.Session.ID == sid {
				n++
			}
		}
		if len(resp.Sets) == 0 {
			return n
		}
	}
	return n
}

func tgCall(ctx context.Context, method, u, body string, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+demostack.ServiceStreamSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d %s", method, u, resp.StatusCode, bytes.TrimSpace(raw))
	}
	return json.Unmarshal(raw, out)
}
