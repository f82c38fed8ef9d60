package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/kctest"
)

// unsigned builds a token with the given header and claims and a fake signature.
func unsigned(header, claims map[string]any, sig string) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "." + sig
}

func claimsOf(t *testing.T, token string) map[string]any {
	parts := strings.Split(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// hs256WithPublicKey forges a token signed with HMAC keyed by the realm's public key.
func hs256WithPublicKey(t *testing.T, s *stack, claims map[string]any) string {
	der, _ := x509.MarshalPKIXPublicKey(&s.realm.Key().PublicKey)
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: der}, (&jose.SignerOptions{}).WithHeader("kid", s.realm.KeyID()))
	if err != nil {
		t.Fatal(err)
	}
	return s.realm.SignWith(sg, claims)
}

func foreignSigner(t *testing.T, typ string) jose.Signer {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", "foreign"))
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

func TestBadInput_StandardErrorAndNoStateChange(t *testing.T) {
	s := newStack(t)
	canary := s.mustExchange("canary", "sid-canary")
	refresh := canary.str("refresh_token")
	other := s.post("/token", "other", otherSecret, exchangeForm(s.realm.AccessToken(kctest.Token{SID: "sid-o", AZP: "other"})))
	if other.Status != 200 {
		t.Fatal(other.Raw)
	}
	good := s.realm.AccessToken(kctest.Token{SID: "sid-good"})
	goodClaims := claimsOf(t, good)
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for kk, vv := range goodClaims {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	lc := func(edit func(map[string]any)) map[string]any {
		c := s.realm.LogoutClaims("canary", "sid-canary")
		edit(c)
		return c
	}
	signLogout := func(c map[string]any) string { return s.realm.SignWith(s.realm.LogoutSigner(), c) }
	tamper := []byte(refresh)
	tamper[len(tamper)/2] ^= 1
	now := time.Now()

	type row struct {
		name        string
		path        string
		ctype       string
		body        string
		form        url.Values
		id, secret  string
		status      int
		code        string
		wwwAuth     bool
		noClientAut bool
	}
	ex := func(edit func(url.Values)) url.Values {
		f := exchangeForm(good)
		edit(f)
		return f
	}
	rows := []row{
		// Client authentication.
		{name: "no client credentials", path: "/token", form: exchangeForm(good), status: 401, code: "invalid_client", wwwAuth: true, noClientAut: true},
		{name: "wrong client secret", path: "/token", form: exchangeForm(good), id: "bff", secret: otherSecret, status: 401, code: "invalid_client", wwwAuth: true},
		{name: "unknown client", path: "/token", form: exchangeForm(good), id: "nobody", secret: bffSecret, status: 401, code: "invalid_client", wwwAuth: true},
		{name: "short secret", path: "/token", form: exchangeForm(good), id: "bff", secret: "short", status: 401, code: "invalid_client", wwwAuth: true},
		{name: "basic and post secret together", path: "/token", form: ex(func(f url.Values) { f.Set("client_secret", bffSecret) }), status: 401, code: "invalid_client", wwwAuth: true},
		// Grant and parameters.
		{name: "missing grant_type", path: "/token", form: ex(func(f url.Values) { f.Del("grant_type") }), status: 400, code: "invalid_request"},
		{name: "unknown grant_type", path: "/token", form: ex(func(f url.Values) { f.Set("grant_type", "password") }), status: 400, code: "unsupported_grant_type"},
		{name: "duplicate grant_type", path: "/token", form: ex(func(f url.Values) { f.Add("grant_type", "refresh_token") }), status: 400, code: "invalid_request"},
		{name: "duplicate subject_token", path: "/token", form: ex(func(f url.Values) { f.Add("subject_token", good) }), status: 400, code: "invalid_request"},
		{name: "missing subject_token", path: "/token", form: ex(func(f url.Values) { f.Del("subject_token") }), status: 400, code: "invalid_request"},
		{name: "missing subject_token_type", path: "/token", form: ex(func(f url.Values) { f.Del("subject_token_type") }), status: 400, code: "invalid_request"},
		{name: "wrong subject_token_type", path: "/token", form: ex(func(f url.Values) { f.Set("subject_token_type", "urn:ietf:params:oauth:token-type:id_token") }), status: 400, code: "invalid_request"},
		{name: "wrong requested_token_type", path: "/token", form: ex(func(f url.Values) { f.Set("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token") }), status: 400, code: "invalid_request"},
		{name: "actor_token", path: "/token", form: ex(func(f url.Values) { f.Set("actor_token", good) }), status: 400, code: "invalid_request"},
		{name: "audience not allowed", path: "/token", form: ex(func(f url.Values) { f.Set("audience", "payroll") }), status: 400, code: "invalid_target"},
		{name: "scope not granted", path: "/token", form: ex(func(f url.Values) { f.Set("scope", "openid admin") }), status: 400, code: "invalid_scope"},
		// Subject tokens that must not be trusted.
		{name: "token signed by another issuer's key", path: "/token", form: ex(func(f url.Values) { f.Set("subject_token", s.realm.SignWith(foreignSigner(t, "JWT"), goodClaims)) }), status: 400, code: "invalid_request"},
		{name: "token naming another issuer", path: "/token", form: ex(func(f url.Values) {
			f.Set("subject_token", s.realm.Sign(with("iss", "https://evil.example/realms/demo")))
		}), status: 400, code: "invalid_request"},
		{name: "alg none", path: "/token", form: ex(func(f url.Values) {
			f.Set("subject_token", unsigned(map[string]any{"alg": "none", "typ": "JWT"}, goodClaims, ""))
		}), status: 400, code: "invalid_request"},
		{name: "HS256 signed with the public key", path: "/token", form: ex(func(f url.Values) { f.Set("subject_token", hs256WithPublicKey(t, s, goodClaims)) }), status: 400, code: "invalid_request"},
		{name: "expired token", path: "/token", form: ex(func(f url.Values) { f.Set("subject_token", s.realm.Sign(with("exp", now.Add(-time.Minute).Unix()))) }), status: 400, code: "invalid_request"},
		{name: "not yet valid token", path: "/token", form: ex(func(f url.Values) { f.Set("subject_token", s.realm.Sign(with("nbf", now.Add(time.Hour).Unix()))) }), status: 400, code: "invalid_request"},
		{name: "an ID token, not an access token", path: "/token", form: ex(func(f url.Values) { f.Set("subject_token", s.realm.Sign(with("typ", "ID"))) }), status: 400, code: "invalid_request"},
		{name: "garbage subject token", path: "/token", form: ex(func(f url.Values) { f.Set("subject_token", "garbage") }), status: 400, code: "invalid_request"},
		{name: "token not meant for tokengate (aud)", path: "/token", form: ex(func(f url.Values) { f.Set("subject_token", s.realm.Sign(with("aud", "account"))) }), status: 400, code: "invalid_request"},
		{name: "token of another Keycloak client (azp)", path: "/token", form: ex(func(f url.Values) { f.Set("subject_token", s.realm.Sign(with("azp", "other"))) }), status: 400, code: "invalid_request"},
		// Refresh tokens.
		{name: "missing refresh_token", path: "/token", form: url.Values{"grant_type": {"refresh_token"}}, status: 400, code: "invalid_request"},
		{name: "tampered refresh token", path: "/token", form: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {string(tamper)}}, status: 400, code: "invalid_grant"},
		{name: "garbage refresh token", path: "/token", form: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"a.b.c.d.e"}}, status: 400, code: "invalid_grant"},
		{name: "refresh token of another client", path: "/token", form: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {other.str("refresh_token")}}, status: 400, code: "invalid_grant"},
		{name: "internal access token as refresh token", path: "/token", form: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {canary.str("access_token")}}, status: 400, code: "invalid_grant"},
		// Transport.
		{name: "JSON body", path: "/token", ctype: "application/json", body: `{"grant_type":"refresh_token"}`, status: 400, code: "invalid_request"},
		{name: "no content type", path: "/token", ctype: "-", body: "grant_type=refresh_token", status: 400, code: "invalid_request"},
		{name: "body over 64 KiB", path: "/token", body: "grant_type=refresh_token&refresh_token=" + strings.Repeat("A", 70<<10), status: 413, code: "invalid_request"},
		{name: "malformed form", path: "/token", body: "grant_type=%zz", status: 400, code: "invalid_request"},
		// Back-channel logout tokens.
		{name: "logout: missing logout_token", path: "/backchannel-logout", form: url.Values{}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: nonce", path: "/backchannel-logout", form: url.Values{"logout_token": {signLogout(lc(func(c map[string]any) { c["nonce"] = "n" }))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: null nonce", path: "/backchannel-logout", form: url.Values{"logout_token": {signLogout(lc(func(c map[string]any) { c["nonce"] = nil }))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: wrong aud", path: "/backchannel-logout", form: url.Values{"logout_token": {signLogout(lc(func(c map[string]any) { c["aud"] = "someone-else" }))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: wrong iss", path: "/backchannel-logout", form: url.Values{"logout_token": {signLogout(lc(func(c map[string]any) { c["iss"] = "https://evil.example" }))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: no events", path: "/backchannel-logout", form: url.Values{"logout_token": {signLogout(lc(func(c map[string]any) { delete(c, "events") }))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: other event", path: "/backchannel-logout", form: url.Values{"logout_token": {signLogout(lc(func(c map[string]any) { c["events"] = map[string]any{"urn:other": map[string]any{}} }))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: neither sid nor sub", path: "/backchannel-logout", form: url.Values{"logout_token": {signLogout(lc(func(c map[string]any) { delete(c, "sid"); delete(c, "sub") }))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: no jti", path: "/backchannel-logout", form: url.Values{"logout_token": {signLogout(lc(func(c map[string]any) { delete(c, "jti") }))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: no iat", path: "/backchannel-logout", form: url.Values{"logout_token": {signLogout(lc(func(c map[string]any) { delete(c, "iat") }))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: iat in the future", path: "/backchannel-logout", form: url.Values{"logout_token": {signLogout(lc(func(c map[string]any) { c["iat"] = now.Add(10 * time.Minute).Unix() }))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: expired", path: "/backchannel-logout", form: url.Values{"logout_token": {signLogout(lc(func(c map[string]any) { c["exp"] = now.Add(-10 * time.Minute).Unix() }))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: JOSE typ JWT", path: "/backchannel-logout", form: url.Values{"logout_token": {s.realm.Sign(s.realm.LogoutClaims("canary", "sid-canary"))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: signed by another key", path: "/backchannel-logout", form: url.Values{"logout_token": {s.realm.SignWith(foreignSigner(t, "logout+jwt"), s.realm.LogoutClaims("canary", "sid-canary"))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: alg none", path: "/backchannel-logout", form: url.Values{"logout_token": {unsigned(map[string]any{"alg": "none", "typ": "logout+jwt"}, s.realm.LogoutClaims("canary", "sid-canary"), "")}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: HS256 with the public key", path: "/backchannel-logout", form: url.Values{"logout_token": {hs256WithPublicKey(t, s, s.realm.LogoutClaims("canary", "sid-canary"))}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: an access token", path: "/backchannel-logout", form: url.Values{"logout_token": {good}}, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: JSON body", path: "/backchannel-logout", ctype: "application/json", body: `{"logout_token":"x"}`, status: 400, code: "invalid_request", noClientAut: true},
		{name: "logout: body over 64 KiB", path: "/backchannel-logout", body: "logout_token=" + strings.Repeat("A", 70<<10), status: 413, code: "invalid_request", noClientAut: true},
	}
	before, err := s.store.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			body := r.body
			if r.form != nil {
				body = r.form.Encode()
			}
			req, _ := http.NewRequest(http.MethodPost, s.srv.URL+r.path, strings.NewReader(body))
			switch r.ctype {
			case "":
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			case "-":
			default:
				req.Header.Set("Content-Type", r.ctype)
			}
			if !r.noClientAut {
				id, secret := r.id, r.secret
				if id == "" {
					id, secret = "bff", bffSecret
				}
				req.SetBasicAuth(id, secret)
			}
			got := s.do(req)
			if got.Status != r.status || got.str("error") != r.code {
				t.Errorf("got %d %s, want %d %s", got.Status, got.Raw, r.status, r.code)
			}
			if r.wwwAuth && !strings.HasPrefix(got.Header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("401 without WWW-Authenticate")
			}
			if got.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("error without Cache-Control: no-store")
			}
			after, err := s.store.Stats(context.Background())
			if err != nil || after != before {
				t.Errorf("state changed: %+v → %+v (%v)", before, after, err)
			}
		})
	}
	if rn := s.renew(refresh); rn.Status != http.StatusOK {
		t.Errorf("the canary session must still renew: %d %s", rn.Status, rn.Raw)
	}
}
