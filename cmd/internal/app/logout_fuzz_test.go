package app_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// FuzzBackchannelLogout sends arbitrary form bodies to POST /backchannel-logout: form parsing,
// logout token parsing and verification (upstream.VerifyLogoutToken), replay protection and
// recording (issuer.RecordLogout). Invariants: never a panic or a 5xx; a refusal is a 400 or 413
// OAuth error that records nothing; a 200 claims exactly one new jti.
func FuzzBackchannelLogout(f *testing.F) {
	s := newStack(f)
	body := func(tok string) string { return url.Values{"logout_token": {tok}}.Encode() }
	f.Add(body(s.realm.LogoutToken("fuzz-dave", "fuzz-sid-4")))
	f.Add(body(s.realm.LogoutToken("fuzz-erin", "")))
	f.Add(body(s.realm.LogoutToken("", "fuzz-sid-5")))
	noEvent := s.realm.LogoutClaims("fuzz-frank", "fuzz-sid-6")
	delete(noEvent, "events")
	f.Add(body(s.realm.SignWith(s.realm.LogoutSigner(), noEvent)))
	withNonce := s.realm.LogoutClaims("fuzz-grace", "fuzz-sid-7")
	withNonce["nonce"] = "n-0S6_WzA2Mj"
	f.Add(body(s.realm.SignWith(s.realm.LogoutSigner(), withNonce)))
	noExp := s.realm.LogoutClaims("fuzz-heidi", "fuzz-sid-8")
	delete(noExp, "exp")
	f.Add(body(s.realm.SignWith(s.realm.LogoutSigner(), noExp)))
	f.Add(body(s.realm.Sign(s.realm.LogoutClaims("fuzz-ivan", "fuzz-sid-9")))) // JOSE typ JWT
	f.Add(body(unsigned(map[string]any{"alg": "none", "typ": "logout+jwt"}, s.realm.LogoutClaims("fuzz-judy", "fuzz-sid-10"), "")))
	foreign, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	fs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: foreign},
		(&jose.SignerOptions{}).WithType("logout+jwt").WithHeader("kid", s.realm.KeyID()))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(body(s.realm.SignWith(fs, s.realm.LogoutClaims("fuzz-ken", "fuzz-sid-11"))))
	f.Add("logout_token=a.b.c&logout_token=d.e.f")
	f.Add("logout_token=%zz")
	f.Add("")

	f.Fuzz(func(t *testing.T, form string) {
		if len(form) > 16<<10 {
			t.Skip("large bodies are covered by FuzzTokenEndpoint")
		}
		fpBefore := s.fingerprint(t)
		before, _ := s.store.Stats(t.Context())
		rec := s.serve(http.MethodPost, "/backchannel-logout", "application/x-www-form-urlencoded", "", []byte(form))
		checkOAuthError(t, rec)
		if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
			t.Fatalf("answer %d without Cache-Control: no-store", rec.Code)
		}
		fpAfter := s.fingerprint(t)
		after, _ := s.store.Stats(t.Context())
		switch rec.Code {
		case http.StatusOK:
			if after.JTIs != before.JTIs+1 || after.Sessions < before.Sessions || after.Subjects < before.Subjects {
				t.Fatalf("accepted logout: state %+v → %+v", before, after)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			var e struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &e)
			if e.Error != "invalid_request" {
				t.Fatalf("logout refused with %q", e.Error)
			}
			if fpAfter != fpBefore {
				t.Fatalf("refused logout changed durable state: %s → %s", fpBefore, fpAfter)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	})
}
