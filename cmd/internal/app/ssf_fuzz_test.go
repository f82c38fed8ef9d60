package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/verifier/secevent"
)

// pending is the stream's unacknowledged SETs by jti, read with a poll that acknowledges
// nothing.
func pending(t testing.TB, s *stack) []string {
	t.Helper()
	rec := pollRecorder(t.Context(), s, `{"returnImmediately":true,"maxEvents":1000}`, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("read-only poll: %d %s", rec.Code, rec.Body.String())
	}
	var resp secevent.PollResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	var jtis []string
	for j := range resp.Sets {
		jtis = append(jtis, j)
	}
	slices.Sort(jtis)
	return jtis
}

// pollRecorder sends a poll of stream "orders" through the handler. A held poll ends when ctx
// does.
func pollRecorder(ctx context.Context, s *stack, body, prefer string) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "http://tokengate.test/ssf/poll/orders", strings.NewReader(body))
	req.RemoteAddr = "192.0.2.7:4711"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+ordersSecret)
	if prefer != "" {
		req.Header.Set("Prefer", prefer)
	}
	rec := httptest.NewRecorder()
	(*s.handler.Load()).ServeHTTP(rec, req)
	return rec
}

// FuzzSSFPoll sends arbitrary RFC 8936 poll bodies and Prefer headers for an authenticated
// stream: JSON decoding, acknowledgements, setErrs, maxEvents and the hold. Invariants: never a
// panic or a 5xx; a refusal is a 4xx with an error body that acknowledges nothing (the pending
// SETs are the same after it); a 200 carries only SETs signed by the gateway, of JOSE typ
// secevent+jwt, each under its own jti.
func FuzzSSFPoll(f *testing.F) {
	s := newStack(f)
	for i, sid := range []string{"fuzz-poll-1", "fuzz-poll-2", "fuzz-poll-3"} {
		if r := s.logout(s.realm.LogoutToken("fuzz-poller", sid)); r.Status != http.StatusOK {
			f.Fatalf("logout %d: %s", i, r.Raw)
		}
	}
	first := pending(f, s)
	f.Add(`{"returnImmediately":true}`, "")
	f.Add(`{"maxEvents":0,"ack":["`+first[0]+`"]}`, "")
	f.Add(`{"ack":["`+first[0]+`","`+first[0]+`","nope"],"returnImmediately":true}`, "wait=0")
	f.Add(`{"setErrs":{"`+first[1]+`":{"err":"invalid_key","description":"x"}},"returnImmediately":true}`, "")
	f.Add(`{"maxEvents":-1}`, "")
	f.Add(`{"maxEvents":1e3}`, "")
	f.Add(`{"maxEvents":"1"}`, "")
	f.Add(`{"ack":"x"}`, "")
	f.Add(`{"setErrs":[]}`, "")
	f.Add(``, "wait=1")
	f.Add(`{}`, "respond-async, wait=100")
	f.Add(`[`, "wait=-1")
	f.Add(`null`, `wait="2"`)

	f.Fuzz(func(t *testing.T, body, prefer string) {
		if len(body) > 16<<10 || !headerValueOK(prefer) {
			t.Skip("large bodies and unsendable headers are not this target's")
		}
		before := pending(t, s)
		if len(before) == 0 { // everything got acknowledged: give the stream something to serve
			if r := s.logout(s.realm.LogoutToken("fuzz-poller", "fuzz-poll-more-"+time.Now().Format("150405.000000000"))); r.Status != http.StatusOK {
				t.Fatalf("logout: %s", r.Raw)
			}
			before = pending(t, s)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond) // bounds a held poll
		defer cancel()
		rec := pollRecorder(ctx, s, body, prefer)
		if rec.Code >= 500 {
			t.Fatalf("server error %d: %s", rec.Code, rec.Body.String())
		}
		if rec.Code != http.StatusOK {
			var e struct {
				Err   string `json:"err"`
				Error string `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || (e.Err == "" && e.Error == "") {
				t.Fatalf("%d without an error body: %q", rec.Code, rec.Body.String())
			}
			if after := pending(t, s); !slices.Equal(after, before) {
				t.Fatalf("refused poll (%d) changed the pending SETs: %v → %v", rec.Code, before, after)
			}
			return
		}
		var resp secevent.PollResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.Sets == nil {
			t.Fatalf("200 without a sets object: %q", rec.Body.String())
		}
		for jti, tok := range resp.Sets {
			jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatalf("SET %s: %v", jti, err)
			}
			key, err := s.keys.PublicKey(jws.Signatures[0].Protected.KeyID)
			if err != nil {
				t.Fatalf("SET %s: %v", jti, err)
			}
			payload, err := jws.Verify(key)
			if err != nil {
				t.Fatalf("SET %s: %v", jti, err)
			}
			var c secevent.SET
			if err := json.Unmarshal(payload, &c); err != nil || c.JTI != jti {
				t.Fatalf("SET under %s has jti %q (%v)", jti, c.JTI, err)
			}
			if typ, _ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string); typ != "secevent+jwt" {
				t.Fatalf("SET %s has JOSE typ %q", jti, typ)
			}
		}
	})
}
