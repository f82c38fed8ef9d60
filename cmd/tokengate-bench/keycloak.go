package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The demo realm's clients and users (deploy/keycloak/realm-demo.json).
const (
	realm           = "demo"
	bffID           = "bff"
	bffSecret       = "bff-secret-0123456789-abcdefghijkl"
	introspectID    = "tokengate"
	introspectSecre = "tokengate-secret-0123456789-abcdefg"
)

var users = [][2]string{{"alice", "alice-password"}, {"bob", "bob-password"}}

// keycloak talks to the real Keycloak as a BFF (password and refresh grants, RP logout), as a
// service (introspection) and as an administrator (session delete).
type keycloak struct {
	base string
	hc   *http.Client

	adminMu  sync.Mutex
	adminTok string
	adminAt  time.Time
}

func newKeycloak(base string) *keycloak {
	return &keycloak{base: strings.TrimRight(base, "/"),
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}}
}

func (k *keycloak) issuer() string { return k.base + "/realms/" + realm }

type kcTokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	SessionState string `json:"session_state"`
}

// post sends a form; basic auth when user is set. It returns status and body.
func (k *keycloak) do(ctx context.Context, method, path string, form url.Values, user, pass, bearer string) (int, []byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, k.base+path, body)
	if err != nil {
		return 0, nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := k.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (k *keycloak) grant(ctx context.Context, form url.Values) (kcTokens, error) {
	code, b, err := k.do(ctx, http.MethodPost, "/realms/"+realm+"/protocol/openid-connect/token", form, bffID, bffSecret, "")
	if err != nil {
		return kcTokens{}, err
	}
	if code != 200 {
		return kcTokens{}, fmt.Errorf("keycloak %s grant: HTTP %d %s", form.Get("grant_type"), code, b)
	}
	var t kcTokens
	return t, json.Unmarshal(b, &t)
}

// login is a password grant at client bff: one new Keycloak session.
func (k *keycloak) login(ctx context.Context, i int) (kcTokens, error) {
	u := users[i%len(users)]
	return k.grant(ctx, url.Values{"grant_type": {"password"}, "username": {u[0]}, "password": {u[1]}})
}

// refresh is the refresh-token grant a BFF makes without tokengate.
func (k *keycloak) refresh(ctx context.Context, rt string) (kcTokens, error) {
	return k.grant(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

// introspect is what a service checking every request at Keycloak does.
func (k *keycloak) introspect(ctx context.Context, at string) error {
	code, b, err := k.do(ctx, http.MethodPost, "/realms/"+realm+"/protocol/openid-connect/token/introspect",
		url.Values{"token": {at}, "token_type_hint": {"access_token"}}, introspectID, introspectSecre, "")
	if err != nil {
		return err
	}
	if code != 200 || !strings.Contains(string(b), `"active":true`) {
		return fmt.Errorf("introspect: HTTP %d %.100s", code, b)
	}
	return nil
}

// endSession is the RP-initiated logout with the refresh token (what a BFF calls at logout).
func (k *keycloak) endSession(ctx context.Context, rt string) error {
	code, b, err := k.do(ctx, http.MethodPost, "/realms/"+realm+"/protocol/openid-connect/logout",
		url.Values{"refresh_token": {rt}}, bffID, bffSecret, "")
	if err != nil {
		return err
	}
	if code != 204 && code != 200 {
		return fmt.Errorf("end_session: HTTP %d %s", code, b)
	}
	return nil
}

// deleteSession is the admin API's session delete (an operator ending a session).
func (k *keycloak) deleteSession(ctx context.Context, sid string) error {
	tok, err := k.admin(ctx)
	if err != nil {
		return err
	}
	code, b, err := k.do(ctx, http.MethodDelete, "/admin/realms/"+realm+"/sessions/"+url.PathEscape(sid), nil, "", "", tok)
	if err != nil {
		return err
	}
	if code != 204 {
		return fmt.Errorf("admin session delete: HTTP %d %s", code, b)
	}
	return nil
}

// admin returns a master-realm admin token, renewed well before its 60 s lifetime ends.
func (k *keycloak) admin(ctx context.Context) (string, error) {
	k.adminMu.Lock()
	defer k.adminMu.Unlock()
	if k.adminTok != "" && time.Since(k.adminAt) < 30*time.Second {
		return k.adminTok, nil
	}
	code, b, err := k.do(ctx, http.MethodPost, "/realms/master/protocol/openid-connect/token",
		url.Values{"grant_type": {"password"}, "client_id": {"admin-cli"}, "username": {"admin"}, "password": {"admin"}}, "", "", "")
	if err != nil {
		return "", err
	}
	if code != 200 {
		return "", fmt.Errorf("admin token: HTTP %d %s", code, b)
	}
	var t kcTokens
	if err := json.Unmarshal(b, &t); err != nil {
		return "", err
	}
	k.adminTok, k.adminAt = t.AccessToken, time.Now()
	return t.AccessToken, nil
}

// sid reads the session id from a Keycloak access token (no verification: our own token).
func sid(at string) string {
	parts := strings.Split(at, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		SID string `json:"sid"`
	}
	_ = json.Unmarshal(b, &c)
	return c.SID
}
