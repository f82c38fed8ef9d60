package upstream_test

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/upstream"
)

// signer returns a signer of alg with key and JOSE header kid.
func signer(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string) jose.Signer {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestVerifyAccessToken_NamesTheReason: every refusal of a token that is not an access token
// of the provider is an *upstream.Refusal (still ErrInvalidToken) with a distinct, stable
// Reason and a Detail that names what the token is: its typ, its issuer next to the expected
// one, its exp next to tokengate's clock, its unknown kid, its signature, its algorithm, or
// that it is no JWT at all.
func TestVerifyAccessToken_NamesTheReason(t *testing.T) {
	realm, other := kctest.New(t), kctest.New(t)
	c := upstream.New(upstream.Config{Issuer: realm.Issuer(), ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret})
	now := time.Now()
	claims := func(edit func(map[string]any)) map[string]any {
		m := map[string]any{"iss": realm.Issuer(), "sub": "alice", "typ": "Bearer", "azp": "bff",
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
		if edit != nil {
			edit(m)
		}
		return m
	}
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	hmac := make([]byte, 64)
	_, _ = rand.Read(hmac)
	expiredAt := now.Add(-3 * time.Minute).Truncate(time.Second)
	for _, tc := range []struct {
		name   string
		token  string
		reason string
		detail []string
	}{
		{"garbage", "not-a-token", upstream.ReasonNotJWT, []string{"not a JWT"}},
		{"three parts of garbage", "a.b.c", upstream.ReasonNotJWT, []string{"not a JWT"}},
		{"ID token", realm.AccessToken(kctest.Token{Typ: "ID"}), upstream.ReasonTokenType,
			[]string{"ID token", `typ "ID"`, "send the access token"}},
		{"Keycloak refresh token (HS512, typ Refresh)", realm.SignWith(signer(t, jose.HS512, hmac, "hmac-kid"),
			claims(func(m map[string]any) { m["typ"] = "Refresh" })), upstream.ReasonTokenType,
			[]string{"refresh token", `typ "Refresh"`}},
		{"logout token", realm.LogoutToken("alice", "sid-1"), upstream.ReasonTokenType, []string{"logout token"}},
		{"token of another realm", realm.AccessToken(kctest.Token{Issuer: strings.Replace(realm.Issuer(), "/demo", "/master", 1)}),
			upstream.ReasonIssuer, []string{`issued by "` + strings.Replace(realm.Issuer(), "/demo", "/master", 1) + `"`, `"` + realm.Issuer() + `"`}},
		{"token of another Keycloak", other.AccessToken(kctest.Token{}), upstream.ReasonIssuer,
			[]string{`issued by "` + other.Issuer() + `"`, `"` + realm.Issuer() + `"`}},
		{"expired", realm.AccessToken(kctest.Token{IssuedAt: expiredAt.Add(-5 * time.Minute), Lifetime: 5 * time.Minute}),
			upstream.ReasonExpired, []string{"expired at " + expiredAt.UTC().Format(time.RFC3339), "tokengate's clock", "clock skew"}},
		{"unknown kid", realm.SignWith(signer(t, jose.RS256, stranger, "rotated-away"), claims(nil)), upstream.ReasonUnknownKey,
			[]string{`key "rotated-away"`, "JWKS"}},
		{"bad signature", realm.SignWith(signer(t, jose.RS256, stranger, realm.KeyID()), claims(nil)), upstream.ReasonBadSignature,
			[]string{"signature", `"` + realm.KeyID() + `"`}},
		{"HMAC-signed access token", realm.SignWith(signer(t, jose.HS256, hmac, realm.KeyID()), claims(nil)), upstream.ReasonAlgorithm,
			[]string{"HS256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.VerifyAccessToken(t.Context(), tc.token)
			var r *upstream.Refusal
			if !errors.As(err, &r) || !errors.Is(err, upstream.ErrInvalidToken) {
				t.Fatalf("err = %v, want an *upstream.Refusal wrapping ErrInvalidToken", err)
			}
			if r.Reason != tc.reason {
				t.Errorf("reason = %q, want %q (detail %q)", r.Reason, tc.reason, r.Detail)
			}
			for _, d := range tc.detail {
				if !strings.Contains(r.Detail, d) {
					t.Errorf("detail %q does not say %q", r.Detail, d)
				}
			}
			if strings.Contains(r.Detail, tc.token) {
				t.Error("the detail holds the token")
			}
		})
	}
	if _, err := c.VerifyAccessToken(t.Context(), realm.AccessToken(kctest.Token{})); err != nil {
		t.Fatalf("a good token after the refusals: %v", err)
	}
}

// TestVerifyAccessToken_HostileClaimsAreBoundedInTheReason: an attacker-chosen iss, typ or kid
// of any length reaches the detail (and so the response and the log) quoted and cut short.
func TestVerifyAccessToken_HostileClaimsAreBoundedInTheReason(t *testing.T) {
	realm := kctest.New(t)
	c := upstream.New(upstream.Config{Issuer: realm.Issuer(), ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret})
	long := strings.Repeat("A", 10000) + "\n\x1b[31m"
	for _, tok := range []string{
		realm.AccessToken(kctest.Token{Issuer: long}),
		realm.AccessToken(kctest.Token{Typ: long}),
		realm.SignWith(signer(t, jose.RS256, realm.Key(), long), map[string]any{"iss": realm.Issuer(), "typ": "Bearer",
			"sub": "x", "exp": time.Now().Add(time.Minute).Unix()}),
	} {
		_, err := c.VerifyAccessToken(t.Context(), tok)
		var r *upstream.Refusal
		if !errors.As(err, &r) {
			t.Fatalf("err = %v, want a Refusal", err)
		}
		if len(r.Detail) > 400 || strings.ContainsAny(r.Detail, "\n\x1b") {
			t.Errorf("detail of %d bytes (control characters: %v): %.120q", len(r.Detail), strings.ContainsAny(r.Detail, "\n\x1b"), r.Detail)
		}
		for i := 1; i < len(r.Attrs); i += 2 {
			if s, ok := r.Attrs[i].(string); ok && len(s) > 200 {
				t.Errorf("log attribute %v of %d bytes", r.Attrs[i-1], len(s))
			}
		}
	}
}
