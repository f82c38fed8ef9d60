package issuer

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// AccessClaims are the claims of an internal token (RFC 9068).
type AccessClaims struct {
	Issuer            string   `json:"iss"`
	Subject           string   `json:"sub"`
	Audience          []string `json:"aud"`
	Expiry            int64    `json:"exp"`
	IssuedAt          int64    `json:"iat"`
	JTI               string   `json:"jti"`
	ClientID          string   `json:"client_id"`
	SID               string   `json:"sid,omitempty"`
	Scope             string   `json:"scope,omitempty"`
	Roles             []string `json:"roles,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	ACR               string   `json:"acr,omitempty"`
	AuthTime          int64    `json:"auth_time,omitempty"`
}

// grant is the sealed content of a refresh token: everything renewal needs, so renewal writes
// nothing. It includes the upstream access token, used only to re-introspect the session.
type grant struct {
	Version           int      `json:"v"`
	ClientID          string   `json:"cid"`
	Subject           string   `json:"sub"`
	SID               string   `json:"sid,omitempty"`
	Audience          []string `json:"aud"`
	Scope             string   `json:"scope,omitempty"`
	Roles             []string `json:"roles,omitempty"`
	PreferredUsername string   `json:"pu,omitempty"`
	ACR               string   `json:"acr,omitempty"`
	AuthTime          int64    `json:"at,omitempty"`
	UpstreamIssuedAt  int64    `json:"uiat"`
	UpstreamExpiry    int64    `json:"uexp"`
	UpstreamToken     string   `json:"ut"`
	IssuedAt          int64    `json:"iat"`

	// upstreamKey is the digest of UpstreamToken (the introspection cache's key), computed
	// once when the grant is made or unsealed, not on every renewal.
	upstreamKey [32]byte
}

// upstreamDigest returns the digest of the grant's upstream token.
func (g *grant) upstreamDigest() [32]byte {
	if g.upstreamKey != ([32]byte{}) {
		return g.upstreamKey
	}
	return digest(g.UpstreamToken)
}

const grantVersion = 1

// TokenResponse is the token endpoint's success answer (RFC 6749 §5.1, RFC 8693 §2.2.1).
type TokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type,omitempty"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	RefreshToken    string `json:"refresh_token,omitempty"`
	Scope           string `json:"scope,omitempty"`
}

// mint signs an internal token for g, living TTL but never past the upstream token's expiry.
func (i *Issuer) mint(g *grant, scope string, now time.Time) (string, AccessClaims, error) {
	exp := now.Add(i.cfg.TTL).Unix()
	if exp > g.UpstreamExpiry {
		exp = g.UpstreamExpiry
	}
	c := AccessClaims{
		Issuer: i.cfg.Issuer, Subject: g.Subject, Audience: g.Audience,
		Expiry: exp, IssuedAt: now.Unix(), JTI: newJTI(), ClientID: g.ClientID,
		SID: g.SID, Scope: scope, Roles: g.Roles, PreferredUsername: g.PreferredUsername,
		ACR: g.ACR, AuthTime: g.AuthTime,
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", c, fmt.Errorf("encode claims: %w", err)
	}
	tok, _, err := i.keys.Sign(payload)
	if err != nil {
		return "", c, err
	}
	return tok, c, nil
}

// narrowScope returns requested if it is a subset of granted (all of granted when empty).
func narrowScope(granted, requested string) (string, error) {
	if strings.TrimSpace(requested) == "" {
		return granted, nil
	}
	have := map[string]bool{}
	for _, s := range strings.Fields(granted) {
		have[s] = true
	}
	var out []string
	seen := map[string]bool{}
	for _, s := range strings.Fields(requested) {
		if !have[s] {
			return "", oauthErr(CodeInvalidScope, "scope "+quote(s)+" was not granted", nil)
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return strings.Join(out, " "), nil
}

// sessionStart is when the upstream session began: auth_time, or the upstream token's iat when
// the provider gave none.
func (g *grant) sessionStart() int64 {
	if g.AuthTime > 0 {
		return g.AuthTime
	}
	return g.UpstreamIssuedAt
}
