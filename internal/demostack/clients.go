package demostack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

var hc = &http.Client{Timeout: 30 * time.Second}

// TokenResponse is an OAuth token endpoint answer (success or error) with its HTTP status.
type TokenResponse struct {
	Status       int    `json:"-"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	ExpiresIn    int    `json:"expires_in"`
	SessionState string `json:"session_state"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

func postForm(ctx context.Context, u, user, pass string, form url.Values, header http.Header) (TokenResponse, error) {
	var tr TokenResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return tr, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return tr, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	tr.Status = resp.StatusCode
	if len(body) > 0 {
		if err := json.Unmarshal(body, &tr); err != nil {
			return tr, fmt.Errorf("POST %s: HTTP %d, not JSON: %.200s", u, resp.StatusCode, body)
		}
	}
	return tr, nil
}

// PasswordGrant logs user in at Keycloak as client bff (direct access grants are on for it).
func (s *Stack) PasswordGrant(ctx context.Context, user, pass string) (TokenResponse, error) {
	return s.PasswordGrantAs(ctx, "bff", BFFKeycloakSecret, user, pass)
}

// PasswordGrantAs logs user in at Keycloak as the given confidential client.
func (s *Stack) PasswordGrantAs(ctx context.Context, client, secret, user, pass string) (TokenResponse, error) {
	tr, err := postForm(ctx, s.KeycloakIssuer()+"/protocol/openid-connect/token", client, secret,
		url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}, "scope": {"openid"}}, nil)
	if err == nil && tr.Status != http.StatusOK {
		err = fmt.Errorf("password grant for %s at %s: HTTP %d %s: %s", user, client, tr.Status, tr.Error, tr.Description)
	}
	return tr, err
}

// KeycloakLogout ends a Keycloak session the way an RP does with its refresh token (POST
// /logout); Keycloak sends the back-channel logout before it answers.
func (s *Stack) KeycloakLogout(ctx context.Context, refreshToken string) (int, error) {
	tr, err := postForm(ctx, s.KeycloakIssuer()+"/protocol/openid-connect/logout", "bff", BFFKeycloakSecret,
		url.Values{"refresh_token": {refreshToken}}, nil)
	return tr.Status, err
}

// Exchange trades a Keycloak access token at tokengate (RFC 8693) as client bff.
func (s *Stack) Exchange(ctx context.Context, kcAccessToken string) (TokenResponse, error) {
	return s.ExchangeAs(ctx, "bff", BFFTokengateSecret, kcAccessToken)
}

// ExchangeAs trades a Keycloak access token at tokengate as the given tokengate client.
func (s *Stack) ExchangeAs(ctx context.Context, client, secret, kcAccessToken string) (TokenResponse, error) {
	return postForm(ctx, s.TokengateURL()+"/token", client, secret, url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {kcAccessToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {Audience},
	}, nil)
}

// Renew renews an internal token with its refresh token at tokengate.
func (s *Stack) Renew(ctx context.Context, refreshToken string) (TokenResponse, error) {
	return postForm(ctx, s.TokengateURL()+"/token", "bff", BFFTokengateSecret,
		url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}, nil)
}

// CallService calls demo-service with an internal token; it returns the status, the body and
// the WWW-Authenticate header.
func (s *Stack) CallService(ctx context.Context, token string) (int, string, string, error) {
	return s.CallURL(ctx, s.ServiceURL(), token)
}

// Delegate trades an internal token at tokengate for a delegated one for audience (RFC 8693
// delegation, docs/delegation.md) as the given service client.
func (s *Stack) Delegate(ctx context.Context, client, secret, subjectToken, audience string) (TokenResponse, error) {
	return postForm(ctx, s.TokengateURL()+"/token", client, secret, url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {subjectToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {audience},
	}, nil)
}

// CallURL is CallService for any URL (payments, demo-service's /api/downstream).
func (s *Stack) CallURL(ctx context.Context, u, token string) (int, string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), resp.Header.Get("WWW-Authenticate"), nil
}

// adminToken is a master-realm admin access token (admin/admin via admin-cli).
func (s *Stack) adminToken(ctx context.Context) (string, error) {
	tr, err := postForm(ctx, s.KeycloakURL()+"/realms/master/protocol/openid-connect/token", "", "", url.Values{
		"grant_type": {"password"}, "client_id": {"admin-cli"}, "username": {"admin"}, "password": {"admin"},
	}, nil)
	if err != nil {
		return "", err
	}
	if tr.AccessToken == "" {
		return "", fmt.Errorf("admin token: HTTP %d %s", tr.Status, tr.Error)
	}
	return tr.AccessToken, nil
}

// adminCall sends one admin REST request for the demo realm and checks its status.
func (s *Stack) adminCall(ctx context.Context, method, path string, body any, want int) error {
	tok, err := s.adminToken(ctx)
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.KeycloakURL()+"/admin/realms/"+Realm+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: HTTP %d %s", method, path, resp.StatusCode, b)
	}
	return nil
}

// AdminDeleteSession deletes a user session through Keycloak's admin REST API (master admin
// admin/admin via admin-cli).
func (s *Stack) AdminDeleteSession(ctx context.Context, sid string) error {
	return s.adminCall(ctx, http.MethodDelete, "/sessions/"+url.PathEscape(sid), nil, http.StatusNoContent)
}

// AdminCreateClient creates a confidential client with direct access grants in the demo
// realm, without protocol mappers: its access tokens' aud is just "account".
func (s *Stack) AdminCreateClient(ctx context.Context, clientID, secret string) error {
	return s.adminCall(ctx, http.MethodPost, "/clients", map[string]any{
		"clientId": clientID, "secret": secret, "enabled": true, "protocol": "openid-connect",
		"publicClient": false, "clientAuthenticatorType": "client-secret", "standardFlowEnabled": false,
		"directAccessGrantsEnabled": true,
	}, http.StatusCreated)
}

// Introspect asks Keycloak's introspection endpoint about token as client tokengate.
func (s *Stack) Introspect(ctx context.Context, token string) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.KeycloakIssuer()+"/protocol/openid-connect/token/introspect",
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("tokengate", TokengateKCSecret)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("introspection: HTTP %d", resp.StatusCode)
	}
	return out, json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out)
}

// BFFSession is a session as demo-bff's DEMO-ONLY /debug/sessions shows it.
type BFFSession struct {
	ID                   string    `json:"id"`
	Username             string    `json:"username"`
	Subject              string    `json:"sub"`
	SID                  string    `json:"sid"`
	InternalToken        string    `json:"internal_token"`
	InternalRefreshToken string    `json:"internal_refresh_token"`
	KeycloakAccessToken  string    `json:"keycloak_access_token"`
	InternalExpiry       time.Time `json:"internal_expiry"`
	Renewals             int       `json:"renewals"`
	Exchanges            int       `json:"exchanges"`
	LastStatus           int       `json:"last_status"`
	LastAnswer           string    `json:"last_answer"`
	Ended                bool      `json:"ended"`
	EndedReason          string    `json:"ended_reason"`
	EndedAt              time.Time `json:"ended_at"`
}

// BFFSessions reads demo-bff's sessions.
func (s *Stack) BFFSessions(ctx context.Context) ([]BFFSession, error) {
	var out struct {
		Sessions []BFFSession `json:"sessions"`
	}
	return out.Sessions, s.getJSON(ctx, s.BFFURL()+"/debug/sessions", &out)
}

// BackchannelLogout is one logout demo-bff received on its own back-channel endpoint.
type BackchannelLogout struct {
	At       time.Time `json:"at"`
	SID      string    `json:"sid"`
	Sub      string    `json:"sub"`
	Sessions int       `json:"sessions_ended"`
}

// BFFBackchannel lists the logouts demo-bff received.
func (s *Stack) BFFBackchannel(ctx context.Context) ([]BackchannelLogout, error) {
	var out struct {
		Logouts []BackchannelLogout `json:"logouts"`
	}
	return out.Logouts, s.getJSON(ctx, s.BFFURL()+"/debug/backchannel", &out)
}

func (s *Stack) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// SessionRevocation is tokengate's admin view of one Keycloak session.
type SessionRevocation struct {
	SID        string `json:"sid"`
	Revoked    bool   `json:"revoked"`
	Revocation struct {
		At     time.Time `json:"at"`
		Reason string    `json:"reason"`
	} `json:"revocation"`
}

// AdminSession asks tokengate's admin API whether a session is revoked, and why.
func (s *Stack) AdminSession(ctx context.Context, sid string) (SessionRevocation, error) {
	var out SessionRevocation
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.AdminURL()+"/admin/sessions/"+url.PathEscape(sid), nil)
	if err != nil {
		return out, err
	}
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	resp, err := hc.Do(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("GET /admin/sessions/%s: HTTP %d", sid, resp.StatusCode)
	}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}
