package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/proctest"
)

const adminToken = "admin-token-0123456789-abcdefghijklmnopq"

// newAdmin serves the stack's admin handler (admin token "ops"); logs are the gateway's log
// lines, audit lines included.
func newAdmin(t *testing.T, s *stack) (*httptest.Server, *proctest.SyncBuffer) {
	t.Helper()
	srv := httptest.NewServer(s.app.AdminHandler())
	t.Cleanup(srv.Close)
	return srv, s.logs
}

func adminCall(t *testing.T, srv *httptest.Server, method, path, token, ctype, body string) response {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out response
	out.Status, out.Header = resp.StatusCode, resp.Header
	b := new(bytes.Buffer)
	_, _ = b.ReadFrom(resp.Body)
	out.Raw = b.String()
	_ = json.Unmarshal(b.Bytes(), &out.Body)
	return out
}

func TestAdmin_RefusesBadRequestsWithoutStateChange(t *testing.T) {
	s := newStack(t)
	srv, _ := newAdmin(t, s)
	active := s.keys.ActiveKeyID()
	cases := []struct {
		name, method, path, token, ctype, body string
		status                                 int
	}{
		{"no token", "POST", "/admin/keys/rotate", "", "", "", 401},
		{"wrong token", "POST", "/admin/keys/" + active + "/revoke", "nope", "", "", 401},
		{"basic auth instead of bearer", "POST", "/admin/sessions/s1/revoke", "", "", "", 401},
		{"malformed JSON", "POST", "/admin/keys/rotate", adminToken, "application/json", "{force:", 400},
		{"unknown field", "POST", "/admin/keys/rotate", adminToken, "application/json", `{"forse":true}`, 400},
		{"trailing data", "POST", "/admin/keys/rotate", adminToken, "application/json", `{"force":true} {}`, 400},
		{"not JSON", "POST", "/admin/keys/rotate", adminToken, "text/plain", "force", 415},
		{"too early without force", "POST", "/admin/keys/rotate", adminToken, "", "", 409},
		{"unknown kid", "POST", "/admin/keys/no-such-kid/revoke", adminToken, "", "", 404},
		{"body on session revoke", "POST", "/admin/sessions/s1/revoke", adminToken, "application/json", `{"x":1}`, 400},
		{"wrong method", "GET", "/admin/keys/rotate", adminToken, "", "", 405},
		{"unknown route", "GET", "/admin/nope", adminToken, "", "", 404},
		{"oversized body", "POST", "/admin/keys/rotate", adminToken, "application/json", `{"force":"` + strings.Repeat("a", 70<<10) + `"}`, 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := adminCall(t, srv, c.method, c.path, c.token, c.ctype, c.body)
			if r.Status != c.status || r.str("error") == "" {
				t.Errorf("%d %s, want %d with an error body", r.Status, r.Raw, c.status)
			}
			if c.status == 401 && r.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if s.keys.ActiveKeyID() != active {
				t.Fatal("the active key changed")
			}
			if st, _ := s.store.Stats(context.Background()); st.Sessions != 0 || st.Subjects != 0 {
				t.Fatalf("revocations recorded: %+v", st)
			}
		})
	}
}

func TestAdmin_KeysRotateRevokeAndAudit(t *testing.T) {
	s := newStack(t)
	srv, logs := newAdmin(t, s)
	r := adminCall(t, srv, "GET", "/admin/keys", adminToken, "", "")
	if r.Status != 200 || len(r.Body["keys"].([]any)) != 2 {
		t.Fatalf("list: %d %s", r.Status, r.Raw)
	}
	first := s.keys.ActiveKeyID()
	r = adminCall(t, srv, "POST", "/admin/keys/rotate", adminToken, "application/json", `{"force":true}`)
	if r.Status != 200 || s.keys.ActiveKeyID() == first || r.str("active_kid") != s.keys.ActiveKeyID() {
		t.Fatalf("rotate: %d %s", r.Status, r.Raw)
	}
	second := s.keys.ActiveKeyID()
	// Revoking the active key: signing moves on and the JWKS drops it at once.
	r = adminCall(t, srv, "POST", "/admin/keys/"+second+"/revoke", adminToken, "", "")
	if r.Status != 200 || s.keys.ActiveKeyID() == second || strings.Contains(string(s.keys.JWKSJSON()), second) {
		t.Fatalf("revoke active: %d %s", r.Status, r.Raw)
	}
	if got := s.mustExchange("u", "sid-after-revoke"); got.Status != 200 {
		t.Fatal("signing must not stop")
	}
	if !strings.Contains(logs.String(), `"who":"ops","action":"keys.revoke","target":"`+second+`"`) {
		t.Errorf("no audit line for the revocation: %s", logs.String())
	}
	st := adminCall(t, srv, "GET", "/admin/status", adminToken, "", "")
	if st.Status != 200 || st.str("active_kid") != s.keys.ActiveKeyID() {
		t.Errorf("status: %d %s", st.Status, st.Raw)
	}
}

func TestAdmin_SessionAndSubjectRevocationStopRenewal(t *testing.T) {
	s := newStack(t)
	srv, logs := newAdmin(t, s)
	a := s.mustExchange("hank", "sid-admin")
	b := s.mustExchange("ivy", "sid-ivy")
	if r := adminCall(t, srv, "GET", "/admin/sessions/sid-admin", adminToken, "", ""); r.Body["revoked"] != false {
		t.Fatalf("before: %s", r.Raw)
	}
	if r := adminCall(t, srv, "POST", "/admin/sessions/sid-admin/revoke", adminToken, "", ""); r.Status != 200 {
		t.Fatalf("revoke session: %d %s", r.Status, r.Raw)
	}
	if r := adminCall(t, srv, "GET", "/admin/sessions/sid-admin", adminToken, "", ""); r.Body["revoked"] != true {
		t.Fatalf("after: %s", r.Raw)
	}
	if rn := s.renew(a.str("refresh_token")); rn.str("error") != "invalid_grant" {
		t.Errorf("renewal after admin session revoke: %d %s", rn.Status, rn.Raw)
	}
	s.clock.Advance(2 * time.Second)
	if r := adminCall(t, srv, "POST", "/admin/subjects/ivy/revoke", adminToken, "", ""); r.Status != 200 {
		t.Fatalf("revoke subject: %d %s", r.Status, r.Raw)
	}
	if rn := s.renew(b.str("refresh_token")); rn.str("error") != "invalid_grant" {
		t.Errorf("renewal after admin subject revoke: %d %s", rn.Status, rn.Raw)
	}
	if !strings.Contains(logs.String(), `"action":"subjects.revoke","target":"ivy"`) {
		t.Error("no audit line for the subject revocation")
	}
}
