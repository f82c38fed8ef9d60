package app_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokengate/tokengate/cmd/internal/app"
	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
)

// upstreamRecorder is the upstream HTTP client's transport: it keeps the headers of every
// request tokengate sends to Keycloak.
type upstreamRecorder struct {
	mu   sync.Mutex
	reqs []recordedRequest
}

type recordedRequest struct {
	path   string
	header http.Header
}

func (u *upstreamRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	u.mu.Lock()
	u.reqs = append(u.reqs, recordedRequest{path: r.URL.Path, header: r.Header.Clone()})
	u.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// last returns the last request to a path ending in suffix.
func (u *upstreamRecorder) last(t *testing.T, suffix string) recordedRequest {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := len(u.reqs) - 1; i >= 0; i-- {
		if strings.HasSuffix(u.reqs[i].path, suffix) {
			return u.reqs[i]
		}
	}
	t.Fatalf("no upstream request to …%s", suffix)
	return recordedRequest{}
}

// tracedStack is a stack whose spans go to an in-memory exporter and whose calls to Keycloak
// are recorded; configure changes its configuration (nil: tracing defaults).
func tracedStack(t *testing.T, configure func(c *config.Config)) (*stack, *tracetest.InMemoryExporter, *upstreamRecorder) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	rec := &upstreamRecorder{}
	s := newStackOpts(t, stackOptions{configure: configure, appOptions: []app.Option{
		app.WithSpanExporter(exp), app.WithUpstreamClient(&http.Client{Transport: rec}),
	}})
	return s, exp, rec
}

// postWith sends a form as the bff with extra request headers.
func (s *stack) postWith(path string, form url.Values, header http.Header) response {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("bff", bffSecret)
	for k, v := range header {
		req.Header[k] = v
	}
	return s.do(req)
}

// spanTree indexes ended spans.
type spanTree struct {
	t     *testing.T
	spans tracetest.SpanStubs
}

// one returns the only span named name.
func (tr spanTree) one(name string) tracetest.SpanStub {
	tr.t.Helper()
	var found []tracetest.SpanStub
	for _, s := range tr.spans {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		tr.t.Fatalf("%d spans named %q, want 1; spans: %s", len(found), name, tr.names())
	}
	return found[0]
}

// childOf fails unless child's parent is parent (same trace).
func (tr spanTree) childOf(child, parent tracetest.SpanStub) {
	tr.t.Helper()
	if child.Parent.SpanID() != parent.SpanContext.SpanID() || child.SpanContext.TraceID() != parent.SpanContext.TraceID() {
		tr.t.Errorf("span %q is not a child of %q", child.Name, parent.Name)
	}
}

func (tr spanTree) names() string {
	var n []string
	for _, s := range tr.spans {
		n = append(n, s.Name)
	}
	return strings.Join(n, ", ")
}

// attr returns a span's attribute as text ("" when absent).
func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// wantAttrs fails unless s carries every key=value of want.
func wantAttrs(t *testing.T, s tracetest.SpanStub, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := attr(s, k); got != v {
			t.Errorf("span %q: %s = %q, want %q", s.Name, k, got, v)
		}
	}
}

// noSecrets fails if any span's name, attributes, events, links, status, tracestate or
// resource contains one of secrets, or any 16 characters of one.
func noSecrets(t *testing.T, spans tracetest.SpanStubs, secrets map[string]string) {
	t.Helper()
	for _, s := range spans {
		var text []string
		text = append(text, s.Name, s.Status.Description, s.SpanContext.TraceState().String())
		for _, kv := range slices.Concat(s.Attributes, s.Resource.Attributes()) {
			text = append(text, string(kv.Key)+"="+kv.Value.String())
		}
		for _, e := range s.Events {
			text = append(text, e.Name)
			for _, kv := range e.Attributes {
				text = append(text, string(kv.Key)+"="+kv.Value.String())
			}
		}
		for _, l := range s.Links {
			for _, kv := range l.Attributes {
				text = append(text, kv.Value.String())
			}
		}
		all := strings.Join(text, "\n")
		for what, secret := range secrets {
			if leaks(all, secret) {
				t.Errorf("span %q carries (part of) the %s", s.Name, what)
			}
		}
	}
}

// leaks reports whether text contains 16 consecutive characters of secret (all of it when
// shorter).
func leaks(text, secret string) bool {
	const window = 16
	if len(secret) <= window {
		return secret != "" && strings.Contains(text, secret)
	}
	for i := 0; i+window <= len(secret); i++ {
		if strings.Contains(text, secret[i:i+window]) {
			return true
		}
	}
	return false
}

// jwtParts adds a JWT and its signature to secrets.
func jwtParts(secrets map[string]string, what, jwt string) {
	secrets[what] = jwt
	if i := strings.LastIndexByte(jwt, '.'); i > 0 {
		secrets[what+" signature"] = jwt[i+1:]
	}
}

const (
	callerTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerParent = "00f067aa0ba902b7"
)

// TestTracing_SpanTrees: with tracing on, one exchange and one logout (and a renewal, an RFC
// 7009 revoke and the renewal it refuses) are span trees under the request's server span, which
// continues the caller's traceparent; introspection at Keycloak is a client span whose W3C
// traceparent Keycloak receives; the store writes are children of the issuer call that made
// them. No span carries a token, a secret, the user's subject or session id.
func TestTracing_SpanTrees(t *testing.T) {
	s, exp, rec := tracedStack(t, nil)
	const sub, sid = "user-trace-5f0c", "sid-trace-9a1d"
	secrets := map[string]string{"client secret": bffSecret, "upstream client secret": kctest.ClientSecret,
		"subject": sub, "session id": sid}

	// One exchange, continuing the caller's trace.
	subject := s.realm.AccessToken(kctest.Token{Subject: sub, SID: sid, IssuedAt: s.clock.Now()})
	jwtParts(secrets, "subject token", subject)
	r := s.postWith("/token", exchangeForm(subject), http.Header{"Traceparent": {"00-" + callerTrace + "-" + callerParent + "-01"}})
	if r.Status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.Status, r.Raw)
	}
	jwtParts(secrets, "access token", r.str("access_token"))
	secrets["refresh token"] = r.str("refresh_token")
	tr := spanTree{t, exp.GetSpans()}
	srv := tr.one("POST /token")
	if srv.SpanKind != trace.SpanKindServer || srv.SpanContext.TraceID().String() != callerTrace ||
		srv.Parent.SpanID().String() != callerParent || !srv.Parent.IsRemote() {
		t.Errorf("server span %v does not continue the caller's trace (parent %v)", srv.SpanContext, srv.Parent)
	}
	wantAttrs(t, srv, map[string]string{"http.request.method": "POST", "http.route": "/token", "http.response.status_code": "200"})
	ex := tr.one("issuer.Exchange")
	tr.childOf(ex, srv)
	wantAttrs(t, ex, map[string]string{"tokengate.client_id": "bff", "tokengate.outcome": "ok", "tokengate.cached_introspection": "false"})
	in := tr.one("issuer.introspect")
	tr.childOf(in, ex)
	wantAttrs(t, in, map[string]string{"tokengate.introspection": "active"})
	call := tr.one("HTTP POST")
	tr.childOf(call, in)
	if call.SpanKind != trace.SpanKindClient {
		t.Errorf("introspection call kind %v", call.SpanKind)
	}
	got := rec.last(t, "/token/introspect").header.Get("Traceparent")
	if want := "00-" + callerTrace + "-" + call.SpanContext.SpanID().String() + "-01"; got != want {
		t.Errorf("Keycloak got traceparent %q, want %q (the introspection call's span)", got, want)
	}
	noSecrets(t, tr.spans, secrets)

	// A renewal: the server span and the issuer's, no store write, no Keycloak call.
	exp.Reset()
	if r := s.renew(secrets["refresh token"]); r.Status != http.StatusOK {
		t.Fatalf("renew: %d %s", r.Status, r.Raw)
	}
	tr = spanTree{t, exp.GetSpans()}
	if len(tr.spans) != 2 {
		t.Errorf("a renewal made spans %s, want POST /token and issuer.Renew", tr.names())
	}
	tr.childOf(tr.one("issuer.Renew"), tr.one("POST /token"))
	wantAttrs(t, tr.one("issuer.Renew"), map[string]string{"tokengate.client_id": "bff", "tokengate.outcome": "ok"})
	noSecrets(t, tr.spans, secrets)

	// One back-channel logout of another session: the revocation, with the claim of the token's
	// jti, is one store span (one transaction) under the issuer's.
	exp.Reset()
	logoutToken := s.realm.LogoutToken("user-trace-other", "sid-trace-other")
	jwtParts(secrets, "logout token", logoutToken)
	if r := s.logout(logoutToken); r.Status != http.StatusOK {
		t.Fatalf("logout: %d %s", r.Status, r.Raw)
	}
	tr = spanTree{t, exp.GetSpans()}
	srv = tr.one("POST /backchannel-logout")
	if srv.Parent.IsValid() {
		t.Errorf("a logout without traceparent has a parent: %v", srv.Parent)
	}
	lo := tr.one("issuer.RecordLogout")
	tr.childOf(lo, srv)
	wantAttrs(t, lo, map[string]string{"tokengate.outcome": "ok"})
	write := tr.one("store.RecordNewRevocation")
	tr.childOf(write, lo)
	wantAttrs(t, write, map[string]string{"db.system.name": "bbolt", "tokengate.store.recorded": "true",
		"tokengate.store.fresh": "true", "tokengate.revocation.source": "backchannel"})
	if len(tr.spans) != 3 {
		t.Errorf("a logout made spans %s, want POST /backchannel-logout, issuer.RecordLogout and store.RecordNewRevocation", tr.names())
	}
	secrets["other subject"], secrets["other session id"] = "user-trace-other", "sid-trace-other"
	noSecrets(t, tr.spans, secrets)

	// A service polls its stream: the logout's SET is delivered under an ssf.Poll span.
	exp.Reset()
	secrets["stream secret"] = ordersSecret
	pa := poll(t, s.srv.URL, "orders", ordersSecret, `{"returnImmediately":true}`)
	if pa.Status != http.StatusOK || len(pa.Sets) == 0 {
		t.Fatalf("poll: %d %s", pa.Status, pa.Raw)
	}
	for jti, set := range pa.Sets {
		jwtParts(secrets, "SET "+jti, set)
	}
	if pa := poll(t, s.srv.URL, "orders", ordersSecret, ackBody(pa.Sets)); pa.Status != http.StatusOK {
		t.Fatalf("ack poll: %d %s", pa.Status, pa.Raw)
	}
	tr = spanTree{t, exp.GetSpans()}
	var polls []tracetest.SpanStub
	for _, sp := range tr.spans {
		if sp.Name == "ssf.Poll" {
			polls = append(polls, sp)
		}
	}
	if len(polls) != 2 {
		t.Fatalf("spans %s, want two ssf.Poll", tr.names())
	}
	wantAttrs(t, polls[0], map[string]string{"tokengate.ssf.stream_id": "orders", "tokengate.ssf.acks": "0",
		"tokengate.ssf.sets": fmt.Sprint(len(pa.Sets)), "tokengate.ssf.return_immediately": "true"})
	wantAttrs(t, polls[1], map[string]string{"tokengate.ssf.acks": fmt.Sprint(len(pa.Sets))})
	for _, sp := range tr.spans {
		if sp.Name == "POST /ssf/poll/:stream_id" {
			wantAttrs(t, sp, map[string]string{"http.route": "/ssf/poll/:stream_id"})
		}
	}
	noSecrets(t, tr.spans, secrets)

	// RFC 7009 revoke of the exchanged grant, then the renewal it refuses.
	exp.Reset()
	if r := s.post("/revoke", "bff", bffSecret, url.Values{"token": {secrets["refresh token"]}}); r.Status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.Status, r.Raw)
	}
	if r := s.renew(secrets["refresh token"]); r.Status != http.StatusBadRequest {
		t.Fatalf("renew after revoke: %d %s", r.Status, r.Raw)
	}
	tr = spanTree{t, exp.GetSpans()}
	rv := tr.one("issuer.Revoke")
	tr.childOf(rv, tr.one("POST /revoke"))
	tr.childOf(tr.one("store.RecordRevocation"), rv)
	wantAttrs(t, tr.one("store.RecordRevocation"), map[string]string{"tokengate.revocation.source": "revoke"})
	refused := tr.one("issuer.Renew")
	wantAttrs(t, refused, map[string]string{"tokengate.outcome": "refused", "error.type": "invalid_grant",
		"tokengate.reason": "logged_out"})
	if refused.Status.Code != 0 {
		t.Errorf("a refused renewal marks its span failed: %v", refused.Status)
	}
	noSecrets(t, tr.spans, secrets)
}

// TestTracing_CallerCannotChooseSampling: at a tiny sample ratio, requests whose traceparent
// says "sampled" — with a trace id the SDK's ratio sampler would always pick (its low 63 bits
// zero) — are not recorded, and Keycloak is not told they are sampled.
func TestTracing_CallerCannotChooseSampling(t *testing.T) {
	s, exp, rec := tracedStack(t, func(c *config.Config) {
		c.Tracing = config.Tracing{OTLPEndpoint: "http://127.0.0.1:9/v1/traces", SampleRatio: 1e-9}
	})
	hostile := http.Header{"Traceparent": {"00-4bf92f3577b34da60000000000000000-" + callerParent + "-01"}}
	subject := s.realm.AccessToken(kctest.Token{IssuedAt: s.clock.Now()})
	r := s.postWith("/token", exchangeForm(subject), hostile)
	if r.Status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.Status, r.Raw)
	}
	for range 50 {
		if r := s.postWith("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}}, hostile); r.Status != http.StatusOK {
			t.Fatalf("renew: %d %s", r.Status, r.Raw)
		}
	}
	if spans := exp.GetSpans(); len(spans) > 0 {
		t.Errorf("the caller's sampled flag made tokengate record %d spans (first %q)", len(spans), spans[0].Name)
	}
	got := rec.last(t, "/token/introspect").header.Get("Traceparent")
	if !strings.HasPrefix(got, "00-4bf92f3577b34da60000000000000000-") || !strings.HasSuffix(got, "-00") {
		t.Errorf("Keycloak got traceparent %q: want the caller's trace, not sampled", got)
	}
}

// TestTracing_HostileTraceHeaders: malformed or huge traceparent, tracestate and baggage
// headers change nothing: the request is answered as without them, a malformed traceparent
// starts a new trace, a caller's tracestate and baggage reach no span and not Keycloak.
func TestTracing_HostileTraceHeaders(t *testing.T) {
	s, exp, rec := tracedStack(t, nil)
	valid := "00-" + callerTrace + "-" + callerParent + "-01"
	huge := strings.Repeat("a", 8<<10)
	var members []string
	for i := range 100 {
		members = append(members, "k"+strings.Repeat("x", i%40)+"=v"+huge[:200])
	}
	cases := []struct {
		name   string
		header http.Header
		follow bool // the server span continues the caller's trace
	}{
		{"unknown version ff", http.Header{"Traceparent": {"ff-" + callerTrace + "-" + callerParent + "-01"}}, false},
		{"upper-case hex", http.Header{"Traceparent": {"00-" + strings.ToUpper(callerTrace) + "-" + callerParent + "-01"}}, false},
		{"short trace id", http.Header{"Traceparent": {"00-" + callerTrace[:30] + "-" + callerParent + "-01"}}, false},
		{"zero trace id", http.Header{"Traceparent": {"00-" + strings.Repeat("0", 32) + "-" + callerParent + "-01"}}, false},
		{"zero span id", http.Header{"Traceparent": {"00-" + callerTrace + "-" + strings.Repeat("0", 16) + "-01"}}, false},
		{"version 00 with extra field", http.Header{"Traceparent": {valid + "-extra"}}, false},
		{"not hex", http.Header{"Traceparent": {"00-" + strings.Repeat("zz", 16) + "-" + callerParent + "-01"}}, false},
		{"8 KiB traceparent", http.Header{"Traceparent": {valid + huge}}, false},
		{"non-ASCII bytes", http.Header{"Traceparent": {"00-" + strings.Repeat("\xff", 32) + "-" + callerParent + "-01"}}, false},
		{"8 KiB tracestate", http.Header{"Traceparent": {valid}, "Tracestate": {"vendor=" + huge}}, true},
		{"100-member tracestate", http.Header{"Traceparent": {valid}, "Tracestate": {strings.Join(members, ",")}}, true},
		{"valid tracestate", http.Header{"Traceparent": {valid}, "Tracestate": {"vendor=caller-chosen"}}, true},
		{"8 KiB baggage", http.Header{"Traceparent": {valid}, "Baggage": {"user=caller-baggage," + "k=" + huge}}, true},
		{"baggage without traceparent", http.Header{"Baggage": {"user=caller-baggage"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			exp.Reset()
			subject := s.realm.AccessToken(kctest.Token{IssuedAt: s.clock.Now()})
			r := s.postWith("/token", exchangeForm(subject), tc.header)
			if r.Status != http.StatusOK {
				t.Fatalf("exchange: %d %s", r.Status, r.Raw)
			}
			tr := spanTree{t, exp.GetSpans()}
			srv := tr.one("POST /token")
			switch followed := srv.Parent.IsValid(); {
			case followed != tc.follow:
				t.Errorf("server span parent %v; want followed=%v", srv.Parent, tc.follow)
			case !tc.follow && srv.SpanContext.TraceID().String() == callerTrace:
				t.Error("a malformed traceparent's trace id was used")
			}
			for _, sp := range tr.spans {
				if ts := sp.SpanContext.TraceState().String(); ts != "" {
					t.Errorf("span %q carries the caller's tracestate %.40q", sp.Name, ts)
				}
			}
			noSecrets(t, tr.spans, map[string]string{"baggage": "caller-baggage", "tracestate": "caller-chosen",
				"huge header": huge[:64]})
			up := rec.last(t, "/token/introspect").header
			if up.Get("Tracestate") != "" || up.Get("Baggage") != "" {
				t.Errorf("Keycloak got tracestate %.40q, baggage %.40q", up.Get("Tracestate"), up.Get("Baggage"))
			}
			if tp := up.Get("Traceparent"); len(tp) != 55 {
				t.Errorf("Keycloak got traceparent %.80q", tp)
			}
		})
	}
}

// TestTracing_FollowTraceparentOff: with follow_traceparent false a valid traceparent is
// ignored: every request starts its own trace.
func TestTracing_FollowTraceparentOff(t *testing.T) {
	off := false
	s, exp, _ := tracedStack(t, func(c *config.Config) {
		c.Tracing = config.Tracing{OTLPEndpoint: "http://127.0.0.1:9/v1/traces", SampleRatio: 1, FollowTraceparent: &off}
	})
	r := s.postWith("/token", exchangeForm(s.realm.AccessToken(kctest.Token{IssuedAt: s.clock.Now()})),
		http.Header{"Traceparent": {"00-" + callerTrace + "-" + callerParent + "-01"}})
	if r.Status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.Status, r.Raw)
	}
	srv := spanTree{t, exp.GetSpans()}.one("POST /token")
	if srv.Parent.IsValid() || srv.SpanContext.TraceID().String() == callerTrace {
		t.Errorf("follow_traceparent false, yet the span continues the caller's trace: %v", srv.Parent)
	}
}

// TestTracing_OffSendsNothing: without tracing no trace header is sent to Keycloak (the
// upstream client is not wrapped).
func TestTracing_OffSendsNothing(t *testing.T) {
	rec := &upstreamRecorder{}
	s := newStackOpts(t, stackOptions{appOptions: []app.Option{app.WithUpstreamClient(&http.Client{Transport: rec})}})
	r := s.postWith("/token", exchangeForm(s.realm.AccessToken(kctest.Token{IssuedAt: s.clock.Now()})),
		http.Header{"Traceparent": {"00-" + callerTrace + "-" + callerParent + "-01"}, "Baggage": {"a=b"}})
	if r.Status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.Status, r.Raw)
	}
	h := rec.last(t, "/token/introspect").header
	for _, k := range []string{"Traceparent", "Tracestate", "Baggage"} {
		if v := h.Get(k); v != "" {
			t.Errorf("tracing off, yet Keycloak got %s: %q", k, v)
		}
	}
}

// BenchmarkRenewHandlerTraced is BenchmarkRenewHandler with tracing on as in production: the
// OTLP/HTTP exporter, batched, sending to a local collector that discards what it gets, at
// sample ratio 1 (every renewal recorded and exported) and 0.01.
func BenchmarkRenewHandlerTraced(b *testing.B) {
	for _, ratio := range []float64{1, 0.01} {
		b.Run(fmt.Sprintf("sample=%g", ratio), func(b *testing.B) {
			var exports atomic.Int64
			collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				exports.Add(1)
				w.Header().Set("Content-Type", "application/x-protobuf")
			}))
			defer collector.Close()
			s := newStackOpts(b, stackOptions{configure: func(c *config.Config) {
				c.Tracing = config.Tracing{OTLPEndpoint: collector.URL + "/v1/traces", SampleRatio: ratio}
			}})
			r := s.mustExchange("alice", "sid-bench")
			body := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}}.Encode()
			h := *s.handler.Load()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					serveForm(b, h, body)
				}
			})
			b.StopTimer()
			_ = s.app.Close() // flushes the last batch
			if ratio == 1 && exports.Load() == 0 {
				b.Fatal("no span reached the collector")
			}
		})
	}
}
