package server_test

// The HTTP mapping of every endpoint, as a table: what the issuer (or the key manager, the store)
// answers → status, error code, headers. The collaborators are in-process fakes behind the
// interfaces server.New and server.NewAdmin take; the policy behind the answers is tested in
// package issuer, the assembled gateway in cmd/internal/app.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/keys"
	"github.com/tokengate/tokengate/server"
)

const goodSecret = "good-secret-0123456789-abcdefghijklmnop"

// quiet drops the servers' log lines.
var quiet = slog.New(slog.DiscardHandler)

// fakeIssuer answers every policy call with err (resp on success) and remembers the calls.
type fakeIssuer struct {
	err  error
	resp issuer.TokenResponse

	mu    sync.Mutex
	calls []string
	req   issuer.ExchangeRequest // the last exchange
	args  []string               // the last call's string arguments
}

// lastCall lists the calls made, comma-separated.
func (f *fakeIssuer) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ",")
}

// lastArgs are the last call's string arguments.
func (f *fakeIssuer) lastArgs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.args
}

func (f *fakeIssuer) called(name string, args ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	f.args = args
}

// Authenticate accepts any client id with goodSecret, as the issuer does its configured ones.
func (f *fakeIssuer) Authenticate(id, secret string) (issuer.Client, error) {
	if secret != goodSecret {
		return issuer.Client{}, &issuer.Error{Code: issuer.CodeInvalidClient, Description: "client authentication failed"}
	}
	return issuer.Client{ID: id}, nil
}

func (f *fakeIssuer) Exchange(_ context.Context, c issuer.Client, r issuer.ExchangeRequest) (issuer.TokenResponse, error) {
	f.called("Exchange", c.ID)
	f.mu.Lock()
	f.req = r
	f.mu.Unlock()
	return f.resp, f.err
}

func (f *fakeIssuer) Renew(_ context.Context, c issuer.Client, refreshToken, scope string) (issuer.TokenResponse, error) {
	f.called("Renew", c.ID, refreshToken, scope)
	return f.resp, f.err
}

func (f *fakeIssuer) Revoke(_ context.Context, c issuer.Client, token, hint string) error {
	f.called("Revoke", c.ID, token, hint)
	return f.err
}

func (f *fakeIssuer) RecordLogout(_ context.Context, logoutToken string) (store.Revocation, error) {
	f.called("RecordLogout", logoutToken)
	return store.Revocation{SID: "sid-1", Reason: "backchannel"}, f.err
}

// fakeKeys publishes one key set.
type fakeKeys struct{ loaded bool }

func (fakeKeys) JWKSJSON() []byte     { return []byte(`{"keys":[{"kid":"k1","kty":"EC"}]}`) }
func (fakeKeys) Algorithms() []string { return []string{"ES256"} }
func (k fakeKeys) Loaded() bool       { return k.loaded }

// oauthErr is an issuer refusal.
func oauthErr(code string) error {
	return &issuer.Error{Code: code, Description: "the issuer says " + code, Err: errors.New("internal cause")}
}

var tokenOK = issuer.TokenResponse{AccessToken: "at", IssuedTokenType: issuer.TokenTypeAccessToken, TokenType: "Bearer",
	ExpiresIn: 30, RefreshToken: "rt", Scope: "openid"}

func exchange(extra ...string) url.Values {
	f := url.Values{"grant_type": {issuer.GrantTokenExchange}, "subject_token": {"st"}, "subject_token_type": {issuer.TokenTypeAccessToken}}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Add(extra[i], extra[i+1])
	}
	return f
}

func refresh() url.Values {
	return url.Values{"grant_type": {issuer.GrantRefreshToken}, "refresh_token": {"rt"}, "scope": {"email"}}
}

// call is one request of the table.
type call struct {
	method, path string
	form         url.Values // sent as a form body when set
	body, ctype  string     // sent instead when body is set
	auth         string     // client id authenticated with basic auth ("" none); secret goodSecret unless badSecret
	badSecret    bool
	bearer       string            // an Authorization: Bearer credential
	reqHeader    map[string]string // other request headers
}

// mapping is one row: an endpoint, what the collaborators answer, what the caller must see.
type mapping struct {
	name string
	call
	err         error                // the issuer's answer
	resp        issuer.TokenResponse // the issuer's token response on success
	limits      server.Limits
	before      int   // identical requests sent (and not checked) first
	notLoaded   bool  // the key manager has no signing key
	ready       error // Config.Ready's answer
	status      int
	code        string            // the error member; "" for a success
	desc        string            // the error description, when it matters
	called      string            // the issuer calls made, comma-separated ("" none)
	header      map[string]string // exact header values ("" means absent)
	bodyHas     []string          // substrings of the body
	bodyHasnt   []string          // what the body must not hold
	checkIssuer func(t *testing.T, f *fakeIssuer)
}

// TestHTTPMapping: each public endpoint's answer for each outcome of the issuer: status, OAuth
// error code (RFC 6749 §5.2), Cache-Control no-store and Pragma on token answers and errors,
// WWW-Authenticate on every 401, Retry-After on every 503 and 429, JSON content type; requests
// that fail before the policy never reach the issuer.
func TestHTTPMapping(t *testing.T) {
	basic := func(c call) call { c.auth = "bff"; return c }
	tokenPost := func(form url.Values) call { return basic(call{method: "POST", path: "/token", form: form}) }
	revokePost := func(form url.Values) call { return basic(call{method: "POST", path: "/revoke", form: form}) }
	logoutPost := call{method: "POST", path: "/backchannel-logout", form: url.Values{"logout_token": {"lt"}}}
	noStore := map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache"}
	rows := []mapping{
		// POST /token, token exchange (RFC 8693) and refresh (RFC 6749 §6).
		{name: "exchange granted", call: tokenPost(exchange()), resp: tokenOK, status: 200, called: "Exchange",
			header:  map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache", "Content-Type": "application/json; charset=utf-8"},
			bodyHas: []string{`"access_token":"at"`, `"refresh_token":"rt"`, `"token_type":"Bearer"`, `"expires_in":30`}},
		{name: "exchange parameters reach the issuer", call: tokenPost(exchange("audience", "a1", "audience", "a2", "resource", "https://r",
			"scope", "openid", "requested_token_type", issuer.TokenTypeAccessToken, "actor_token", "act", "actor_token_type", issuer.TokenTypeAccessToken)),
			resp: tokenOK, status: 200, called: "Exchange", checkIssuer: func(t *testing.T, f *fakeIssuer) {
				want := issuer.ExchangeRequest{SubjectToken: "st", SubjectTokenType: issuer.TokenTypeAccessToken, RequestedTokenType: issuer.TokenTypeAccessToken,
					Audience: []string{"a1", "a2"}, Resource: []string{"https://r"}, Scope: "openid", ActorToken: "act", ActorTokenType: issuer.TokenTypeAccessToken}
				if fmt.Sprint(f.req) != fmt.Sprint(want) {
					t.Errorf("the issuer got %+v, want %+v", f.req, want)
				}
			}},
		{name: "renewal granted, no refresh token answered", call: tokenPost(refresh()),
			resp:   issuer.TokenResponse{AccessToken: "at2", IssuedTokenType: issuer.TokenTypeAccessToken, TokenType: "Bearer", ExpiresIn: 30},
			status: 200, called: "Renew", header: noStore, bodyHas: []string{`"access_token":"at2"`}, bodyHasnt: []string{"refresh_token"},
			checkIssuer: func(t *testing.T, f *fakeIssuer) {
				if a := f.lastArgs(); fmt.Sprint(a) != "[bff rt email]" {
					t.Errorf("Renew got %q", a)
				}
			}},
		{name: "exchange refused: invalid_request", call: tokenPost(exchange()), err: oauthErr(issuer.CodeInvalidRequest),
			status: 400, code: "invalid_request", desc: "the issuer says invalid_request", called: "Exchange"},
		{name: "exchange refused: invalid_target", call: tokenPost(exchange()), err: oauthErr(issuer.CodeInvalidTarget),
			status: 400, code: "invalid_target", called: "Exchange"},
		{name: "exchange refused: invalid_scope", call: tokenPost(exchange()), err: oauthErr(issuer.CodeInvalidScope),
			status: 400, code: "invalid_scope", called: "Exchange"},
		{name: "exchange refused: unauthorized_client", call: tokenPost(exchange()), err: oauthErr(issuer.CodeUnauthorizedClient),
			status: 400, code: "unauthorized_client", called: "Exchange"},
		{name: "exchange: provider down", call: tokenPost(exchange()), err: oauthErr(issuer.CodeTemporarilyUnavailable),
			status: 503, code: "temporarily_unavailable", called: "Exchange", header: map[string]string{"Retry-After": "1"}},
		{name: "exchange: server_error", call: tokenPost(exchange()), err: oauthErr(issuer.CodeServerError),
			status: 500, code: "server_error", called: "Exchange"},
		{name: "exchange: an error that is not an OAuth error stays in the log", call: tokenPost(exchange()),
			err: errors.New("bolt: disk on fire"), status: 500, code: "server_error", desc: "internal error", called: "Exchange",
			bodyHasnt: []string{"disk on fire"}},
		{name: "renewal refused: invalid_grant", call: tokenPost(refresh()), err: oauthErr(issuer.CodeInvalidGrant),
			status: 400, code: "invalid_grant", called: "Renew"},
		{name: "renewal refused: invalid_scope", call: tokenPost(refresh()), err: oauthErr(issuer.CodeInvalidScope),
			status: 400, code: "invalid_scope", called: "Renew"},
		{name: "renewal: revocation state unknown", call: tokenPost(refresh()), err: oauthErr(issuer.CodeTemporarilyUnavailable),
			status: 503, code: "temporarily_unavailable", called: "Renew", header: map[string]string{"Retry-After": "1"}},
		{name: "wrong client secret", call: call{method: "POST", path: "/token", form: exchange(), auth: "bff", badSecret: true},
			status: 401, code: "invalid_client", desc: "client authentication failed"},
		{name: "no client authentication", call: call{method: "POST", path: "/token", form: exchange()}, status: 401, code: "invalid_client"},
		{name: "client_secret_post", call: call{method: "POST", path: "/token", form: exchange("client_id", "bff", "client_secret", goodSecret)},
			resp: tokenOK, status: 200, called: "Exchange"},
		{name: "two client authentication methods", call: basic(call{method: "POST", path: "/token", form: exchange("client_secret", goodSecret)}),
			status: 401, code: "invalid_client"},
		{name: "no grant_type", call: tokenPost(url.Values{"subject_token": {"st"}}), status: 400, code: "invalid_request"},
		{name: "unsupported grant_type", call: tokenPost(url.Values{"grant_type": {"password"}}), status: 400, code: "unsupported_grant_type"},
		{name: "exchange without subject_token", call: tokenPost(url.Values{"grant_type": {issuer.GrantTokenExchange},
			"subject_token_type": {issuer.TokenTypeAccessToken}}), status: 400, code: "invalid_request"},
		{name: "refresh without refresh_token", call: tokenPost(url.Values{"grant_type": {issuer.GrantRefreshToken}}), status: 400, code: "invalid_request"},
		{name: "repeated parameter", call: tokenPost(exchange("subject_token", "again")), status: 400, code: "invalid_request"},
		{name: "JSON instead of a form", call: basic(call{method: "POST", path: "/token", body: `{"grant_type":"refresh_token"}`, ctype: "application/json"}),
			status: 400, code: "invalid_request"},
		{name: "body too large", call: basic(call{method: "POST", path: "/token", body: "a=" + strings.Repeat("b", server.MaxBodyBytes),
			ctype: "application/x-www-form-urlencoded"}), status: 413, code: "invalid_request"},
		{name: "token rate limit per client", call: tokenPost(refresh()), resp: tokenOK, limits: server.Limits{Token: server.Limit{Rate: 0.5, Burst: 1}},
			before: 1, status: 429, code: "temporarily_unavailable", called: "Renew", header: map[string]string{"Retry-After": "2"}},
		{name: "auth failure limit per source", call: call{method: "POST", path: "/token", form: exchange(), auth: "bff", badSecret: true},
			limits: server.Limits{AuthFailures: server.Limit{Rate: 1, Burst: 2}}, before: 2, status: 429, code: "temporarily_unavailable",
			header: map[string]string{"Retry-After": "1", "WWW-Authenticate": ""}},
		{name: "good credentials are not refused by the auth failure limit", call: tokenPost(refresh()), resp: tokenOK,
			limits: server.Limits{AuthFailures: server.Limit{Rate: 1, Burst: 1}}, before: 3, status: 200, called: "Renew,Renew,Renew,Renew"},

		// POST /revoke (RFC 7009).
		{name: "revoke", call: revokePost(url.Values{"token": {"rt"}, "token_type_hint": {"refresh_token"}}), status: 200, called: "Revoke",
			header: map[string]string{"Cache-Control": "no-store"}, checkIssuer: func(t *testing.T, f *fakeIssuer) {
				if a := f.lastArgs(); fmt.Sprint(a) != "[bff rt refresh_token]" {
					t.Errorf("Revoke got %q", a)
				}
			}},
		{name: "revoke refused: unsupported_token_type", call: revokePost(url.Values{"token": {"at"}}), err: oauthErr(issuer.CodeUnsupportedTokenType),
			status: 400, code: "unsupported_token_type", called: "Revoke"},
		{name: "revoke refused: unauthorized_client", call: revokePost(url.Values{"token": {"rt"}}), err: oauthErr(issuer.CodeUnauthorizedClient),
			status: 400, code: "unauthorized_client", called: "Revoke"},
		{name: "revoke refused: invalid_request", call: revokePost(url.Values{}), err: oauthErr(issuer.CodeInvalidRequest),
			status: 400, code: "invalid_request", called: "Revoke"},
		{name: "revoke: store cannot write", call: revokePost(url.Values{"token": {"rt"}}), err: oauthErr(issuer.CodeTemporarilyUnavailable),
			status: 503, code: "temporarily_unavailable", called: "Revoke", header: map[string]string{"Retry-After": "1"}},
		{name: "revoke without client authentication", call: call{method: "POST", path: "/revoke", form: url.Values{"token": {"rt"}}},
			status: 401, code: "invalid_client"},

		// POST /backchannel-logout (OIDC Back-Channel Logout 1.0 §2.8).
		{name: "logout recorded", call: logoutPost, status: 200, called: "RecordLogout", header: map[string]string{"Cache-Control": "no-store"}},
		{name: "logout refused", call: logoutPost, err: oauthErr(issuer.CodeInvalidRequest), status: 400, code: "invalid_request", called: "RecordLogout"},
		{name: "logout not written", call: logoutPost, err: oauthErr(issuer.CodeTemporarilyUnavailable), status: 503,
			code: "temporarily_unavailable", called: "RecordLogout", header: map[string]string{"Retry-After": "1"}},
		{name: "refused logouts over the source's limit", call: logoutPost, err: oauthErr(issuer.CodeInvalidRequest),
			limits: server.Limits{Logout: server.Limit{Rate: 1, Burst: 1}}, before: 1, status: 429, code: "temporarily_unavailable",
			called: "RecordLogout,RecordLogout", header: map[string]string{"Retry-After": "1"}},
		{name: "a valid logout is never limited", call: logoutPost, limits: server.Limits{Logout: server.Limit{Rate: 1, Burst: 1}}, before: 2,
			status: 200, called: "RecordLogout,RecordLogout,RecordLogout"},
		{name: "logout as JSON", call: call{method: "POST", path: "/backchannel-logout", body: `{"logout_token":"lt"}`, ctype: "application/json"},
			status: 400, code: "invalid_request"},

		// Routing, discovery, keys, health.
		{name: "GET /token", call: call{method: "GET", path: "/token"}, status: 405, code: "invalid_request"},
		{name: "unknown route", call: call{method: "GET", path: "/nope"}, status: 404, code: "not_found"},
		{name: "discovery", call: call{method: "GET", path: "/.well-known/openid-configuration"}, status: 200,
			header: map[string]string{"Cache-Control": "public, max-age=300"},
			bodyHas: []string{`"issuer":"https://tg.test/base"`, `"token_endpoint":"https://tg.test/base/token"`,
				`"jwks_uri":"https://tg.test/base/jwks.json"`, `"backchannel_logout_supported":true`, `"delegation_supported":true`,
				`"subject_token_types_supported":["` + issuer.TokenTypeAccessToken + `"]`, `"actor_token_types_supported":["` + issuer.TokenTypeAccessToken + `"]`,
				`"id_token_signing_alg_values_supported":["ES256"]`}},
		{name: "RFC 8414 metadata", call: call{method: "GET", path: "/.well-known/oauth-authorization-server"}, status: 200,
			bodyHas: []string{`"revocation_endpoint":"https://tg.test/base/revoke"`}},
		{name: "JWKS", call: call{method: "GET", path: "/jwks.json"}, status: 200,
			header: map[string]string{"Cache-Control": "public, max-age=300", "Content-Type": "application/json"}, bodyHas: []string{`"kid":"k1"`}},
		{name: "healthz", call: call{method: "GET", path: "/healthz"}, status: 200},
		{name: "readyz", call: call{method: "GET", path: "/readyz"}, status: 200},
		{name: "readyz without a signing key", call: call{method: "GET", path: "/readyz"}, notLoaded: true, status: 503, bodyHas: []string{"no signing key"}},
		{name: "readyz while draining", call: call{method: "GET", path: "/readyz"}, ready: fmt.Errorf("x: %w", server.ErrDraining), status: 503,
			bodyHas: []string{"shutting down"}},
		{name: "readyz while logouts wait for the store", call: call{method: "GET", path: "/readyz"}, ready: issuer.ErrNotWritable, status: 503,
			bodyHas: []string{"store cannot write"}},
		{name: "readyz when the store cannot answer", call: call{method: "GET", path: "/readyz"}, ready: errors.New("etcd: no leader"), status: 503,
			bodyHas: []string{"store unavailable"}, bodyHasnt: []string{"etcd"}},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			fi := &fakeIssuer{err: tc.err, resp: tc.resp}
			cfg := server.Config{Issuer: "https://tg.test/base", JWKSMaxAge: 300 * time.Second, Limits: tc.limits, Logger: quiet}
			if tc.ready != nil {
				cfg.Ready = func(context.Context) error { return tc.ready }
			}
			s, err := server.New(cfg, fi, fakeKeys{loaded: !tc.notLoaded}, nil)
			if err != nil {
				t.Fatal(err)
			}
			h := s.Handler()
			for range tc.before {
				serve(h, tc.call)
			}
			w := serve(h, tc.call)
			checkAnswer(t, w, tc.status, tc.code, tc.desc, tc.header, tc.bodyHas, tc.bodyHasnt)
			if got := fi.lastCall(); got != tc.called {
				t.Errorf("issuer calls %q, want %q", got, tc.called)
			}
			if tc.checkIssuer != nil {
				tc.checkIssuer(t, fi)
			}
		})
	}
}

// serve sends c to h (the issuer's path is /base).
func serve(h http.Handler, c call) *httptest.ResponseRecorder {
	var body io.Reader
	ctype := c.ctype
	switch {
	case c.body != "":
		body = strings.NewReader(c.body)
	case c.form != nil:
		body, ctype = strings.NewReader(c.form.Encode()), "application/x-www-form-urlencoded"
	}
	path := c.path
	if !strings.HasPrefix(path, "/healthz") && !strings.HasPrefix(path, "/readyz") && !strings.HasPrefix(path, "/admin") &&
		!strings.HasPrefix(path, "/.well-known/ssf-configuration") {
		path = "/base" + path // the issuer's path
	}
	req := httptest.NewRequest(c.method, "https://tg.test"+path, body)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.auth != "" {
		secret := goodSecret
		if c.badSecret {
			secret = "wrong-secret"
		}
		req.SetBasicAuth(c.auth, secret)
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	for k, v := range c.reqHeader {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// checkAnswer checks an answer of the public (OAuth) API: status, error member and description,
// and the headers every error carries — no-store, JSON, Pragma, WWW-Authenticate exactly on a
// 401, Retry-After on a 503 and a 429 — then the row's own headers and body.
func checkAnswer(t *testing.T, w *httptest.ResponseRecorder, status int, code, desc string, header map[string]string, has, hasnt []string) {
	t.Helper()
	var body map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	raw := w.Body.String()
	if w.Code != status {
		t.Fatalf("status %d %s, want %d", w.Code, raw, status)
	}
	h := w.Header()
	if code != "" {
		if body["error"] != code || (desc != "" && body["error_description"] != desc) {
			t.Errorf("body %s, want error %q description %q", raw, code, desc)
		}
		if h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" || h.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("error headers %v", h)
		}
		if status == 401 && h.Get("WWW-Authenticate") != `Basic realm="tokengate", error="`+code+`"` {
			t.Errorf("WWW-Authenticate %q on a 401", h.Get("WWW-Authenticate"))
		}
		if (status == 503 || status == 429) && h.Get("Retry-After") == "" {
			t.Errorf("a %d without Retry-After", status)
		}
	} else if _, ok := body["error"]; ok {
		t.Errorf("a %d with an error body: %s", status, raw)
	}
	if status != 401 && h.Get("WWW-Authenticate") != "" {
		t.Errorf("WWW-Authenticate %q on a %d", h.Get("WWW-Authenticate"), status)
	}
	if status != 503 && status != 429 && h.Get("Retry-After") != "" {
		t.Errorf("Retry-After %q on a %d", h.Get("Retry-After"), status)
	}
	for k, v := range header {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, s := range has {
		if !strings.Contains(raw, s) {
			t.Errorf("body %s lacks %s", raw, s)
		}
	}
	for _, s := range hasnt {
		if strings.Contains(raw, s) {
			t.Errorf("body %s holds %s", raw, s)
		}
	}
}

const adminBearer = "admin-token-0123456789-abcdefghijklmnopq"

// fakeAdmin is the issuer, key manager and store behind the admin API; each answers its error.
type fakeAdmin struct {
	revokeErr, rotateErr, keyErr, storeErr error
	revoked                                []keys.RevokedKey // the key manager's revoked keys
}

func (f *fakeAdmin) RevokeSession(_ context.Context, sid, reason string) (store.Revocation, error) {
	return store.Revocation{SID: sid, Reason: reason}, f.revokeErr
}

func (f *fakeAdmin) RevokeSubject(_ context.Context, sub, reason string) (store.Revocation, error) {
	return store.Revocation{Sub: sub, Reason: reason}, f.revokeErr
}

func (f *fakeAdmin) Keys() ([]keys.KeyInfo, []keys.RevokedKey) {
	return []keys.KeyInfo{{ID: "k1", Alg: "ES256", State: "active"}}, f.revoked
}
func (f *fakeAdmin) ActiveKeyID() string    { return "k1" }
func (f *fakeAdmin) ActiveSince() time.Time { return time.Unix(0, 0) }
func (f *fakeAdmin) JWKSJSON() []byte       { return []byte(`{"keys":[]}`) }

func (f *fakeAdmin) Rotate(context.Context, bool) (keys.Change, error) {
	return keys.Change{Activated: "k2"}, f.rotateErr
}

func (f *fakeAdmin) RevokeKey(context.Context, string) (keys.Change, error) {
	return keys.Change{}, f.keyErr
}

func (f *fakeAdmin) SessionRevocation(_ context.Context, sid string) (store.Revocation, error) {
	return store.Revocation{SID: sid, Reason: "backchannel"}, f.storeErr
}

func (f *fakeAdmin) SubjectRevocation(_ context.Context, sub string) (store.Revocation, error) {
	return store.Revocation{Sub: sub}, f.storeErr
}

func (f *fakeAdmin) Stats(context.Context) (store.Stats, error) {
	return store.Stats{Sessions: 1}, f.storeErr
}

// TestAdminHTTPMapping: each admin endpoint's answer for each outcome of its collaborators:
// status, error code (server/openapi/admin.yaml), Cache-Control no-store on every
// authenticated answer and every error, WWW-Authenticate (Bearer) on every 401 and no other.
func TestAdminHTTPMapping(t *testing.T) {
	post := func(path string) call { return call{method: "POST", path: path, auth: "bearer"} }
	get := func(path string) call { return call{method: "GET", path: path, auth: "bearer"} }
	withBody := func(c call, ctype, body string) call { c.ctype, c.body = ctype, body; return c }
	unavailable := errors.New("bolt: timeout")
	for _, tc := range []struct {
		name string
		call
		fake    fakeAdmin
		status  int
		code    string
		bodyHas []string
	}{
		{name: "no token", call: call{method: "POST", path: "/admin/sessions/s1/revoke"}, status: 401, code: "unauthorized"},
		{name: "wrong token", call: call{method: "POST", path: "/admin/sessions/s1/revoke", auth: "bearer", badSecret: true}, status: 401, code: "unauthorized"},
		{name: "basic auth", call: call{method: "GET", path: "/admin/status", auth: "basic"}, status: 401, code: "unauthorized"},
		{name: "status", call: get("/admin/status"), status: 200, bodyHas: []string{`"active_kid":"k1"`, `"sessions":1`}},
		{name: "status: store cannot answer", call: get("/admin/status"), fake: fakeAdmin{storeErr: unavailable}, status: 503, code: "unavailable"},
		{name: "list keys", call: get("/admin/keys"), status: 200, bodyHas: []string{`"kid":"k1"`, `"revoked":[]`}},
		{name: "rotate", call: post("/admin/keys/rotate"), status: 200, bodyHas: []string{`"activated":"k2"`}},
		{name: "rotate too early", call: post("/admin/keys/rotate"), fake: fakeAdmin{rotateErr: fmt.Errorf("%w: published 1s ago", keys.ErrTooEarly)},
			status: 409, code: "too_early"},
		{name: "rotate not stored", call: post("/admin/keys/rotate"), fake: fakeAdmin{rotateErr: unavailable}, status: 503, code: "unavailable"},
		{name: "rotate with an unknown field", call: withBody(post("/admin/keys/rotate"), "application/json", `{"forse":true}`), status: 400, code: "invalid_request"},
		{name: "rotate with trailing data", call: withBody(post("/admin/keys/rotate"), "application/json", `{"force":true} {}`), status: 400, code: "invalid_request"},
		{name: "rotate with a text body", call: withBody(post("/admin/keys/rotate"), "text/plain", "force"), status: 415, code: "invalid_request"},
		{name: "revoke key", call: post("/admin/keys/k1/revoke"), status: 200},
		{name: "revoke an unknown key", call: post("/admin/keys/nope/revoke"), fake: fakeAdmin{keyErr: keys.ErrNoKey}, status: 404, code: "not_found"},
		{name: "key revocation not stored", call: post("/admin/keys/k1/revoke"), fake: fakeAdmin{keyErr: unavailable}, status: 503, code: "unavailable"},
		{name: "session not revoked", call: get("/admin/sessions/s1"), fake: fakeAdmin{storeErr: store.ErrNotFound}, status: 200,
			bodyHas: []string{`"revoked":false`}},
		{name: "session revoked", call: get("/admin/sessions/s1"), status: 200, bodyHas: []string{`"revoked":true`, `"reason":"backchannel"`}},
		{name: "session: store cannot answer", call: get("/admin/sessions/s1"), fake: fakeAdmin{storeErr: unavailable}, status: 503, code: "unavailable"},
		{name: "revoke session", call: post("/admin/sessions/s1/revoke"), status: 200, bodyHas: []string{`"sid":"s1"`, `"reason":"admin:ops"`}},
		{name: "revoke session not stored", call: post("/admin/sessions/s1/revoke"), fake: fakeAdmin{revokeErr: unavailable}, status: 503, code: "unavailable"},
		{name: "revoke session with a body", call: withBody(post("/admin/sessions/s1/revoke"), "application/json", `{"x":1}`), status: 400, code: "invalid_request"},
		{name: "revoke subject", call: post("/admin/subjects/ann/revoke"), status: 200, bodyHas: []string{`"sub":"ann"`, `"reason":"admin:ops"`}},
		{name: "revoke subject not stored", call: post("/admin/subjects/ann/revoke"), fake: fakeAdmin{revokeErr: unavailable}, status: 503, code: "unavailable"},
		{name: "wrong method", call: get("/admin/keys/rotate"), status: 405, code: "method_not_allowed"},
		{name: "unknown route", call: get("/admin/nope"), status: 404, code: "not_found"},
		{name: "body too large", call: withBody(post("/admin/keys/rotate"), "application/json", `{"force":"`+strings.Repeat("a", server.MaxBodyBytes)+`"}`),
			status: 413, code: "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := server.New(server.Config{Issuer: "https://tg.test", Logger: quiet}, &fakeIssuer{}, fakeKeys{loaded: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			fa := tc.fake
			h := server.NewAdmin(server.AdminConfig{Tokens: map[string][32]byte{"ops": sha256.Sum256([]byte(adminBearer))}, Logger: quiet},
				&fa, &fa, &fa, pub, nil).Handler()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req := httptest.NewRequest(tc.method, "https://tg.test"+tc.path, body)
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			switch tok := adminBearer; {
			case tc.auth == "basic":
				req.SetBasicAuth("ops", adminBearer)
			case tc.auth == "bearer" && tc.badSecret:
				req.Header.Set("Authorization", "Bearer "+tok+"x")
			case tc.auth == "bearer":
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			raw, hd := w.Body.String(), w.Header()
			var got map[string]any
			_ = json.Unmarshal(w.Body.Bytes(), &got)
			if w.Code != tc.status || (tc.code != "" && got["error"] != tc.code) || (tc.code == "" && got["error"] != nil) {
				t.Fatalf("%d %s, want %d %q", w.Code, raw, tc.status, tc.code)
			}
			if hd.Get("Content-Type") != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", hd.Get("Content-Type"))
			}
			if hd.Get("Cache-Control") != "no-store" && (tc.code != "" || tc.status == 200) {
				t.Errorf("Cache-Control %q", hd.Get("Cache-Control"))
			}
			if want := map[bool]string{true: `Bearer realm="tokengate-admin"`}[tc.status == 401]; hd.Get("WWW-Authenticate") != want {
				t.Errorf("WWW-Authenticate %q on a %d", hd.Get("WWW-Authenticate"), tc.status)
			}
			// The 413 comes from limitBody, shared with the public listener: it speaks OAuth (Pragma).
			if hd.Get("Retry-After") != "" || (hd.Get("Pragma") != "" && tc.status != 413) {
				t.Errorf("admin answers carry no Retry-After or Pragma: %v", hd)
			}
			for _, s := range tc.bodyHas {
				if !strings.Contains(raw, s) {
					t.Errorf("body %s lacks %s", raw, s)
				}
			}
		})
	}
}
