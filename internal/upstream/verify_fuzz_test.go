package upstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/upstream"
)

// logoutFixture is a fake realm and a client that has discovered it.
func logoutFixture(f *testing.F) (*kctest.Realm, *upstream.Client, upstream.LogoutPolicy) {
	realm := kctest.New(f)
	c := upstream.New(upstream.Config{Issuer: realm.Issuer(), ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret})
	if _, err := c.Algorithms(context.Background()); err != nil {
		f.Fatal(err)
	}
	return realm, c, upstream.LogoutPolicy{Audiences: []string{kctest.LogoutAudience}, Now: time.Now(), Skew: 30 * time.Second}
}

// checkAccepted re-derives, from the payload alone, every rule an accepted logout token must meet
// (OIDC Back-Channel Logout 1.0 §2.4, §2.6). Claims are matched like encoding/json matches struct
// fields (case-insensitively, the verifier's and go-oidc's way); a payload with two names that
// differ only in case is not re-derived.
func checkAccepted(t *testing.T, realm *kctest.Realm, p upstream.LogoutPolicy, payload []byte, lt upstream.LogoutToken) {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil {
		t.Fatalf("accepted a token whose claims are not a JSON object: %v", err)
	}
	c := map[string]any{}
	for k, v := range raw {
		lk := strings.ToLower(k)
		if _, dup := c[lk]; dup {
			return
		}
		var x any
		_ = json.Unmarshal(v, &x)
		c[lk] = x
	}
	if c["iss"] != realm.Issuer() {
		t.Fatalf("accepted iss %v", c["iss"])
	}
	var aud []string
	switch a := c["aud"].(type) {
	case string:
		aud = []string{a}
	case []any:
		for _, x := range a {
			s, _ := x.(string)
			aud = append(aud, s)
		}
	}
	if !slices.Contains(aud, kctest.LogoutAudience) {
		t.Fatalf("accepted aud %v", c["aud"])
	}
	if _, ok := c["nonce"]; ok {
		t.Fatal("accepted a token with nonce")
	}
	switch iat := c["iat"].(type) {
	case float64:
	case string: // encoding/json reads a quoted number into json.Number
		if _, err := strconv.ParseFloat(iat, 64); err != nil {
			t.Fatalf("accepted iat %q", iat)
		}
	default:
		t.Fatalf("accepted iat %v", c["iat"])
	}
	ev, _ := c["events"].(map[string]any)
	if _, ok := ev[upstream.BackchannelLogoutEvent].(map[string]any); !ok {
		t.Fatalf("accepted events %v", c["events"])
	}
	if jti, _ := c["jti"].(string); jti == "" || jti != lt.JTI {
		t.Fatalf("accepted jti %v (reported %q)", c["jti"], lt.JTI)
	}
	if lt.SID == "" && lt.Subject == "" {
		t.Fatal("accepted a token with neither sid nor sub")
	}
	if lt.IssuedAt.After(p.Now.Add(p.Skew)) {
		t.Fatalf("accepted iat in the future: %v", lt.IssuedAt)
	}
	if !lt.Expiry.IsZero() && lt.Expiry.Add(p.Skew).Before(p.Now) {
		t.Fatalf("accepted an expired token: %v", lt.Expiry)
	}
}

// FuzzVerifyLogoutToken feeds arbitrary strings to VerifyLogoutToken as the logout_token of a
// back-channel logout request. Invariants: no panic; a refusal wraps ErrInvalidToken (the realm
// is up, so never ErrUnavailable); an accepted token meets every rule of the spec.
func FuzzVerifyLogoutToken(f *testing.F) {
	realm, c, p := logoutFixture(f)
	f.Add(realm.LogoutToken("fuzz-sub", "fuzz-sid"))
	f.Add(realm.LogoutToken("fuzz-sub", ""))
	f.Add(realm.LogoutToken("", "fuzz-sid"))
	f.Add(realm.Sign(realm.LogoutClaims("fuzz-sub", "fuzz-sid")))
	f.Add(realm.AccessToken(kctest.Token{}))
	f.Add(`{"payload":"e30","signatures":[{"protected":"eyJhbGciOiJSUzI1NiJ9","signature":"AA"}]}`)
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoibG9nb3V0K2p3dCJ9.e30.")

	f.Fuzz(func(t *testing.T, raw string) {
		lt, err := c.VerifyLogoutToken(context.Background(), raw, p)
		if err != nil {
			if !errors.Is(err, upstream.ErrInvalidToken) {
				t.Fatalf("refusal is not ErrInvalidToken: %v", err)
			}
			return
		}
		jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatalf("accepted a token that is not a compact RS256 JWS: %v", err)
		}
		checkAccepted(t, realm, p, jws.UnsafePayloadWithoutVerification(), lt)
	})
}

// FuzzLogoutTokenClaims signs arbitrary claim bytes and JOSE typ headers with the realm's key, so
// the input reaches the claim checks behind the signature. Invariants: no panic; an accepted token
// meets every rule of the spec, re-derived from the payload; a JOSE typ other than logout+jwt is
// refused.
func FuzzLogoutTokenClaims(f *testing.F) {
	realm, c, p := logoutFixture(f)
	add := func(typ string, claims map[string]any) {
		b, err := json.Marshal(claims)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(typ, b)
	}
	add("logout+jwt", realm.LogoutClaims("fuzz-sub", "fuzz-sid"))
	add("logout+jwt", realm.LogoutClaims("", "fuzz-sid"))
	add("application/logout+jwt", realm.LogoutClaims("fuzz-sub", ""))
	add("", realm.LogoutClaims("fuzz-sub", "fuzz-sid"))
	add("JWT", realm.LogoutClaims("fuzz-sub", "fuzz-sid"))
	multi := realm.LogoutClaims("fuzz-sub", "fuzz-sid")
	multi["aud"] = []string{"other", kctest.LogoutAudience}
	add("logout+jwt", multi)
	f.Add("logout+jwt", []byte(`{"iss":"x","aud":"bff","iat":1e400,"jti":"j","sid":"s","events":{}}`))
	f.Add("logout+jwt", []byte(`[]`))

	f.Fuzz(func(t *testing.T, typ string, claims []byte) {
		opts := (&jose.SignerOptions{}).WithHeader("kid", realm.KeyID())
		if typ != "" {
			opts = opts.WithType(jose.ContentType(typ))
		}
		sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: realm.Key()}, opts)
		if err != nil {
			t.Skip()
		}
		obj, err := sg.Sign(claims)
		if err != nil {
			t.Skip()
		}
		raw, err := obj.CompactSerialize()
		if err != nil {
			t.Skip()
		}
		lt, err := c.VerifyLogoutToken(context.Background(), raw, p)
		if err != nil {
			if !errors.Is(err, upstream.ErrInvalidToken) {
				t.Fatalf("refusal is not ErrInvalidToken: %v", err)
			}
			return
		}
		if typ != "" && !strings.EqualFold(typ, "logout+jwt") && !strings.EqualFold(typ, "application/logout+jwt") {
			t.Fatalf("accepted JOSE typ %q", typ)
		}
		checkAccepted(t, realm, p, claims, lt)
	})
}
