package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/ssf"
	"github.com/tokengate/tokengate/server"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// fakeSSF is the transmitter behind the public Shared Signals routes; each call answers its
// error.
type fakeSSF struct {
	authErr, streamErr, createErr, deleteErr, pollErr error
}

func (f *fakeSSF) Metadata() secevent.Metadata {
	return secevent.Metadata{Issuer: "https://tg.test/base", DeliveryMethodsSupported: []string{secevent.DeliveryPoll}}
}
func (f *fakeSSF) Authenticate(context.Context, string, string) error { return f.authErr }
func (f *fakeSSF) StreamsFor(context.Context, string) ([]string, error) {
	return []string{"s1"}, f.authErr
}
func (f *fakeSSF) StreamConfiguration(id string) (secevent.StreamConfiguration, error) {
	return secevent.StreamConfiguration{StreamID: id, Audience: secevent.Audience{"search-api"}}, f.streamErr
}
func (f *fakeSSF) Receiver(string) (string, error) { return "search", f.authErr }
func (f *fakeSSF) CreateReceiverStream(_ context.Context, _, _ string) (secevent.StreamConfiguration, error) {
	return secevent.StreamConfiguration{StreamID: "s2", Audience: secevent.Audience{"search-api"}}, f.createErr
}
func (f *fakeSSF) DeleteReceiverStream(context.Context, string, string) error { return f.deleteErr }
func (f *fakeSSF) Poll(context.Context, string, secevent.PollRequest, time.Duration) (secevent.PollResponse, error) {
	return secevent.PollResponse{Sets: map[string]string{"jti-1": "set"}}, f.pollErr
}

// TestSSFHTTPMapping: each Shared Signals endpoint's answer for each outcome of the
// transmitter: status, RFC 8935 §2.3 error code ("err"), Cache-Control no-store,
// WWW-Authenticate (Bearer, invalid_token) on every 401 and no other, Retry-After on every 503
// and 429.
func TestSSFHTTPMapping(t *testing.T) {
	authFailed := &ssf.Error{Code: secevent.CodeAuthenticationFailed, Description: "a valid bearer credential for this stream is required"}
	stream := func(method, path string) call { return call{method: method, path: path, bearer: "cred"} }
	withJSON := func(c call, body string) call { c.body, c.ctype = body, "application/json"; return c }
	poll := withJSON(stream("POST", "/ssf/poll/s1"), `{"returnImmediately":true}`)
	for _, tc := range []struct {
		name string
		call
		fake    fakeSSF
		limits  server.Limits
		before  int
		status  int
		code    string
		header  map[string]string
		bodyHas []string
	}{
		{name: "configuration metadata", call: call{method: "GET", path: "/.well-known/ssf-configuration/base"}, status: 200,
			header: map[string]string{"Cache-Control": "public, max-age=300"}, bodyHas: []string{`"issuer":"https://tg.test/base"`}},
		{name: "one stream", call: stream("GET", "/ssf/streams?stream_id=s1"), status: 200, bodyHas: []string{`"stream_id":"s1"`}},
		{name: "one stream, wrong credential", call: stream("GET", "/ssf/streams?stream_id=s1"), fake: fakeSSF{authErr: authFailed},
			status: 401, code: secevent.CodeAuthenticationFailed},
		{name: "one stream, gone", call: stream("GET", "/ssf/streams?stream_id=s1"), fake: fakeSSF{streamErr: ssf.ErrNoStream},
			status: 404, code: secevent.CodeInvalidRequest},
		{name: "the credential's streams", call: stream("GET", "/ssf/streams"), status: 200, bodyHas: []string{`[{"stream_id":"s1"`}},
		{name: "the credential's streams, wrong credential", call: stream("GET", "/ssf/streams"), fake: fakeSSF{authErr: authFailed},
			status: 401, code: secevent.CodeAuthenticationFailed},
		{name: "create", call: withJSON(stream("POST", "/ssf/streams"), `{"delivery":{"method":"`+secevent.DeliveryPoll+`"}}`), status: 201,
			bodyHas: []string{`"stream_id":"s2"`}},
		{name: "create, not a receiver", call: stream("POST", "/ssf/streams"), fake: fakeSSF{authErr: authFailed}, status: 401, code: secevent.CodeAuthenticationFailed},
		{name: "create, push delivery", call: withJSON(stream("POST", "/ssf/streams"), `{"delivery":{"method":"urn:ietf:rfc:8935"}}`),
			status: 400, code: secevent.CodeInvalidRequest},
		{name: "create, malformed JSON", call: withJSON(stream("POST", "/ssf/streams"), `{`), status: 400, code: secevent.CodeInvalidRequest},
		{name: "create, invalid stream", call: stream("POST", "/ssf/streams"), fake: fakeSSF{createErr: ssf.ErrInvalidStream},
			status: 400, code: secevent.CodeInvalidRequest},
		{name: "create, too many streams", call: stream("POST", "/ssf/streams"), fake: fakeSSF{createErr: ssf.ErrTooManyStreams},
			status: 403, code: secevent.CodeAccessDenied},
		{name: "create, not stored", call: stream("POST", "/ssf/streams"), fake: fakeSSF{createErr: errors.New("bolt: timeout")},
			status: 503, code: ssf.CodeTemporarilyUnavailable, header: map[string]string{"Retry-After": "1"}},
		{name: "delete", call: stream("DELETE", "/ssf/streams?stream_id=s2"), status: 204},
		{name: "delete, not this receiver's", call: stream("DELETE", "/ssf/streams?stream_id=s1"), fake: fakeSSF{deleteErr: ssf.ErrNoStream},
			status: 404, code: secevent.CodeInvalidRequest},
		{name: "delete, not stored", call: stream("DELETE", "/ssf/streams?stream_id=s2"), fake: fakeSSF{deleteErr: errors.New("bolt: timeout")},
			status: 503, code: ssf.CodeTemporarilyUnavailable},
		{name: "poll", call: poll, status: 200, bodyHas: []string{`"jti-1":"set"`}},
		{name: "poll with a shorter hold", call: call{method: "POST", path: "/ssf/poll/s1", bearer: "cred", reqHeader: map[string]string{"Prefer": "wait=3"}},
			status: 200, header: map[string]string{"Preference-Applied": "wait=3"}},
		{name: "poll, wrong credential", call: poll, fake: fakeSSF{authErr: authFailed}, status: 401, code: secevent.CodeAuthenticationFailed},
		{name: "poll, malformed JSON", call: withJSON(stream("POST", "/ssf/poll/s1"), `[`), status: 400, code: secevent.CodeInvalidRequest},
		{name: "poll refused", call: poll, fake: fakeSSF{pollErr: &ssf.Error{Code: secevent.CodeInvalidRequest, Description: "unknown jti"}},
			status: 400, code: secevent.CodeInvalidRequest},
		{name: "poll, log unreadable", call: poll, fake: fakeSSF{pollErr: &ssf.Error{Code: ssf.CodeTemporarilyUnavailable, Description: "later"}},
			status: 503, code: ssf.CodeTemporarilyUnavailable, header: map[string]string{"Retry-After": "1"}},
		{name: "poll, unexpected error", call: poll, fake: fakeSSF{pollErr: errors.New("boom")}, status: 500, code: "server_error"},
		{name: "failed credentials over the source's limit", call: poll, fake: fakeSSF{authErr: authFailed},
			limits: server.Limits{AuthFailures: server.Limit{Rate: 1, Burst: 1}}, before: 1, status: 429, code: ssf.CodeTemporarilyUnavailable,
			header: map[string]string{"Retry-After": "1"}},
		{name: "a right credential is not limited", call: poll, limits: server.Limits{AuthFailures: server.Limit{Rate: 1, Burst: 1}}, before: 3, status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := tc.fake
			s, err := server.New(server.Config{Issuer: "https://tg.test/base", Limits: tc.limits, Logger: quiet}, &fakeIssuer{}, fakeKeys{loaded: true}, &fs)
			if err != nil {
				t.Fatal(err)
			}
			h := s.Handler()
			for range tc.before {
				serve(h, tc.call)
			}
			w := serve(h, tc.call)
			checkSSFAnswer(t, w, tc.status, tc.code, tc.header, tc.bodyHas)
		})
	}
}

// checkSSFAnswer checks an answer of the Shared Signals endpoints.
func checkSSFAnswer(t *testing.T, w *httptest.ResponseRecorder, status int, code string, header map[string]string, has []string) {
	t.Helper()
	raw, h := w.Body.String(), w.Header()
	var body map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	if w.Code != status || (code != "" && body["err"] != code) || (code == "" && body["err"] != nil) {
		t.Fatalf("%d %s, want %d %q", w.Code, raw, status, code)
	}
	if (code != "" || status == 200 || status == 201) && h.Get("Cache-Control") != "no-store" && h.Get("Cache-Control") != "public, max-age=300" {
		t.Errorf("Cache-Control %q", h.Get("Cache-Control"))
	}
	if code != "" && (h.Get("Content-Type") != "application/json; charset=utf-8" || body["description"] == nil || h.Get("Pragma") != "") {
		t.Errorf("error shape %v %s", h, raw)
	}
	if want := map[bool]string{true: `Bearer realm="tokengate-ssf", error="invalid_token"`}[status == 401]; h.Get("WWW-Authenticate") != want {
		t.Errorf("WWW-Authenticate %q on a %d", h.Get("WWW-Authenticate"), status)
	}
	if (status == 503 || status == 429) != (h.Get("Retry-After") != "") {
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
}
