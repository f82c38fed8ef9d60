package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/ssf"
	"github.com/tokengate/tokengate/internal/testwait"
	"github.com/tokengate/tokengate/verifier"
	"github.com/tokengate/tokengate/verifier/secevent"
)

const (
	ordersSecret   = "orders-stream-secret-0123456789-abcdefgh"
	receiverSecret = "search-receiver-secret-0123456789-abcdef"
)

type pollAnswer struct {
	Status int
	Header http.Header
	Sets   map[string]string `json:"sets"`
	More   bool              `json:"moreAvailable"`
	Err    string            `json:"err"`
	Raw    string
}

// poll sends an RFC 8936 poll for stream with secret.
func poll(t *testing.T, base, stream, secret, body string, header ...string) pollAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/ssf/poll/"+stream, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := pollAnswer{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	_ = json.Unmarshal(raw, &out)
	return out
}

func ackBody(sets map[string]string) string {
	var jtis []string
	for j := range sets {
		jtis = append(jtis, j)
	}
	b, _ := json.Marshal(map[string]any{"ack": jtis, "returnImmediately": true})
	return string(b)
}

// setClaims decodes a SET's payload (signature checked against the JWKS) and its typ.
func setClaims(t *testing.T, s *stack, tok string) (secevent.SET, string) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	key, err := s.keys.PublicKey(jws.Signatures[0].Protected.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		t.Fatal(err)
	}
	var c secevent.SET
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	typ, _ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string)
	return c, typ
}

func TestSSF_MetadataAndStreamConfiguration(t *testing.T) {
	s := newStack(t)
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/.well-known/ssf-configuration", nil)
	md := s.do(req)
	if md.Status != 200 || md.str("issuer") != s.srv.URL || md.str("jwks_uri") != s.srv.URL+"/jwks.json" ||
		md.str("spec_version") != "1_0" || md.str("configuration_endpoint") != s.srv.URL+"/ssf/streams" {
		t.Errorf("ssf-configuration: %d %s", md.Status, md.Raw)
	}
	if !strings.Contains(md.Raw, `"delivery_methods_supported":["urn:ietf:rfc:8936"]`) {
		t.Errorf("delivery methods: %s", md.Raw)
	}
	get := func(query, secret string) response {
		req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/ssf/streams"+query, nil)
		if secret != "" {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		return s.do(req)
	}
	one := get("?stream_id=orders", ordersSecret)
	if one.Status != 200 || one.str("stream_id") != "orders" || one.str("aud") != "orders" || one.str("iss") != s.srv.URL ||
		!strings.Contains(one.Raw, `"endpoint_url":"`+s.srv.URL+`/ssf/poll/orders"`) ||
		!strings.Contains(one.Raw, `"events_delivered":["`+secevent.EventSessionRevoked+`","`+secevent.EventSigningKeyRevoked+`"]`) {
		t.Errorf("stream configuration: %d %s", one.Status, one.Raw)
	}
	if list := get("", ordersSecret); list.Status != 200 || !strings.HasPrefix(list.Raw, `[{"stream_id":"orders"`) {
		t.Errorf("stream list: %d %s", list.Status, list.Raw)
	}
	for name, r := range map[string]response{
		"no credential":    get("?stream_id=orders", ""),
		"wrong credential": get("?stream_id=orders", "wrong"),
		"unknown stream":   get("?stream_id=nope", ordersSecret),
		"list, wrong":      get("", "wrong"),
	} {
		if r.Status != 401 || r.str("err") != secevent.CodeAuthenticationFailed || r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %s", name, r.Status, r.Raw)
		}
	}
}

// TestSSF_EveryLogoutSourceEmitsOneEventInOrder: back-channel, RFC 7009 revoke, recheck and
// admin logouts each produce exactly one SET, in the order they were recorded.
func TestSSF_EveryLogoutSourceEmitsOneEventInOrder(t *testing.T) {
	s := newStack(t)
	s.mustExchange("alice", "sid-bc")
	if r := s.logout(s.realm.LogoutToken("alice", "sid-bc")); r.Status != 200 {
		t.Fatalf("logout: %d %s", r.Status, r.Raw)
	}
	rv := s.mustExchange("bob", "sid-rv")
	if r := s.post("/revoke", "bff", bffSecret, url.Values{"token": {rv.str("refresh_token")}}); r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Raw)
	}
	rc := s.mustExchange("carol", "sid-rc")
	s.realm.EndSession("sid-rc")
	s.clock.Advance(61 * time.Second)
	if r := s.renew(rc.str("refresh_token")); r.str("error") != "invalid_grant" {
		t.Fatalf("recheck: %d %s", r.Status, r.Raw)
	}
	if _, err := s.issuer.RevokeSubject(context.Background(), "dave", "admin:ops"); err != nil {
		t.Fatal(err)
	}
	if r := s.logout(s.realm.LogoutToken("erin", "")); r.Status != 200 { // sub-only back-channel logout
		t.Fatalf("sub-only logout: %d %s", r.Status, r.Raw)
	}
	// A refused logout records nothing.
	if r := s.logout("not-a-logout-token"); r.Status != 400 {
		t.Fatalf("bad logout: %d", r.Status)
	}

	got := poll(t, s.srv.URL, "orders", ordersSecret, `{"returnImmediately":true}`)
	if got.Status != 200 || len(got.Sets) != 5 {
		t.Fatalf("poll: %d, %d SETs, want 5: %s", got.Status, len(got.Sets), got.Raw)
	}
	type row struct {
		seq                            string
		session, user, entity, typ, au string
	}
	var rows []row
	for jti, tok := range got.Sets {
		c, typ := setClaims(t, s, tok)
		seq, _, _ := strings.Cut(jti, "-")
		ev, _, _ := c.Event(secevent.EventSessionRevoked)
		r := row{seq: seq, entity: ev.InitiatingEntity, typ: typ, au: strings.Join(c.Audience, " ")}
		if c.SubID.Session != nil {
			r.session, r.user = c.SubID.Session.ID, c.SubID.User.Sub
		} else {
			r.user = c.SubID.Sub
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].seq < rows[j].seq })
	want := []row{
		{"1", "sid-bc", "alice", "system", "secevent+jwt", "orders"},
		{"2", "sid-rv", "bob", "user", "secevent+jwt", "orders"},
		{"3", "sid-rc", "carol", "system", "secevent+jwt", "orders"},
		{"4", "", "dave", "admin", "secevent+jwt", "orders"},
		{"5", "", "erin", "system", "secevent+jwt", "orders"},
	}
	for i := range want {
		if i >= len(rows) || rows[i] != want[i] {
			t.Errorf("SETs in order:\n got %+v\nwant %+v", rows, want)
			break
		}
	}
}

// TestSSF_BackchannelLogoutWakesALongPoll: a held poll answers as soon as the logout is recorded.
func TestSSF_BackchannelLogoutWakesALongPoll(t *testing.T) {
	s := newStack(t)
	s.mustExchange("alice", "sid-1")
	done := make(chan pollAnswer, 1)
	go func() { done <- poll(t, s.srv.URL, "orders", ordersSecret, `{}`) }()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if r := s.logout(s.realm.LogoutToken("alice", "sid-1")); r.Status != 200 {
		t.Fatalf("logout: %d %s", r.Status, r.Raw)
	}
	select {
	case got := <-done:
		if len(got.Sets) != 1 {
			t.Fatalf("poll: %s", got.Raw)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("SET arrived %s after the logout's 200", d)
		}
		// Acknowledged: the next short poll is empty.
		if next := poll(t, s.srv.URL, "orders", ordersSecret, ackBody(got.Sets)); len(next.Sets) != 0 {
			t.Errorf("after ack: %s", next.Raw)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("the held poll did not answer")
	}
}

func TestSSF_PollRefusesBadRequests(t *testing.T) {
	s := newStack(t)
	cases := []struct {
		name, stream, secret, body, ctype string
		status                            int
		code                              string
	}{
		{"no credential", "orders", "", `{}`, "application/json", 401, "authentication_failed"},
		{"wrong credential", "orders", "wrong", `{}`, "application/json", 401, "authentication_failed"},
		{"unknown stream", "billing", ordersSecret, `{}`, "application/json", 401, "authentication_failed"},
		{"malformed JSON", "orders", ordersSecret, `{"ack":`, "application/json", 400, "invalid_request"},
		{"wrong types", "orders", ordersSecret, `{"maxEvents":"ten"}`, "application/json", 400, "invalid_request"},
		{"negative maxEvents", "orders", ordersSecret, `{"maxEvents":-1}`, "application/json", 400, "invalid_request"},
		{"form body", "orders", ordersSecret, `ack=1`, "application/x-www-form-urlencoded", 415, "invalid_request"},
		{"huge body", "orders", ordersSecret, `{"ack":["` + strings.Repeat("x", 70<<10) + `"]}`, "application/json", 413, ""}, // refused by the listener-wide body limit
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := poll(t, s.srv.URL, c.stream, c.secret, c.body, "Content-Type", c.ctype)
			if got.Status != c.status || (c.code != "" && got.Err != c.code) {
				t.Errorf("%d %s, want %d %s", got.Status, got.Raw, c.status, c.code)
			}
		})
	}
	// An empty body is a default poll; Prefer: wait bounds the hold.
	start := time.Now()
	got := poll(t, s.srv.URL, "orders", ordersSecret, "", "Prefer", "wait=1")
	if got.Status != 200 || got.Sets == nil || got.Header.Get("Preference-Applied") != "wait=1" {
		t.Errorf("empty-body poll: %d %s %v", got.Status, got.Raw, got.Header)
	}
	if d := time.Since(start); d < time.Second || d > 3*time.Second {
		t.Errorf("Prefer: wait=1 held the poll %s", d)
	}
}

// TestSSF_LongPollOutlivesListenerTimeouts: the public listener's read and write timeouts are
// shorter than a long poll; the poll handler extends its own connection's deadlines.
func TestSSF_LongPollOutlivesListenerTimeouts(t *testing.T) {
	s := newStack(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*s.handler.Load()).ServeHTTP(w, r)
	}), ReadTimeout: 300 * time.Millisecond, WriteTimeout: 400 * time.Millisecond}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	base := "http://" + ln.Addr().String()
	done := make(chan pollAnswer, 1)
	start := time.Now()
	go func() { done <- poll(t, base, "orders", ordersSecret, `{}`, "Prefer", "wait=6") }()
	time.Sleep(time.Second) // past both listener timeouts
	s.mustExchange("alice", "sid-late")
	if r := s.logout(s.realm.LogoutToken("alice", "sid-late")); r.Status != 200 {
		t.Fatal(r.Raw)
	}
	got := <-done
	if got.Status != 200 || len(got.Sets) != 1 {
		t.Errorf("poll held past the listener timeouts: %d %q after %s", got.Status, got.Raw, time.Since(start))
	}
}

func TestSSF_AdminStreams(t *testing.T) {
	s := newStack(t)
	srv, logs := newAdmin(t, s)

	if r := adminCall(t, srv, "GET", "/admin/streams", "", "", ""); r.Status != 401 {
		t.Errorf("list without token: %d", r.Status)
	}
	created := adminCall(t, srv, "POST", "/admin/streams", adminToken, "application/json", `{"stream_id":"search","description":"search API"}`)
	secret := created.str("secret")
	if created.Status != 201 || len(secret) < 32 {
		t.Fatalf("create: %d %s", created.Status, created.Raw)
	}
	// The new stream polls with its secret and gets the events recorded since.
	s.mustExchange("alice", "sid-s")
	s.logout(s.realm.LogoutToken("alice", "sid-s"))
	if got := poll(t, s.srv.URL, "search", secret, `{"returnImmediately":true}`); got.Status != 200 || len(got.Sets) != 1 {
		t.Errorf("poll of the created stream: %d %s", got.Status, got.Raw)
	}
	hash := sha256.Sum256([]byte("given-secret"))
	hexHash := hex.EncodeToString(hash[:])
	cases := []struct {
		name, method, path, body string
		status                   int
	}{
		{"duplicate id", "POST", "/admin/streams", `{"stream_id":"orders"}`, 409},
		{"bad id", "POST", "/admin/streams", `{"stream_id":"a/b"}`, 400},
		{"bad hash", "POST", "/admin/streams", `{"stream_id":"x","secret_sha256":"abc"}`, 400},
		{"unknown field", "POST", "/admin/streams", `{"stream":"x"}`, 400},
		{"given hash", "POST", "/admin/streams", `{"stream_id":"given","aud":"given-api","secret_sha256":"` + hexHash + `"}`, 201},
		{"show", "GET", "/admin/streams/search", "", 200},
		{"show unknown", "GET", "/admin/streams/nope", "", 404},
		{"delete configured", "DELETE", "/admin/streams/orders", "", 409},
		{"delete", "DELETE", "/admin/streams/search", "", 204},
		{"delete again", "DELETE", "/admin/streams/search", "", 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctype := ""
			if c.body != "" {
				ctype = "application/json"
			}
			if r := adminCall(t, srv, c.method, c.path, adminToken, ctype, c.body); r.Status != c.status {
				t.Errorf("%d %s, want %d", r.Status, r.Raw, c.status)
			}
		})
	}
	if got := poll(t, s.srv.URL, "given", "given-secret", `{"returnImmediately":true}`); got.Status != 200 {
		t.Errorf("stream created with a given hash: %d %s", got.Status, got.Raw)
	}
	list := adminCall(t, srv, "GET", "/admin/streams", adminToken, "", "")
	if list.Status != 200 || !strings.Contains(list.Raw, `"stream_id":"given"`) || !strings.Contains(list.Raw, `"stream_id":"orders"`) ||
		strings.Contains(list.Raw, `"stream_id":"search"`) || strings.Contains(list.Raw, "secret") {
		t.Errorf("list: %s", list.Raw)
	}
	for _, want := range []string{`"action":"streams.create","target":"search"`, `"action":"streams.delete","target":"search"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Error("the generated secret reached the log")
	}
}

// TestSSF_VerifierEnforcesLogout: the verifier package, against this server, accepts the
// internal token and refuses it within milliseconds of the back-channel logout's 200.
func TestSSF_VerifierEnforcesLogout(t *testing.T) {
	s := newStack(t)
	v, err := verifier.New(context.Background(), verifier.Config{Issuer: s.srv.URL, Audience: "demo-service",
		StreamSecret: ordersSecret, Logger: slog.New(slog.DiscardHandler), Now: s.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	r := s.mustExchange("alice", "sid-v")
	other := s.mustExchange("alice", "sid-w")
	ctx := context.Background()
	if _, err := v.Verify(ctx, r.str("access_token")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the verifier's poll is waiting
	if got := s.logout(s.realm.LogoutToken("alice", "sid-v")); got.Status != 200 {
		t.Fatal(got.Raw)
	}
	acked := time.Now()
	for {
		_, err := v.Verify(ctx, r.str("access_token"))
		if errors.Is(err, verifier.ErrRevoked) {
			break
		}
		if time.Since(acked) > 2*time.Second {
			t.Fatalf("still accepted 2s after the logout: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	if d := time.Since(acked); d > 500*time.Millisecond {
		t.Errorf("refused %s after the logout's 200", d)
	}
	if _, err := v.Verify(ctx, other.str("access_token")); err != nil {
		t.Errorf("the user's other session: %v", err)
	}
}

// TestSSF_ReceiverCreatesAndDeletesItsStream: with a receiver credential a service process
// creates its own stream (SSF 1.0 §8.1.1.1), which starts with the events still in the log,
// lists and polls it, and deletes it.
func TestSSF_ReceiverCreatesAndDeletesItsStream(t *testing.T) {
	s := newStack(t)
	s.mustExchange("alice", "sid-early")
	s.logout(s.realm.LogoutToken("alice", "sid-early"))
	call := func(method, query, secret, ctype, body string) response {
		req, _ := http.NewRequest(method, s.srv.URL+"/ssf/streams"+query, strings.NewReader(body))
		if secret != "" {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		return s.do(req)
	}
	created := call("POST", "", receiverSecret, "application/json", `{"delivery":{"method":"urn:ietf:rfc:8936"},"description":"pod-1"}`)
	id := created.str("stream_id")
	if created.Status != 201 || !strings.HasPrefix(id, "search.") || created.str("aud") != "search-api" ||
		!strings.Contains(created.Raw, `"endpoint_url":"`+s.srv.URL+`/ssf/poll/`+id+`"`) || !strings.Contains(created.Raw, `"inactivity_timeout":600`) {
		t.Fatalf("create: %d %s", created.Status, created.Raw)
	}
	for name, r := range map[string]response{
		"stream secret":  call("POST", "", ordersSecret, "", ""),
		"no credential":  call("POST", "", "", "", ""),
		"push delivery":  call("POST", "", receiverSecret, "application/json", `{"delivery":{"method":"urn:ietf:rfc:8935","endpoint_url":"https://x"}}`),
		"form body":      call("POST", "", receiverSecret, "application/x-www-form-urlencoded", `a=b`),
		"delete foreign": call("DELETE", "?stream_id=orders", receiverSecret, "", ""),
	} {
		if r.Status < 400 || r.str("err") == "" {
			t.Errorf("%s: %d %s", name, r.Status, r.Raw)
		}
	}
	if list := call("GET", "", receiverSecret, "", ""); list.Status != 200 || !strings.Contains(list.Raw, `"stream_id":"`+id+`"`) {
		t.Errorf("list: %d %s", list.Status, list.Raw)
	}
	got := poll(t, s.srv.URL, id, receiverSecret, `{"returnImmediately":true}`)
	if got.Status != 200 || len(got.Sets) != 1 {
		t.Errorf("a new stream gets the logout recorded before it: %d %s", got.Status, got.Raw)
	}
	for jti, tok := range got.Sets {
		if c, _ := setClaims(t, s, tok); !c.Audience.Is("search-api") || c.JTI != jti {
			t.Errorf("SET aud %q jti %q", []string(c.Audience), c.JTI)
		}
	}
	if r := call("DELETE", "?stream_id="+id, receiverSecret, "", ""); r.Status != 204 {
		t.Errorf("delete: %d %s", r.Status, r.Raw)
	}
	if r := call("DELETE", "?stream_id="+id, receiverSecret, "", ""); r.Status != 404 {
		t.Errorf("delete again: %d %s", r.Status, r.Raw)
	}
	if got := poll(t, s.srv.URL, id, receiverSecret, `{"returnImmediately":true}`); got.Status != 401 {
		t.Errorf("poll of a deleted stream: %d", got.Status)
	}
}

// TestSSF_VerifierOwnStreams: two processes of one service, each with its own stream, both
// enforce a logout; a process started after a logout refuses that session's token from its
// first poll; Close deletes the process's stream.
func TestSSF_VerifierOwnStreams(t *testing.T) {
	s := newStack(t)
	tx := s.tx
	ctx := context.Background()
	start := func() *verifier.Verifier {
		v, err := verifier.New(ctx, verifier.Config{Issuer: s.srv.URL, Audience: "demo-service", StreamSecret: receiverSecret,
			OwnStream: true, Logger: slog.New(slog.DiscardHandler), Now: s.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	refused := func(v *verifier.Verifier, tok string) bool {
		_, err := v.Verify(ctx, tok)
		return errors.Is(err, verifier.ErrRevoked)
	}
	wait := func(what string, cond func() bool) { t.Helper(); testwait.Eventually(t, 3*time.Second, what, cond) }
	early := s.mustExchange("alice", "sid-early").str("access_token")
	s.logout(s.realm.LogoutToken("alice", "sid-early"))

	a, b := start(), start()
	wait("a process started after the logout refuses its token", func() bool { return refused(a, early) && refused(b, early) })
	late := s.mustExchange("bob", "sid-late").str("access_token")
	s.logout(s.realm.LogoutToken("bob", "sid-late"))
	wait("both processes refuse", func() bool { return refused(a, late) && refused(b, late) })

	own := 0
	for _, st := range tx.Streams() {
		if st.Source == ssf.SourceReceiver {
			own++
		}
	}
	if own != 2 {
		t.Errorf("%d receiver streams, want 2", own)
	}
	for _, v := range []*verifier.Verifier{a, b} {
		if err := v.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	for _, st := range tx.Streams() {
		if st.Source == ssf.SourceReceiver {
			t.Errorf("stream %s left after Close", st.ID)
		}
	}
}

// TestSSF_AuthFailuresAreLimitedPerSource: failed stream credentials count against the
// source's authentication-failure budget like the token endpoint's; once it is spent the
// source's failures get 429 (an unknown stream id too), and a right credential is served.
func TestSSF_AuthFailuresAreLimitedPerSource(t *testing.T) {
	s := newStackOpts(t, stackOptions{configure: func(c *config.Config) {
		c.Limits.AuthFailures = &config.Limit{Rate: 0.01, Burst: 3}
	}})
	for i := range 3 {
		if a := poll(t, s.srv.URL, "orders", "wrong-secret", `{"returnImmediately":true}`); a.Status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d %s", i, a.Status, a.Raw)
		}
	}
	a := poll(t, s.srv.URL, "no-such-stream-"+strconv.Itoa(3), ordersSecret, `{"returnImmediately":true}`)
	if a.Status != http.StatusTooManyRequests || a.Header.Get("Retry-After") == "" {
		t.Fatalf("after the failure budget: %d %s, want 429 with Retry-After", a.Status, a.Raw)
	}
	if a := poll(t, s.srv.URL, "orders", ordersSecret, `{"returnImmediately":true}`); a.Status != http.StatusOK {
		t.Fatalf("the right credential from a source over its failure budget: %d %s, want 200", a.Status, a.Raw)
	}
	if a := poll(t, s.srv.URL, "orders", "wrong-secret", `{"returnImmediately":true}`); a.Status != http.StatusTooManyRequests {
		t.Fatalf("a wrong one after it: %d, want 429", a.Status)
	}
}
