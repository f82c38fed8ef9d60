package issuer_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/issuer"
)

// TestExchange_InvalidSubjectTokenSaysWhy: a subject token that is not an access token of the
// provider is refused 400 invalid_request with a description naming the reason (no longer one
// sentence for all), and one INFO exchange_refused line with a distinct reason and the facts
// behind it (never the token); the provider is not asked and nothing is stored.
func TestExchange_InvalidSubjectTokenSaysWhy(t *testing.T) {
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	hmac := make([]byte, 64)
	_, _ = rand.Read(hmac)
	sign := func(alg jose.SignatureAlgorithm, key any, kid string) jose.Signer {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name   string
		token  func(f *fixture) string
		reason string
		desc   []string
		// attrs are log attributes the line must carry (a value "*" only needs to be present).
		attrs map[string]string
	}{
		{"garbage", func(*fixture) string { return "garbage" }, "not_jwt",
			[]string{"subject_token is not a JWT"}, nil},
		{"ID token", func(f *fixture) string { return f.realm.AccessToken(kctest.Token{Typ: "ID"}) }, "typ",
			[]string{"subject_token is an ID token", `typ "ID"`, "send the access token"}, map[string]string{"typ": "ID"}},
		{"Keycloak refresh token", func(f *fixture) string {
			return f.realm.SignWith(sign(jose.HS512, hmac, "hmac"), map[string]any{"iss": f.realm.Issuer(), "typ": "Refresh",
				"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
		}, "typ", []string{"subject_token is a refresh token", `typ "Refresh"`}, map[string]string{"typ": "Refresh"}},
		{"logout token", func(f *fixture) string { return f.realm.LogoutToken("alice", "sid-1") }, "typ",
			[]string{"subject_token is a logout token"}, map[string]string{"jose_typ": "logout+jwt"}},
		{"master realm", func(f *fixture) string {
			return f.realm.AccessToken(kctest.Token{Issuer: strings.TrimSuffix(f.realm.Issuer(), "/demo") + "/master"})
		}, "issuer", []string{"subject_token was issued by", "/realms/master", "/realms/demo"}, map[string]string{"iss": "*", "expected_iss": "*"}},
		{"expired", func(f *fixture) string {
			return f.realm.AccessToken(kctest.Token{IssuedAt: time.Now().Add(-10 * time.Minute), Lifetime: 5 * time.Minute})
		}, "expired", []string{"subject_token expired at", "tokengate's clock", "clock skew"}, map[string]string{"exp": "*", "skew": "0s"}},
		{"unknown kid", func(f *fixture) string {
			return f.realm.SignWith(sign(jose.RS256, stranger, "kid-nobody-has"), map[string]any{"iss": f.realm.Issuer(), "typ": "Bearer",
				"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
		}, "unknown_kid", []string{`subject_token is signed with key "kid-nobody-has"`, "JWKS"}, map[string]string{"kid": "kid-nobody-has"}},
		{"bad signature", func(f *fixture) string {
			return f.realm.SignWith(sign(jose.RS256, stranger, f.realm.KeyID()), map[string]any{"iss": f.realm.Issuer(), "typ": "Bearer",
				"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
		}, "bad_signature", []string{"subject_token has a signature that", "does not verify"}, map[string]string{"kid": "*"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newSubjectFixture(t, false)
			tok := tc.token(f)
			before, err := f.store.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.exchangeAs("bff", tok)
			var oe *issuer.Error
			if !errors.As(err, &oe) || oe.Code != issuer.CodeInvalidRequest {
				t.Fatalf("exchange: %v; want invalid_request", err)
			}
			for _, d := range tc.desc {
				if !strings.Contains(oe.Description, d) {
					t.Errorf("description %q does not say %q", oe.Description, d)
				}
			}
			if strings.Contains(oe.Description, "is not a valid access token of the upstream provider") {
				t.Errorf("description %q is the old catch-all", oe.Description)
			}
			lines := f.auditLines("exchange refused")
			if len(lines) != 1 || lines[0]["event"] != "exchange_refused" || lines[0]["reason"] != tc.reason ||
				lines[0]["level"] != "INFO" || lines[0]["client_id"] != "bff" || lines[0]["subject_token"] != issuer.TokenHash(tok) {
				t.Fatalf("audit lines %v, want one INFO exchange_refused with reason %s", lines, tc.reason)
			}
			for k, v := range tc.attrs {
				if got, ok := lines[0][k]; !ok || (v != "*" && got != v) {
					t.Errorf("log attribute %s = %v, want %s", k, got, v)
				}
			}
			if strings.Contains(f.logs.String(), tok) {
				t.Error("the log holds the token")
			}
			if n := f.realm.Introspections.Load(); n != 0 {
				t.Errorf("%d introspections of a token refused locally", n)
			}
			if after, err := f.store.Stats(context.Background()); err != nil || after != before {
				t.Errorf("store changed: %+v → %+v (%v)", before, after, err)
			}
		})
	}
}

// TestExchange_LoggedOutSessionSaysLogInAgain: a Keycloak token of a session tokengate has
// recorded as logged out is refused even when Keycloak still calls it active (an admin disabled
// then re-enabled the user, and Keycloak revived the session): the description says to log in
// again.
func TestExchange_LoggedOutSessionSaysLogInAgain(t *testing.T) {
	f := newSubjectFixture(t, false)
	if _, err := f.store.RecordRevocation(context.Background(), store.Event{ID: "ev-revived", Time: f.clock.Now(), Revocation: store.Revocation{
		SID: "sid-revived", At: f.clock.Now(), Expires: f.clock.Now().Add(time.Hour), Reason: "recheck"}}); err != nil {
		t.Fatal(err)
	}
	_, err := f.exchangeAs("bff", f.realm.AccessToken(kctest.Token{SID: "sid-revived", IssuedAt: f.clock.Now()}))
	var oe *issuer.Error
	if !errors.As(err, &oe) || oe.Code != issuer.CodeInvalidRequest ||
		!strings.Contains(oe.Description, "logged out") || !strings.Contains(oe.Description, "log in again") {
		t.Fatalf("exchange of a revived session's token: %v; want invalid_request saying to log in again", err)
	}
}
