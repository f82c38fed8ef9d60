package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Config configures the BFF.
type Config struct {
	Listen, PublicURL             string
	KeycloakIssuer, ClientID      string
	KeycloakSecret                string
	TokengateURL, TokengateSecret string
	ServiceURL, Audience          string
	Debug                         bool
	Logger                        *slog.Logger
	HTTPClient                    *http.Client
	ProviderWait                  time.Duration // how long New waits for Keycloak's discovery (default 2m)
}

// BFF holds the sessions and talks to Keycloak, tokengate and the service.
type BFF struct {
	cfg        Config
	log        *slog.Logger
	provider   *oidc.Provider
	oauth      oauth2.Config
	idVerifier *oidc.IDTokenVerifier
	ltVerifier *oidc.IDTokenVerifier
	endSession string
	hc         *http.Client

	mu          sync.Mutex
	sessions    map[string]*Session
	pending     map[string]pendingLogin
	backchannel []BackchannelLogout
}

type pendingLogin struct {
	verifier, nonce string
	created         time.Time
}

// BackchannelLogout is one logout token received on /backchannel-logout.
type BackchannelLogout struct {
	At       time.Time `json:"at"`
	SID      string    `json:"sid"`
	Sub      string    `json:"sub"`
	Sessions int       `json:"sessions_ended"`
}

// Event is one line of a session's history (shown on the page and in /debug/sessions).
type Event struct {
	At   time.Time `json:"at"`
	What string    `json:"what"`
}

// Session is one logged-in browser. Its tokens never leave the server (except /debug).
type Session struct {
	mu sync.Mutex // serialises network operations on this session

	ID       string `json:"id"`
	Username string `json:"username"`
	Subject  string `json:"sub"`
	SID      string `json:"sid"`

	KC      *oauth2.Token `json:"-"`
	IDToken string        `json:"-"`

	Internal        string        `json:"-"`
	InternalRefresh string        `json:"-"`
	InternalExpiry  time.Time     `json:"internal_expiry"`
	InternalTTL     time.Duration `json:"-"`
	Renewals        int           `json:"renewals"`
	Exchanges       int           `json:"exchanges"`

	LastStatus int       `json:"last_status"`
	LastAnswer string    `json:"last_answer"`
	LastCallAt time.Time `json:"last_call_at"`

	Ended       bool      `json:"ended"`
	EndedReason string    `json:"ended_reason,omitempty"`
	EndedAt     time.Time `json:"ended_at,omitzero"`
	Events      []Event   `json:"events"`
}

// New discovers Keycloak (waiting for it) and returns a BFF.
func New(ctx context.Context, cfg Config) (*BFF, error) {
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://" + cfg.Listen
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	cfg.TokengateURL = strings.TrimSuffix(cfg.TokengateURL, "/")
	if cfg.KeycloakSecret == "" || cfg.TokengateSecret == "" {
		return nil, errors.New("the Keycloak and tokengate client secrets are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.ProviderWait == 0 {
		cfg.ProviderWait = 2 * time.Minute
	}
	pctx := oidc.ClientContext(ctx, cfg.HTTPClient)
	var p *oidc.Provider
	deadline := time.Now().Add(cfg.ProviderWait)
	for {
		var err error
		if p, err = oidc.NewProvider(pctx, cfg.KeycloakIssuer); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("keycloak discovery at %s: %w", cfg.KeycloakIssuer, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := p.Claims(&meta); err != nil || meta.EndSession == "" {
		return nil, errors.New("keycloak discovery has no end_session_endpoint")
	}
	b := &BFF{
		cfg: cfg, log: cfg.Logger, provider: p, endSession: meta.EndSession, hc: cfg.HTTPClient,
		oauth: oauth2.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.KeycloakSecret, Endpoint: p.Endpoint(),
			RedirectURL: cfg.PublicURL + "/callback", Scopes: []string{oidc.ScopeOpenID, "profile"},
		},
		idVerifier: p.Verifier(&oidc.Config{ClientID: cfg.ClientID}),
		// Logout tokens carry no nonce and aud = this client; exp is checked.
		ltVerifier: p.Verifier(&oidc.Config{ClientID: cfg.ClientID}),
		sessions:   map[string]*Session{},
		pending:    map[string]pendingLogin{},
	}
	return b, nil
}

func (s *Session) event(format string, a ...any) {
	s.Events = append(s.Events, Event{At: time.Now(), What: fmt.Sprintf(format, a...)})
}

func (s *Session) end(reason string) {
	if s.Ended {
		return
	}
	s.Ended, s.EndedReason, s.EndedAt = true, reason, time.Now()
	s.event("session ended: %s", reason)
	// Tokens are dropped; /debug keeps only what an attacker would already have copied.
	s.KC, s.InternalRefresh = nil, ""
}

func (b *BFF) kcContext(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, b.hc)
}

// tokenResponse is tokengate's token endpoint answer (success or RFC 6749 error).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

// errInvalidGrant is tokengate refusing a renewal or exchange for good.
var errInvalidGrant = errors.New("invalid_grant")

func (b *BFF) tokengate(ctx context.Context, form url.Values) (tokenResponse, error) {
	var tr tokenResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.cfg.TokengateURL+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return tr, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(b.cfg.ClientID), url.QueryEscape(b.cfg.TokengateSecret))
	resp, err := b.hc.Do(req)
	if err != nil {
		return tr, fmt.Errorf("tokengate: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(body, &tr); err != nil {
		return tr, fmt.Errorf("tokengate: HTTP %d: %.200s", resp.StatusCode, body)
	}
	if resp.StatusCode != http.StatusOK {
		if tr.Error == "invalid_grant" {
			return tr, fmt.Errorf("%w: %s", errInvalidGrant, tr.Description)
		}
		return tr, fmt.Errorf("tokengate: HTTP %d %s: %s", resp.StatusCode, tr.Error, tr.Description)
	}
	return tr, nil
}

func (b *BFF) setInternal(s *Session, tr tokenResponse) {
	s.Internal = tr.AccessToken
	if tr.RefreshToken != "" { // exchanges issue one; renewals keep the current one (RFC 6749 §6)
		s.InternalRefresh = tr.RefreshToken
	}
	s.InternalTTL = time.Duration(tr.ExpiresIn) * time.Second
	s.InternalExpiry = time.Now().Add(s.InternalTTL)
}

// exchange trades the session's current Keycloak access token for an internal token.
func (b *BFF) exchange(ctx context.Context, s *Session) error {
	tr, err := b.tokengate(ctx, url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {s.KC.AccessToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {b.cfg.Audience},
	})
	if err != nil {
		s.event("exchange failed: %v", err)
		return err
	}
	b.setInternal(s, tr)
	s.Exchanges++
	s.event("exchanged the Keycloak access token for an internal token (%s)", s.InternalTTL)
	return nil
}

// renew keeps the session's internal token fresh: it refreshes at Keycloak (and exchanges the
// new Keycloak token) when the Keycloak token is about to expire, otherwise renews at tokengate.
// invalid_grant ends the session.
func (b *BFF) renew(ctx context.Context, s *Session, force bool) {
	if s.Ended {
		return
	}
	now := time.Now()
	if !force && s.InternalExpiry.Sub(now) > s.InternalTTL/3 {
		return
	}
	if s.KC.Expiry.Sub(now) < 15*time.Second {
		src := b.oauth.TokenSource(b.kcContext(ctx), &oauth2.Token{RefreshToken: s.KC.RefreshToken, Expiry: now.Add(-time.Second)})
		nt, err := src.Token()
		if err != nil {
			var re *oauth2.RetrieveError
			if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
				s.end("Keycloak refused the refresh token: " + re.ErrorDescription)
				return
			}
			s.event("Keycloak refresh failed: %v", err)
			return
		}
		if idt, ok := nt.Extra("id_token").(string); ok && idt != "" {
			s.IDToken = idt
		}
		s.KC = nt
		s.event("refreshed the Keycloak tokens")
		if err := b.exchange(ctx, s); errors.Is(err, errInvalidGrant) {
			s.end("tokengate refused the exchange (invalid_grant)")
		}
		return
	}
	tr, err := b.tokengate(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.InternalRefresh}})
	if errors.Is(err, errInvalidGrant) {
		s.event("renewal refused: %v", err)
		s.end("tokengate refused the renewal (invalid_grant)")
		return
	}
	if err != nil {
		s.event("renewal failed: %v", err)
		return
	}
	b.setInternal(s, tr)
	s.Renewals++
}

// RenewLoop renews every live session's internal token before it expires.
func (b *BFF) RenewLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range b.liveSessions() {
			s.mu.Lock()
			b.renew(ctx, s, false)
			s.mu.Unlock()
		}
		b.gcPending()
	}
}

func (b *BFF) liveSessions() []*Session {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*Session
	for _, s := range b.sessions {
		out = append(out, s)
	}
	return out
}

func (b *BFF) gcPending() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, p := range b.pending {
		if time.Since(p.created) > 10*time.Minute {
			delete(b.pending, k)
		}
	}
}

// callService calls the sample service with the session's internal token.
func (b *BFF) callService(ctx context.Context, s *Session) {
	if s.Ended {
		return
	}
	b.renew(ctx, s, false)
	if s.Ended {
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.cfg.ServiceURL, nil)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+s.Internal)
	s.LastCallAt = time.Now()
	resp, err := b.hc.Do(req)
	if err != nil {
		s.LastStatus, s.LastAnswer = 0, err.Error()
		s.event("service call failed: %v", err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	s.LastStatus, s.LastAnswer = resp.StatusCode, strings.TrimSpace(string(body))
	s.event("service answered %d", resp.StatusCode)
}

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
