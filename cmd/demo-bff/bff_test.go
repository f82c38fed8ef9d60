package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokengate/tokengate/internal/kctest"
)

// fixture is a BFF against the fake Keycloak realm and a scripted tokengate.
type fixture struct {
	bff   *BFF
	realm *kctest.Realm
	srv   *httptest.Server
	// tokengate answers /token with status and body; renewals counts calls.
	status   atomic.Int32
	body     atomic.Value
	renewals atomic.Int32
	// exchanged is the subject_token of the last token exchange.
	exchanged atomic.Value
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{realm: kctest.New(t)}
	f.status.Store(http.StatusOK)
	f.body.Store(`{"access_token":"internal-2","refresh_token":"rt-2","expires_in":10,"token_type":"Bearer"}`)
	tg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, secret, _ := r.BasicAuth(); id != "bff" || secret != "tg-secret" {
			t.Errorf("tokengate client auth %q/%q", id, secret)
		}
		switch r.PostFormValue("grant_type") {
		case "refresh_token":
			f.renewals.Add(1)
		case "urn:ietf:params:oauth:grant-type:token-exchange":
			f.exchanged.Store(r.PostFormValue("subject_token"))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(f.status.Load()))
		_, _ = io.WriteString(w, f.body.Load().(string))
	}))
	t.Cleanup(tg.Close)
	b, err := New(context.Background(), Config{
		Listen: "127.0.0.1:1", KeycloakIssuer: f.realm.Issuer(), ClientID: "bff", KeycloakSecret: "kc-secret",
		TokengateURL: tg.URL, TokengateSecret: "tg-secret", ServiceURL: tg.URL + "/svc", Audience: "demo-service",
		Debug: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.bff = b
	f.srv = httptest.NewServer(b.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) addSession(id, sid, sub string, internalLeft time.Duration) *Session {
	s := &Session{
		ID: id, SID: sid, Subject: sub, Username: sub,
		KC:       &oauth2.Token{AccessToken: "kc-" + id, RefreshToken: "kc-rt-" + id, Expiry: time.Now().Add(5 * time.Minute)},
		Internal: "internal-1", InternalRefresh: "rt-1", InternalTTL: 9 * time.Second,
		InternalExpiry: time.Now().Add(internalLeft),
	}
	f.bff.mu.Lock()
	f.bff.sessions[id] = s
	f.bff.mu.Unlock()
	return s
}

func (f *fixture) backchannel(t *testing.T, token string) int {
	t.Helper()
	resp, err := http.PostForm(f.srv.URL+"/backchannel-logout", url.Values{"logout_token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestBackchannelLogout_EndsOnlyTheMatchingSession(t *testing.T) {
	f := newFixture(t)
	a := f.addSession("a", "sid-a", "alice", time.Minute)
	b := f.addSession("b", "sid-b", "alice", time.Minute)
	if code := f.backchannel(t, f.realm.LogoutToken("alice", "sid-a")); code != http.StatusOK {
		t.Fatalf("valid logout token: HTTP %d", code)
	}
	if !a.Ended || !strings.Contains(a.EndedReason, "back-channel") || a.InternalRefresh != "" {
		t.Errorf("session a: ended=%v reason=%q refresh kept=%v", a.Ended, a.EndedReason, a.InternalRefresh != "")
	}
	if b.Ended {
		t.Error("session b of the same user but another sid ended")
	}
	resp, err := http.Get(f.srv.URL + "/debug/backchannel")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Logouts []BackchannelLogout `json:"logouts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Logouts) != 1 || out.Logouts[0].SID != "sid-a" {
		t.Errorf("/debug/backchannel: %v %+v", err, out)
	}
}

func TestBackchannelLogout_RefusesWhatIsNotALogoutToken(t *testing.T) {
	f := newFixture(t)
	s := f.addSession("a", "sid-a", "alice", time.Minute)
	noEvents := f.realm.LogoutClaims("alice", "sid-a")
	delete(noEvents, "events")
	withNonce := f.realm.LogoutClaims("alice", "sid-a")
	withNonce["nonce"] = "n"
	otherAud := f.realm.LogoutClaims("alice", "sid-a")
	otherAud["aud"] = "someone-else"
	lt := f.realm.LogoutToken("alice", "sid-a")
	for name, tok := range map[string]string{
		"empty":     "",
		"tampered":  lt[:len(lt)-4] + "AAAA",
		"no events": f.realm.SignWith(f.realm.LogoutSigner(), noEvents),
		"nonce":     f.realm.SignWith(f.realm.LogoutSigner(), withNonce),
		"other aud": f.realm.SignWith(f.realm.LogoutSigner(), otherAud),
	} {
		if code := f.backchannel(t, tok); code != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d, want 400", name, code)
		}
	}
	if s.Ended {
		t.Error("a refused logout token ended the session")
	}
}

func TestRenew_BeforeExpiryAndEndsSessionOnInvalidGrant(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	fresh := f.addSession("fresh", "sid-f", "alice", time.Minute)
	f.bff.renew(ctx, fresh, false)
	if f.renewals.Load() != 0 {
		t.Fatal("renewed a token far from expiry")
	}
	s := f.addSession("a", "sid-a", "alice", time.Second) // < TTL/3 left
	f.bff.renew(ctx, s, false)
	if s.Internal != "internal-2" || s.InternalRefresh != "rt-2" || s.Renewals != 1 {
		t.Fatalf("after renewal: internal=%q refresh=%q renewals=%d", s.Internal, s.InternalRefresh, s.Renewals)
	}

	f.status.Store(http.StatusServiceUnavailable)
	f.body.Store(`{"error":"temporarily_unavailable"}`)
	f.bff.renew(ctx, s, true)
	if s.Ended {
		t.Fatal("a 503 from tokengate ended the session")
	}

	f.status.Store(http.StatusBadRequest)
	f.body.Store(`{"error":"invalid_grant","error_description":"session has been logged out"}`)
	f.bff.renew(ctx, s, true)
	if !s.Ended || !strings.Contains(s.EndedReason, "invalid_grant") {
		t.Fatalf("after invalid_grant: ended=%v reason=%q", s.Ended, s.EndedReason)
	}
}

// TestRenew_KeepsTheRefreshTokenWhenTheAnswerHasNone: tokengate's renewal answers carry no
// refresh_token (RFC 6749 §6); the BFF keeps presenting the one the exchange gave it.
func TestRenew_KeepsTheRefreshTokenWhenTheAnswerHasNone(t *testing.T) {
	f := newFixture(t)
	f.body.Store(`{"access_token":"internal-3","expires_in":10,"token_type":"Bearer"}`)
	s := f.addSession("a", "sid-a", "alice", time.Second)
	f.bff.renew(context.Background(), s, false)
	if s.Internal != "internal-3" || s.InternalRefresh != "rt-1" || s.Renewals != 1 {
		t.Fatalf("after renewal: internal=%q refresh=%q renewals=%d", s.Internal, s.InternalRefresh, s.Renewals)
	}
}

// TestRenew_RefreshesAtKeycloakThenExchanges: when the Keycloak access token is about to
// expire, renewal refreshes it at Keycloak and exchanges the new one at tokengate; Keycloak
// refusing the refresh token (session ended there) ends the BFF session, Keycloak being
// unreachable does not.
func TestRenew_RefreshesAtKeycloakThenExchanges(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := f.addSession("a", "sid-a", "alice", time.Second)
	s.KC = &oauth2.Token{AccessToken: "kc-old", RefreshToken: f.realm.RefreshToken("alice", "sid-a"),
		Expiry: time.Now().Add(10 * time.Second)}
	f.bff.renew(ctx, s, false)
	if f.realm.Refreshes.Load() != 1 || s.KC.AccessToken == "kc-old" || s.IDToken == "" {
		t.Fatalf("Keycloak refreshes = %d, access token replaced = %v, id_token kept = %v",
			f.realm.Refreshes.Load(), s.KC.AccessToken != "kc-old", s.IDToken != "")
	}
	if got, _ := f.exchanged.Load().(string); got != s.KC.AccessToken || s.Exchanges != 1 || f.renewals.Load() != 0 {
		t.Fatalf("exchanged %.20q (want the refreshed token), exchanges = %d, tokengate renewals = %d",
			got, s.Exchanges, f.renewals.Load())
	}
	if s.Internal != "internal-2" || s.InternalRefresh != "rt-2" || s.Ended {
		t.Fatalf("after the exchange: internal=%q refresh=%q ended=%v", s.Internal, s.InternalRefresh, s.Ended)
	}

	// Keycloak unreachable: the session stays, to be retried.
	s.KC.Expiry = time.Now().Add(5 * time.Second)
	f.realm.SetDown(true)
	f.bff.renew(ctx, s, true)
	f.realm.SetDown(false)
	if s.Ended || f.realm.Refreshes.Load() != 1 {
		t.Fatalf("Keycloak down: ended=%v refreshes=%d", s.Ended, f.realm.Refreshes.Load())
	}

	// The session ended at Keycloak (idle timeout, admin): its refresh token is refused.
	f.realm.EndSession("sid-a")
	f.bff.renew(ctx, s, true)
	if !s.Ended || !strings.Contains(s.EndedReason, "Keycloak refused") {
		t.Fatalf("after Keycloak's invalid_grant: ended=%v reason=%q", s.Ended, s.EndedReason)
	}
}

func TestDebugEndpointsOnlyWithDebug(t *testing.T) {
	f := newFixture(t)
	f.bff.cfg.Debug = false
	srv := httptest.NewServer(f.bff.Handler())
	defer srv.Close()
	for _, p := range []string{"/debug/sessions", "/debug/backchannel"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s without -debug: HTTP %d, want 404", p, resp.StatusCode)
		}
	}
}
