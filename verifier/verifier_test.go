package verifier_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/verifier"
	"github.com/tokengate/tokengate/verifier/ginverifier"
)

func newVerifier(t testing.TB, g *fakeGateway, edit ...func(*verifier.Config)) *verifier.Verifier {
	t.Helper()
	cfg := verifier.Config{Issuer: g.URL(), Audience: serviceAud, StreamSecret: streamSecret,
		Logger: slog.New(slog.DiscardHandler)}
	for _, e := range edit {
		e(&cfg)
	}
	v, err := verifier.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// eventually waits until cond holds or fails after 5s.
func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 5*time.Second {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s: not within 5s", what)
	return 0
}

func TestVerify_InternalTokensOnly(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g, func(c *verifier.Config) { c.DisableFeed = true })
	now := time.Now()
	tok, err := v.Verify(context.Background(), g.AccessToken("alice", "sid-1", now))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Subject != "alice" || tok.SessionID != "sid-1" || tok.ClientID != "bff" || !tok.HasScope("orders:read") ||
		tok.Issuer != g.URL() || tok.IssuedAt.Unix() != now.Unix() {
		t.Errorf("token = %+v", tok)
	}

	foreign, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forge := func(typ, kid string, claims map[string]any) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: foreign},
			(&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", kid))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(claims)
		obj, _ := s.Sign(b)
		out, _ := obj.CompactSerialize()
		return out
	}
	claims := map[string]any{"iss": g.URL(), "sub": "alice", "aud": serviceAud, "exp": now.Add(time.Minute).Unix(), "iat": now.Unix()}
	hs := func() string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")},
			(&jose.SignerOptions{}).WithType("at+jwt"))
		b, _ := json.Marshal(claims)
		obj, _ := s.Sign(b)
		out, _ := obj.CompactSerialize()
		return out
	}()
	good := g.AccessToken("alice", "sid-1", now)
	parts := strings.Split(good, ".")
	for name, raw := range map[string]string{
		"empty":              "",
		"garbage":            "a.b.c",
		"tampered payload":   parts[0] + "." + parts[1] + "x." + parts[2],
		"foreign key":        forge("at+jwt", g.km.ActiveKeyID(), claims),
		"HS256":              hs,
		"typ JWT":            g.Sign("JWT", claims),
		"SET as token":       g.Sign("secevent+jwt", claims),
		"other audience":     g.AccessToken("alice", "sid-1", now, func(c map[string]any) { c["aud"] = "payments" }),
		"other issuer":       g.AccessToken("alice", "sid-1", now, func(c map[string]any) { c["iss"] = "https://evil.test" }),
		"expired":            g.AccessToken("alice", "sid-1", now.Add(-time.Hour)),
		"no sub":             g.AccessToken("", "sid-1", now),
		"alg none":           "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0." + parts[1] + ".",
		"unsigned two parts": parts[0] + "." + parts[1],
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := v.Verify(context.Background(), raw); !errors.Is(err, verifier.ErrInvalidToken) {
				t.Errorf("Verify = %v, want ErrInvalidToken", err)
			}
		})
	}
}

// TestFeed_RevocationsApplyAtOnce: a session revocation refuses that session's tokens within
// milliseconds of the SET being served; a user revocation refuses the user's tokens issued
// until then, and not those issued after.
func TestFeed_RevocationsApplyAtOnce(t *testing.T) {
	g := newFakeGateway(t)
	var applied sync.WaitGroup
	v := newVerifier(t, g, func(c *verifier.Config) { c.OnRevocation = func(verifier.Revocation) { applied.Done() } })
	ctx := context.Background()
	now := time.Now().Add(-10 * time.Second)
	s1 := g.AccessToken("alice", "sid-1", now)
	s2 := g.AccessToken("alice", "sid-2", now)
	bob := g.AccessToken("bob", "sid-3", now)
	for _, tok := range []string{s1, s2, bob} {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	applied.Add(1)
	g.Send("1-a", g.Sign("secevent+jwt", g.RevokedSET("1-a", "alice", "sid-1", now.Add(time.Second))))
	d := eventually(t, "session revoked", func() bool { _, err := v.Verify(ctx, s1); return errors.Is(err, verifier.ErrRevoked) })
	if d > 500*time.Millisecond {
		t.Errorf("revocation took %s", d)
	}
	applied.Wait()
	if _, err := v.Verify(ctx, s2); err != nil {
		t.Errorf("the user's other session must stay valid: %v", err)
	}
	// Subject-wide: bob's tokens issued up to the revocation die; a later login lives.
	applied.Add(1)
	g.Send("2-b", g.Sign("secevent+jwt", g.RevokedSET("2-b", "bob", "", now.Add(2*time.Second))))
	eventually(t, "user revoked", func() bool { _, err := v.Verify(ctx, bob); return errors.Is(err, verifier.ErrRevoked) })
	if _, err := v.Verify(ctx, g.AccessToken("bob", "sid-4", now.Add(3*time.Second))); err != nil {
		t.Errorf("a login after the user's revocation must be accepted: %v", err)
	}
	acked, refused := g.Settled()
	if len(acked) != 2 || len(refused) != 0 {
		t.Errorf("acked %v refused %v", acked, refused)
	}
	if st := v.Status(); !st.Connected || st.RevokedSessions != 1 || st.RevokedSubjects != 1 || st.Applied != 2 {
		t.Errorf("status = %+v", st)
	}
}

// TestVerifySET_Refusals: bad signature, wrong aud, replayed jti, unknown event type and the
// other malformed SETs are refused (reported in setErrs with their code, never applied);
// a replay is acknowledged but not applied again.
func TestVerifySET_Refusals(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g)
	ctx := context.Background()
	now := time.Now()
	foreign, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := func(claims map[string]any) string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: foreign},
			(&jose.SignerOptions{}).WithType("secevent+jwt").WithHeader("kid", g.km.ActiveKeyID()))
		b, _ := json.Marshal(claims)
		obj, _ := s.Sign(b)
		out, _ := obj.CompactSerialize()
		return out
	}
	set := func(jti string, edit func(map[string]any)) map[string]any {
		c := g.RevokedSET(jti, "alice", "sid-"+jti, now)
		if edit != nil {
			edit(c)
		}
		return c
	}
	cases := []struct {
		name, jti, raw, code string
	}{
		{"bad signature", "j-sig", forged(set("j-sig", nil)), "invalid_key"},
		{"wrong aud", "j-aud", g.Sign("secevent+jwt", set("j-aud", func(c map[string]any) { c["aud"] = "payments-stream" })), "invalid_audience"},
		{"unknown event type", "j-evt", g.Sign("secevent+jwt", set("j-evt", func(c map[string]any) {
			c["events"] = map[string]any{"https://schemas.openid.net/secevent/risc/event-type/account-disabled": map[string]any{}}
		})), "invalid_request"},
		{"wrong typ", "j-typ", g.Sign("JWT", set("j-typ", nil)), "invalid_request"},
		{"access token typ", "j-at", g.Sign("at+jwt", set("j-at", nil)), "invalid_request"},
		{"other issuer", "j-iss", g.Sign("secevent+jwt", set("j-iss", func(c map[string]any) { c["iss"] = "https://evil.test" })), "invalid_issuer"},
		{"carries sub", "j-sub", g.Sign("secevent+jwt", set("j-sub", func(c map[string]any) { c["sub"] = "alice" })), "invalid_request"},
		{"carries exp", "j-exp", g.Sign("secevent+jwt", set("j-exp", func(c map[string]any) { c["exp"] = now.Add(time.Hour).Unix() })), "invalid_request"},
		{"foreign user issuer", "j-ui", g.Sign("secevent+jwt", set("j-ui", func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "iss_sub", "iss": "https://evil.test", "sub": "alice"}
		})), "invalid_request"},
		{"no subject", "j-ns", g.Sign("secevent+jwt", set("j-ns", func(c map[string]any) { delete(c, "sub_id") })), "invalid_request"},
		{"jti differs from key", "j-key", g.Sign("secevent+jwt", set("j-other", nil)), "invalid_request"},
	}
	for _, c := range cases {
		g.Send(c.jti, c.raw)
	}
	// One good SET, then the same jti again (a replay).
	good := g.Sign("secevent+jwt", g.RevokedSET("j-good", "alice", "sid-good", now))
	g.Send("j-good", good)
	g.Settled()
	g.Send("j-good", g.Sign("secevent+jwt", g.RevokedSET("j-good", "alice", "sid-replayed", now)))
	acked, refused := g.Settled()

	for _, c := range cases {
		if refused[c.jti] != c.code {
			t.Errorf("%s: refused with %q, want %q", c.name, refused[c.jti], c.code)
		}
	}
	if n := strings.Count(strings.Join(acked, " "), "j-good"); n != 2 || len(acked) != 2 {
		t.Errorf("acked %v, want j-good twice (the replay acknowledged, not applied)", acked)
	}
	if st := v.Status(); st.Applied != 1 || st.RevokedSessions != 1 || st.Refused != uint64(len(cases)) {
		t.Errorf("status = %+v, want 1 applied, %d refused", st, len(cases))
	}
	if _, err := v.Verify(ctx, g.AccessToken("alice", "sid-replayed", now)); err != nil {
		t.Errorf("the replayed SET's content was applied: %v", err)
	}
	if _, err := v.VerifySET(ctx, good); !errors.Is(err, verifier.ErrReplayedSET) {
		t.Errorf("VerifySET of an applied SET = %v, want ErrReplayedSET", err)
	}
	// Stream management events verify and revoke nothing.
	ver := g.Sign("secevent+jwt", map[string]any{"iss": g.URL(), "aud": setAud, "jti": "v-1", "iat": now.Unix(),
		"sub_id": map[string]any{"format": "opaque", "id": "orders"},
		"events": map[string]any{"https://schemas.openid.net/secevent/ssf/event-type/verification": map[string]any{"state": "x"}}})
	if r, err := v.VerifySET(ctx, ver); err != nil || r != nil {
		t.Errorf("verification event = %+v, %v", r, err)
	}
}

// TestVerifySET_KeysUnreachableIsRetried: a SET signed by a key the verifier has not fetched
// yet, while the JWKS is down, is neither acknowledged nor refused; it is applied once the
// JWKS answers (and the refetch interval since the failed fetch has passed).
func TestVerifySET_KeysUnreachableIsRetried(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g, func(c *verifier.Config) { c.JWKSRefetchInterval = 500 * time.Millisecond })
	ctx := context.Background()
	now := time.Now()
	signWithUnfetchedKey(t, g, v)
	g.jwksDown.Store(true)
	g.Send("k-1", g.Sign("secevent+jwt", g.RevokedSET("k-1", "alice", "sid-1", now)))
	time.Sleep(300 * time.Millisecond)
	if !g.Queued("k-1") { // an acknowledgement or a refusal takes it off the queue
		t.Fatal("with the JWKS down the SET was settled")
	}
	g.jwksDown.Store(false)
	eventually(t, "applied after the JWKS came back", func() bool {
		_, err := v.Verify(ctx, g.AccessToken("alice", "sid-1", now))
		return errors.Is(err, verifier.ErrRevoked)
	})
}

// signWithUnfetchedKey has v fetch the gateway's JWKS, then rotates the gateway's key twice so
// that it signs with a key v has not seen (the next key was published, and fetched, already).
func signWithUnfetchedKey(t *testing.T, g *fakeGateway, v *verifier.Verifier) {
	t.Helper()
	ctx := context.Background()
	if _, err := v.Verify(ctx, g.AccessToken("alice", "sid-0", time.Now())); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := g.km.Rotate(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVerify_NewKeyAfterAFailedFetch: a token signed with a key the verifier has not fetched
// yet, whose JWKS fetch fails, is refused without a retry, and so is every such token until
// the refetch interval has passed, without another fetch; the first one after it fetches the
// JWKS again and is accepted.
func TestVerify_NewKeyAfterAFailedFetch(t *testing.T) {
	const interval = 300 * time.Millisecond
	g := newFakeGateway(t)
	v := newVerifier(t, g, func(c *verifier.Config) { c.DisableFeed = true; c.JWKSRefetchInterval = interval })
	ctx := context.Background()
	now := time.Now()
	signWithUnfetchedKey(t, g, v)
	g.jwksFail.Store(1)
	before := g.jwksGets.Load()
	for i := range 3 {
		if _, err := v.Verify(ctx, g.AccessToken("alice", "sid-1", now)); !errors.Is(err, verifier.ErrInvalidToken) {
			t.Fatalf("try %d with the JWKS fetch failed: %v, want ErrInvalidToken", i, err)
		}
	}
	if n := g.jwksGets.Load() - before; n != 1 {
		t.Fatalf("JWKS fetches within the interval = %d, want 1", n)
	}
	time.Sleep(interval)
	if _, err := v.Verify(ctx, g.AccessToken("alice", "sid-1", now)); err != nil {
		t.Fatalf("token with a new key after the interval: %v", err)
	}
}

// TestFeed_FailsClosedWhenQuiet: with the feed unreachable longer than FailClosedAfter every
// token is refused with ErrFeedUnavailable (503); accepted again once the feed answers. With
// FailOpen tokens stay accepted.
func TestFeed_FailsClosedWhenQuiet(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g, func(c *verifier.Config) { c.FailClosedAfter = 3 * time.Second })
	open := newVerifier(t, g, func(c *verifier.Config) { c.FailClosedAfter = 3 * time.Second; c.FailOpen = true })
	ctx := context.Background()
	tok := g.AccessToken("alice", "sid-1", time.Now())
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	// A healthy feed (polls held up to a second) never looks quiet.
	time.Sleep(3500 * time.Millisecond)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("healthy feed: %v", err)
	}
	g.SetDown(true)
	// The quiet starts at the last answer, at most a second before the feed went down.
	d := eventually(t, "fail closed", func() bool { _, err := v.Verify(ctx, tok); return errors.Is(err, verifier.ErrFeedUnavailable) })
	if d < 2*time.Second {
		t.Errorf("failed closed after %s, before the 3s bound", d)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	h.ServeHTTP(rec, req)
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("middleware while failing closed: %d %v", rec.Code, rec.Header())
	}
	if !v.Status().FailingClosed || v.Status().Connected {
		t.Errorf("status = %+v", v.Status())
	}
	if _, err := open.Verify(ctx, tok); err != nil {
		t.Errorf("FailOpen verifier refused: %v", err)
	}
	g.SetDown(false)
	eventually(t, "recovered", func() bool { _, err := v.Verify(ctx, tok); return err == nil })
}

func TestMiddlewareAndGin(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g)
	now := time.Now()
	tok := g.AccessToken("alice", "sid-1", now)
	var seen string
	plain := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, _ := verifier.TokenFromContext(r.Context())
		seen = t.Subject
		io.WriteString(w, "ok")
	}))
	gin.SetMode(gin.ReleaseMode)
	ge := gin.New()
	ge.Use(ginverifier.Middleware(v))
	ge.GET("/", func(c *gin.Context) {
		t, _ := ginverifier.Token(c)
		if fromCtx, _ := verifier.TokenFromContext(c.Request.Context()); fromCtx != t {
			c.String(500, "the context and gin disagree")
			return
		}
		c.String(200, t.SessionID)
	})
	call := func(h http.Handler, auth string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		h.ServeHTTP(rec, req)
		return rec
	}
	for name, h := range map[string]http.Handler{"net/http": plain, "gin": ge} {
		t.Run(name, func(t *testing.T) {
			if r := call(h, ""); r.Code != 401 || !strings.HasPrefix(r.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("no token: %d %v", r.Code, r.Header())
			}
			if r := call(h, "Bearer nope"); r.Code != 401 || !strings.Contains(r.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("bad token: %d %v", r.Code, r.Header())
			}
			if r := call(h, "Bearer "+tok); r.Code != 200 {
				t.Errorf("good token: %d %s", r.Code, r.Body)
			}
			if r := call(h, "bearer "+tok); r.Code != 200 {
				t.Errorf("good token, scheme in lower case: %d %s", r.Code, r.Body)
			}
		})
	}
	if seen != "alice" {
		t.Errorf("handler saw subject %q", seen)
	}
	g.Send("1-x", g.Sign("secevent+jwt", g.RevokedSET("1-x", "alice", "sid-1", now)))
	eventually(t, "revoked at the middleware", func() bool { return call(plain, "Bearer "+tok).Code == 401 })
	if r := call(ge, "Bearer "+tok); r.Code != 401 || !strings.Contains(r.Body.String(), "logged out") {
		t.Errorf("gin after revocation: %d %s", r.Code, r.Body)
	}
}

func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BEARER  abc ": "abc",
		"": "", "Bearer": "", "Bearer ": "", "Basic YWxpY2U6c2VjcmV0": "", "Bearerabc": "",
	} {
		got, ok := verifier.BearerToken(header)
		if got != want || ok != (want != "") {
			t.Errorf("BearerToken(%q) = %q, %v; want %q", header, got, ok, want)
		}
	}
}

func TestNew_RefusesBadConfiguration(t *testing.T) {
	g := newFakeGateway(t)
	ctx := context.Background()
	for name, cfg := range map[string]verifier.Config{
		"no issuer":          {Audience: serviceAud, StreamSecret: streamSecret},
		"no audience":        {Issuer: g.URL(), StreamSecret: streamSecret},
		"no stream secret":   {Issuer: g.URL(), Audience: serviceAud},
		"wrong secret":       {Issuer: g.URL(), Audience: serviceAud, StreamSecret: "wrong"},
		"issuer mismatch":    {Issuer: g.URL() + "/", Audience: serviceAud, StreamSecret: streamSecret},
		"unreachable issuer": {Issuer: "http://127.0.0.1:1", Audience: serviceAud, StreamSecret: streamSecret},
		"fail-closed bound too short": {Issuer: g.URL(), Audience: serviceAud, StreamSecret: streamSecret,
			FailClosedAfter: time.Second},
		"negative refetch interval": {Issuer: g.URL(), Audience: serviceAud, StreamSecret: streamSecret,
			JWKSRefetchInterval: -time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			if v, err := verifier.New(ctx, cfg); err == nil {
				v.Close()
				t.Error("New succeeded")
			}
		})
	}
}

// TestOwnStream_CreatedAtStartDeletedAtClose: with OwnStream the verifier creates its stream
// through the configuration endpoint, polls it, and deletes it on Close.
func TestOwnStream_CreatedAtStartDeletedAtClose(t *testing.T) {
	g := newFakeGateway(t)
	v, err := verifier.New(context.Background(), verifier.Config{Issuer: g.URL(), Audience: serviceAud,
		StreamSecret: streamSecret, OwnStream: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	g.Send("1-own", g.Sign("secevent+jwt", g.RevokedSET("1-own", "alice", "sid-own", time.Now())))
	eventually(t, "revoked", func() bool {
		_, err := v.Verify(context.Background(), g.AccessToken("alice", "sid-own", time.Now()))
		return errors.Is(err, verifier.ErrRevoked)
	})
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.created != 1 || len(g.deleted) != 1 || g.deleted[0] != "orders.1" || len(g.polled) == 0 || g.polled[0] != "orders.1" {
		t.Errorf("created %d, deleted %v, polled %v", g.created, g.deleted, g.polled)
	}
}

// TestOwnStream_RecreatedWhenDeleted: a process's stream deleted by tokengate (after a long
// silence) is created again, and events flow on the new one.
func TestOwnStream_RecreatedWhenDeleted(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g, func(c *verifier.Config) { c.OwnStream = true })
	g.deleteStream("orders.1")
	eventually(t, "a second stream", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.created == 2 })
	g.Send("1-r", g.Sign("secevent+jwt", g.RevokedSET("1-r", "alice", "sid-r", time.Now())))
	eventually(t, "revoked on the new stream", func() bool {
		_, err := v.Verify(context.Background(), g.AccessToken("alice", "sid-r", time.Now()))
		return errors.Is(err, verifier.ErrRevoked)
	})
	g.mu.Lock()
	last := g.polled[len(g.polled)-1]
	g.mu.Unlock()
	if last != "orders.2" {
		t.Errorf("polling %s, want orders.2", last)
	}
}
