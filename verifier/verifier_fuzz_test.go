package verifier_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/verifier"
)

// signedOrRaw turns a fuzz input into a token: claims signed with the gateway's real key and
// JOSE typ typ, so the fuzzer reaches claim checking; or, when typ is empty, claims taken as a
// raw compact token, so it also reaches parsing.
func signedOrRaw(t *testing.T, g *fakeGateway, claims []byte, typ string) string {
	if typ == "" {
		return string(claims)
	}
	tok, _, err := g.km.SignWithType(claims, typ)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// FuzzVerify feeds Verify internal tokens with arbitrary claims and JOSE typ, and arbitrary
// raw strings. Invariants: no panic; a refusal wraps ErrInvalidToken (no revocation is known
// and the feed is off); an accepted token is an at+jwt from this issuer, for this service,
// unexpired, with a subject.
func FuzzVerify(f *testing.F) {
	g := newFakeGateway(f)
	v := newVerifier(f, g, func(c *verifier.Config) { c.DisableFeed = true })
	now := time.Now()
	good := map[string]any{"iss": g.URL(), "sub": "alice", "aud": []string{serviceAud},
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "jti": "j1", "client_id": "bff", "sid": "s1", "scope": "a b"}
	seed := func(edit func(map[string]any)) []byte {
		c := map[string]any{}
		for k, v := range good {
			c[k] = v
		}
		if edit != nil {
			edit(c)
		}
		b, _ := json.Marshal(c)
		return b
	}
	f.Add(seed(nil), "at+jwt")
	f.Add(seed(nil), "application/at+jwt")
	f.Add(seed(nil), "JWT")
	f.Add(seed(func(c map[string]any) { c["aud"] = serviceAud }), "at+jwt")
	f.Add(seed(func(c map[string]any) { c["aud"] = []any{1, nil} }), "at+jwt")
	f.Add(seed(func(c map[string]any) { c["exp"] = 1.5e300 }), "at+jwt")
	f.Add(seed(func(c map[string]any) { c["exp"] = "soon" }), "at+jwt")
	f.Add(seed(func(c map[string]any) { delete(c, "exp") }), "at+jwt")
	f.Add(seed(func(c map[string]any) { c["roles"] = "admin" }), "at+jwt")
	f.Add([]byte(`[]`), "at+jwt")
	f.Add([]byte(`null`), "at+jwt")
	f.Add([]byte(g.AccessToken("alice", "s1", now)), "")
	f.Add([]byte("eyJhbGciOiJub25lIn0.e30."), "")

	f.Fuzz(func(t *testing.T, claims []byte, typ string) {
		tok, err := v.Verify(t.Context(), signedOrRaw(t, g, claims, typ))
		if err != nil {
			if !errors.Is(err, verifier.ErrInvalidToken) {
				t.Fatalf("refusal %v does not wrap ErrInvalidToken", err)
			}
			return
		}
		if typ != "" && strings.TrimPrefix(strings.ToLower(typ), "application/") != "at+jwt" {
			t.Fatalf("accepted a token of JOSE typ %q", typ)
		}
		if tok.Issuer != g.URL() || tok.Subject == "" || !slices.Contains(tok.Audience, serviceAud) ||
			!tok.Expiry.After(time.Now().Add(-time.Minute)) {
			t.Fatalf("accepted %+v", tok)
		}
	})
}

// FuzzVerifySET feeds VerifySET Security Event Tokens with arbitrary claims and JOSE typ, and
// arbitrary raw strings. Invariants: no panic; a refusal wraps ErrInvalidSET (the keys are
// reachable and nothing was applied, so neither ErrSETUnverifiable nor ErrReplayedSET); an
// accepted session-revoked SET names a session or a user.
func FuzzVerifySET(f *testing.F) {
	g := newFakeGateway(f)
	v := newVerifier(f, g)
	now := time.Now()
	seed := func(sid, sub string, edit func(map[string]any)) []byte {
		c := g.RevokedSET("j-"+sid+sub, sub, sid, now)
		if edit != nil {
			edit(c)
		}
		b, _ := json.Marshal(c)
		return b
	}
	f.Add(seed("sid-1", "alice", nil), "secevent+jwt")
	f.Add(seed("", "alice", nil), "secevent+jwt")
	f.Add(seed("sid-1", "alice", func(c map[string]any) { c["aud"] = []string{"x", setAud} }), "secevent+jwt")
	f.Add(seed("sid-1", "alice", func(c map[string]any) {
		c["sub_id"] = map[string]any{"format": "opaque", "id": "sid-2"}
	}), "secevent+jwt")
	f.Add(seed("sid-1", "alice", func(c map[string]any) {
		c["sub_id"] = map[string]any{"format": "complex", "session": map[string]any{"format": "opaque"}}
	}), "secevent+jwt")
	f.Add(seed("sid-1", "alice", func(c map[string]any) {
		c["events"] = map[string]any{"https://schemas.openid.net/secevent/caep/event-type/session-revoked": map[string]any{"event_timestamp": 1e300}}
	}), "secevent+jwt")
	f.Add(seed("sid-1", "alice", func(c map[string]any) {
		c["events"] = map[string]any{"https://schemas.openid.net/secevent/ssf/event-type/verification": map[string]any{"state": "s"}}
	}), "secevent+jwt")
	f.Add(seed("sid-1", "alice", func(c map[string]any) { c["iat"] = "now" }), "secevent+jwt")
	f.Add(seed("sid-1", "alice", nil), "at+jwt")
	f.Add([]byte(`{"events":null}`), "secevent+jwt")
	f.Add([]byte("a.b.c"), "")

	f.Fuzz(func(t *testing.T, claims []byte, typ string) {
		r, err := v.VerifySET(t.Context(), signedOrRaw(t, g, claims, typ))
		if err != nil {
			if !errors.Is(err, verifier.ErrInvalidSET) {
				t.Fatalf("refusal %v does not wrap ErrInvalidSET", err)
			}
			return
		}
		if r != nil && r.SessionID == "" && r.Subject == "" {
			t.Fatalf("accepted a revocation naming nothing: %+v", r)
		}
	})
}
