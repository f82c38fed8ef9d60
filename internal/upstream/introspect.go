package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Introspection is the provider's RFC 7662 answer, with Keycloak's extra claims.
type Introspection struct {
	Active            bool   `json:"active"`
	Subject           string `json:"sub"`
	SID               string `json:"sid"`
	SessionState      string `json:"session_state"`
	Scope             string `json:"scope"`
	ClientID          string `json:"client_id"`
	AuthorizedParty   string `json:"azp"`
	Username          string `json:"username"`
	PreferredUsername string `json:"preferred_username"`
	ACR               string `json:"acr"`
	TokenType         string `json:"typ"`
	Issuer            string `json:"iss"`
	Expiry            int64  `json:"exp"`
	IssuedAt          int64  `json:"iat"`
	AuthTime          int64  `json:"auth_time"`
	RealmAccess       struct {
		Roles []string `json:"roles"`
	} `json:"realm_access"`
}

// Session returns the session id: sid, falling back to session_state.
func (i Introspection) Session() string {
	if i.SID != "" {
		return i.SID
	}
	return i.SessionState
}

// Introspect asks the provider whether token is active. Transport failures and non-200 answers
// wrap ErrUnavailable; an inactive token is a successful answer with Active false.
func (c *Client) Introspect(ctx context.Context, token string) (Introspection, error) {
	d, err := c.discover(ctx)
	if err != nil {
		return Introspection{}, err
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.introspection, strings.NewReader(form.Encode()))
	if err != nil {
		return Introspection{}, fmt.Errorf("introspect: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(c.cfg.ClientID), url.QueryEscape(c.cfg.ClientSecret))
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return Introspection{}, fmt.Errorf("%w: introspect: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Introspection{}, fmt.Errorf("%w: introspect: read: %v", ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Introspection{}, fmt.Errorf("%w: introspect: status %d", ErrUnavailable, resp.StatusCode)
	}
	var out Introspection
	if err := json.Unmarshal(body, &out); err != nil {
		return Introspection{}, fmt.Errorf("%w: introspect: decode: %v", ErrUnavailable, err)
	}
	return out, nil
}
