// Package kctest is an in-process fake Keycloak realm for tests: discovery, JWKS, RFC 7662
// introspection, the refresh_token grant and back-channel logout tokens, all signed with real
// keys. Introspection follows Keycloak 26.6 and later: a token whose aud lacks the introspecting
// client is inactive (SetAudienceRule(false) gives the older behaviour).
package kctest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Introspection client credentials the fake accepts.
const (
	ClientID     = "tokengate"
	ClientSecret = "tokengate-secret-0123456789-abcdefg"
	// LogoutAudience is the aud of logout tokens (the BFF's client id in Keycloak).
	LogoutAudience = "bff"
	// BFFClientID is the azp of access tokens by default (the BFF's client id in Keycloak).
	BFFClientID = "bff"
)

// Realm is a fake Keycloak realm served by httptest.
type Realm struct {
	Server *httptest.Server
	key    *rsa.PrivateKey
	kid    string
	signer jose.Signer

	// Introspections counts calls to the introspection endpoint.
	Introspections atomic.Int64
	// Refreshes counts refresh_token grants answered with new tokens.
	Refreshes atomic.Int64
	// CertsFetches counts requests for the realm's JWKS.
	CertsFetches atomic.Int64
	down         atomic.Bool
	ahead        atomic.Int64 // nanoseconds the realm's clock runs ahead of this process's
	// noAudienceRule: introspection ignores aud, as Keycloak before 26.6 did.
	noAudienceRule atomic.Bool

	mu       sync.Mutex
	inactive map[string]bool      // sid → session ended
	extra    []jose.JSONWebKey    // keys published beside the realm key (AddKey)
	refresh  map[string][2]string // refresh token → {sub, sid}
}

// New starts a realm and stops it when the test ends.
func New(t testing.TB) *Realm {
	t.Helper()
	r := NewUnstarted()
	r.Server.Start()
	t.Cleanup(r.Server.Close)
	return r
}

// NewUnstarted returns a realm whose Server is not started yet (set Server.Listener first to
// choose the address).
func NewUnstarted() *Realm {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	r := &Realm{key: key, kid: "kc-" + randID(), inactive: map[string]bool{}, refresh: map[string][2]string{}}
	r.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", r.kid))
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /realms/demo/.well-known/openid-configuration", r.discovery)
	mux.HandleFunc("GET /realms/demo/protocol/openid-connect/certs", r.certs)
	mux.HandleFunc("POST /realms/demo/protocol/openid-connect/token/introspect", r.introspect)
	mux.HandleFunc("POST /realms/demo/protocol/openid-connect/token", r.token)
	r.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.down.Load() {
			// Like a stopped Keycloak: the connection is dropped without an answer.
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					_ = c.Close()
					return
				}
			}
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		mux.ServeHTTP(w, req)
	}))
	return r
}

// Issuer returns the realm URL.
func (r *Realm) Issuer() string { return r.Server.URL + "/realms/demo" }

// SetDown makes every request fail at the connection level (true) or be served again (false).
func (r *Realm) SetDown(down bool) { r.down.Store(down) }

// SetClockAhead makes the realm's clock run d ahead of the process clock (negative: behind):
// introspection answers inactive once the realm's now reaches a token's exp, as Keycloak does.
func (r *Realm) SetClockAhead(d time.Duration) { r.ahead.Store(int64(d)) }

// SetAudienceRule turns Keycloak's introspection audience rule (26.6 and later, the fix for
// CVE-2026-37979) on (the default) or off (Keycloak 26.5 and earlier): with it, introspection
// answers active:false for a token whose aud does not contain the introspecting client.
func (r *Realm) SetAudienceRule(on bool) { r.noAudienceRule.Store(!on) }

// EndSession makes introspection answer inactive for every token of sid, as Keycloak does after
// a logout or session expiry, without sending a back-channel logout.
func (r *Realm) EndSession(sid string) {
	r.mu.Lock()
	r.inactive[sid] = true
	r.mu.Unlock()
}

// Token describes an access token to mint. Zero fields get defaults.
type Token struct {
	Subject  string
	SID      string
	Scope    string
	Roles    []string
	Username string
	IssuedAt time.Time
	// AuthTime is when the user authenticated (auth_time); default IssuedAt. A token refreshed
	// within a session keeps its session's AuthTime.
	AuthTime time.Time
	Lifetime time.Duration
	Issuer   string // default: the realm
	Typ      string // typ claim; default Bearer
	// Audience is the aud claim; default [ClientID, "account"], as with the demo realm's
	// audience mapper. One value is written as a string, as Keycloak does.
	Audience []string
	// AZP is the client the token was issued to; default BFFClientID.
	AZP string
}

// AccessToken mints a signed access token like Keycloak's.
func (r *Realm) AccessToken(t Token) string {
	if t.Subject == "" {
		t.Subject = "user-" + randID()
	}
	if t.SID == "" {
		t.SID = "sid-" + randID()
	}
	if t.Scope == "" {
		t.Scope = "openid profile email"
	}
	if t.Roles == nil {
		t.Roles = []string{"user"}
	}
	if t.Username == "" {
		t.Username = "alice"
	}
	if t.IssuedAt.IsZero() {
		t.IssuedAt = time.Now()
	}
	if t.AuthTime.IsZero() {
		t.AuthTime = t.IssuedAt
	}
	if t.Lifetime == 0 {
		t.Lifetime = 10 * time.Minute
	}
	if t.Issuer == "" {
		t.Issuer = r.Issuer()
	}
	if t.Typ == "" {
		t.Typ = "Bearer"
	}
	if t.Audience == nil {
		t.Audience = []string{ClientID, "account"}
	}
	if t.AZP == "" {
		t.AZP = BFFClientID
	}
	var aud any = t.Audience
	if len(t.Audience) == 1 {
		aud = t.Audience[0]
	}
	return r.Sign(map[string]any{
		"iss": t.Issuer, "sub": t.Subject, "sid": t.SID, "typ": t.Typ, "azp": t.AZP, "aud": aud,
		"iat": t.IssuedAt.Unix(), "exp": t.IssuedAt.Add(t.Lifetime).Unix(), "jti": "at-" + randID(),
		"scope": t.Scope, "realm_access": map[string]any{"roles": t.Roles},
		"preferred_username": t.Username, "acr": "1", "auth_time": t.AuthTime.Unix(),
	})
}

// Sign signs arbitrary claims with the realm's key (JOSE typ JWT).
func (r *Realm) Sign(claims map[string]any) string {
	return r.SignWith(r.signer, claims)
}

// SignWith signs claims with a caller-made signer, for forged-token tests.
func (r *Realm) SignWith(s jose.Signer, claims map[string]any) string {
	b, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	obj, err := s.Sign(b)
	if err != nil {
		panic(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return out
}

// LogoutSigner returns a signer with the realm key and JOSE typ logout+jwt, as Keycloak sends.
func (r *Realm) LogoutSigner() jose.Signer {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: r.key},
		(&jose.SignerOptions{}).WithType("logout+jwt").WithHeader("kid", r.kid))
	if err != nil {
		panic(err)
	}
	return s
}

// Key returns the realm's private key (for HS256-with-public-key style forgeries).
func (r *Realm) Key() *rsa.PrivateKey { return r.key }

// KeyID returns the kid of the realm's key.
func (r *Realm) KeyID() string { return r.kid }

// LogoutClaims returns Keycloak-shaped logout token claims for sid/sub; edit before signing.
func (r *Realm) LogoutClaims(sub, sid string) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": r.Issuer(), "aud": LogoutAudience, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": "lt-" + randID(), "typ": "Logout", "sid": sid, "sub": sub,
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{"revoke_offline_access": true}},
	}
	if sid == "" {
		delete(c, "sid")
	}
	if sub == "" {
		delete(c, "sub")
	}
	return c
}

// LogoutToken mints a valid logout token for sid/sub.
func (r *Realm) LogoutToken(sub, sid string) string {
	return r.SignWith(r.LogoutSigner(), r.LogoutClaims(sub, sid))
}

// RefreshToken mints a refresh token of session sid for sub, for the refresh_token grant.
func (r *Realm) RefreshToken(sub, sid string) string {
	rt := "kc-rt-" + randID()
	r.mu.Lock()
	r.refresh[rt] = [2]string{sub, sid}
	r.mu.Unlock()
	return rt
}

// token serves the refresh_token grant like Keycloak: new access, refresh and ID tokens for a
// live session (the old refresh token stays usable, as with Keycloak's default: Revoke Refresh
// Token off); invalid_grant for an unknown token or an ended session. Any client
// id is accepted, by client_secret_basic or client_secret_post.
func (r *Realm) token(w http.ResponseWriter, req *http.Request) {
	id, _, basic := req.BasicAuth()
	if !basic {
		id = req.PostFormValue("client_id")
	}
	if id == "" {
		writeJSONStatus(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client"})
		return
	}
	if req.PostFormValue("grant_type") != "refresh_token" {
		writeJSONStatus(w, http.StatusBadRequest, map[string]any{"error": "unsupported_grant_type"})
		return
	}
	r.mu.Lock()
	s, known := r.refresh[req.PostFormValue("refresh_token")]
	ended := r.inactive[s[1]]
	r.mu.Unlock()
	if !known || ended {
		writeJSONStatus(w, http.StatusBadRequest, map[string]any{"error": "invalid_grant", "error_description": "Session not active"})
		return
	}
	r.Refreshes.Add(1)
	now := time.Now()
	writeJSON(w, map[string]any{
		"access_token": r.AccessToken(Token{Subject: s[0], SID: s[1], Lifetime: 5 * time.Minute}), "token_type": "Bearer",
		"expires_in": 300, "refresh_token": r.RefreshToken(s[0], s[1]), "refresh_expires_in": 1800,
		"id_token": r.Sign(map[string]any{"iss": r.Issuer(), "sub": s[0], "sid": s[1], "aud": id, "typ": "ID",
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}),
		"session_state": s[1], "scope": "openid profile email",
	})
}

func (r *Realm) discovery(w http.ResponseWriter, _ *http.Request) {
	iss := r.Issuer()
	writeJSON(w, map[string]any{
		"issuer": iss, "jwks_uri": iss + "/protocol/openid-connect/certs",
		"authorization_endpoint":                iss + "/protocol/openid-connect/auth",
		"token_endpoint":                        iss + "/protocol/openid-connect/token",
		"introspection_endpoint":                iss + "/protocol/openid-connect/token/introspect",
		"end_session_endpoint":                  iss + "/protocol/openid-connect/logout",
		"id_token_signing_alg_values_supported": []string{"PS384", "ES384", "RS384", "HS256", "HS512", "ES256", "RS256", "HS384", "ES512", "PS256", "PS512", "RS512", "EdDSA"},
		"backchannel_logout_supported":          true,
		"backchannel_logout_session_supported":  true,
	})
}

func (r *Realm) certs(w http.ResponseWriter, _ *http.Request) {
	r.CertsFetches.Add(1)
	r.mu.Lock()
	keys := append([]jose.JSONWebKey{{Key: &r.key.PublicKey, KeyID: r.kid, Algorithm: "RS256", Use: "sig"}}, r.extra...)
	r.mu.Unlock()
	writeJSON(w, jose.JSONWebKeySet{Keys: keys})
}

// AddKey publishes pub under kid in the realm's JWKS from now on, as Keycloak does for a new
// key provider: tokens signed with its private key (SignWith) are the realm's after a rotation.
func (r *Realm) AddKey(pub *rsa.PublicKey, kid string) {
	r.mu.Lock()
	r.extra = append(r.extra, jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: "RS256", Use: "sig"})
	r.mu.Unlock()
}

func (r *Realm) introspect(w http.ResponseWriter, req *http.Request) {
	r.Introspections.Add(1)
	id, secret, ok := req.BasicAuth()
	if !ok || id != ClientID || secret != ClientSecret {
		writeJSONStatus(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client"})
		return
	}
	tok := req.PostFormValue("token")
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		writeJSON(w, map[string]any{"active": false})
		return
	}
	payload, err := jws.Verify(&r.key.PublicKey)
	if err != nil {
		writeJSON(w, map[string]any{"active": false})
		return
	}
	var c map[string]any
	_ = json.Unmarshal(payload, &c)
	exp, _ := c["exp"].(float64)
	sid, _ := c["sid"].(string)
	r.mu.Lock()
	ended := r.inactive[sid]
	r.mu.Unlock()
	now := time.Now().Add(time.Duration(r.ahead.Load()))
	if ended || now.Unix() >= int64(exp) || (!r.noAudienceRule.Load() && !hasAudience(c["aud"], id)) {
		writeJSON(w, map[string]any{"active": false})
		return
	}
	c["active"] = true
	c["client_id"] = c["azp"]
	c["username"] = c["preferred_username"]
	c["token_type"] = "Bearer"
	writeJSON(w, c)
}

// hasAudience reports whether the aud claim (a string or an array) contains id.
func hasAudience(aud any, id string) bool {
	switch a := aud.(type) {
	case string:
		return a == id
	case []any:
		for _, x := range a {
			if x == id {
				return true
			}
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, v any) { writeJSONStatus(w, http.StatusOK, v) }

// writeJSONStatus writes v as JSON with status; the Content-Type is set before the status, or
// clients such as golang.org/x/oauth2 would not read the error body as JSON.
func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randID() string {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
