package main

import (
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const cookieName = "demo_bff_session"

// Handler returns the BFF's routes.
func (b *BFF) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", b.page)
	mux.HandleFunc("GET /login", b.login)
	mux.HandleFunc("GET /callback", b.callback)
	mux.HandleFunc("POST /call", b.call)
	mux.HandleFunc("POST /logout", b.logout)
	mux.HandleFunc("POST /backchannel-logout", b.backchannelLogout)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	if b.cfg.Debug {
		mux.HandleFunc("GET /debug/sessions", b.debugSessions)
		mux.HandleFunc("GET /debug/backchannel", b.debugBackchannel)
	}
	return mux
}

func (b *BFF) session(r *http.Request) *Session {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[c.Value]
}

func (b *BFF) login(w http.ResponseWriter, r *http.Request) {
	state, nonce, verifier := randomString(), randomString(), oauth2.GenerateVerifier()
	b.mu.Lock()
	b.pending[state] = pendingLogin{verifier: verifier, nonce: nonce, created: time.Now()}
	b.mu.Unlock()
	http.Redirect(w, r, b.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)), http.StatusFound)
}

func (b *BFF) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		http.Error(w, "login failed: "+e+": "+q.Get("error_description"), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	p, ok := b.pending[q.Get("state")]
	delete(b.pending, q.Get("state"))
	b.mu.Unlock()
	if !ok {
		http.Error(w, "unknown or expired login state", http.StatusBadRequest)
		return
	}
	ctx := b.kcContext(r.Context())
	tok, err := b.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.verifier))
	if err != nil {
		http.Error(w, "code exchange failed: "+err.Error(), http.StatusBadGateway)
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := b.idVerifier.Verify(ctx, rawID)
	if err != nil || idt.Nonce != p.nonce {
		http.Error(w, "ID token refused", http.StatusBadGateway)
		return
	}
	var claims struct {
		SID      string `json:"sid"`
		Username string `json:"preferred_username"`
	}
	_ = idt.Claims(&claims)
	s := &Session{ID: randomString(), Username: claims.Username, Subject: idt.Subject, SID: claims.SID, KC: tok, IDToken: rawID}
	s.event("logged in at Keycloak as %s", claims.Username)
	s.mu.Lock()
	if err := b.exchange(r.Context(), s); err == nil {
		b.callService(r.Context(), s)
	}
	s.mu.Unlock()
	b.mu.Lock()
	b.sessions[s.ID] = s
	b.mu.Unlock()
	b.log.Info("login", "username", s.Username, "sid", s.SID)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.ID, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/", http.StatusFound)
}

func (b *BFF) call(w http.ResponseWriter, r *http.Request) {
	if s := b.session(r); s != nil {
		s.mu.Lock()
		b.callService(r.Context(), s)
		s.mu.Unlock()
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// logout sends the browser to Keycloak's end_session endpoint. The session here ends when
// Keycloak's back-channel logout arrives (relayed by tokengate) or when tokengate refuses the
// next renewal, whichever comes first.
func (b *BFF) logout(w http.ResponseWriter, r *http.Request) {
	s := b.session(r)
	if s == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.mu.Lock()
	idt := s.IDToken
	s.event("logout requested: redirecting to Keycloak's end_session endpoint")
	s.mu.Unlock()
	q := url.Values{
		"id_token_hint":            {idt},
		"post_logout_redirect_uri": {b.cfg.PublicURL + "/"},
		"client_id":                {b.cfg.ClientID},
	}
	http.Redirect(w, r, b.endSession+"?"+q.Encode(), http.StatusSeeOther)
}

// backchannelLogout is this BFF's OIDC Back-Channel Logout endpoint (tokengate relays
// Keycloak's logout tokens here): it verifies the token and ends the matching sessions.
func (b *BFF) backchannelLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	raw := r.PostFormValue("logout_token")
	lt, err := b.ltVerifier.Verify(b.kcContext(r.Context()), raw)
	var claims struct {
		SID    string                     `json:"sid"`
		Events map[string]json.RawMessage `json:"events"`
		Nonce  string                     `json:"nonce"`
	}
	if err == nil {
		err = lt.Claims(&claims)
	}
	_, isLogout := claims.Events["http://schemas.openid.net/event/backchannel-logout"]
	if err != nil || !isLogout || claims.Nonce != "" || (claims.SID == "" && lt.Subject == "") {
		b.log.Warn("back-channel logout refused", "error", errString(err))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	n := 0
	for _, s := range b.liveSessions() {
		s.mu.Lock()
		if !s.Ended && ((claims.SID != "" && s.SID == claims.SID) || (claims.SID == "" && s.Subject == lt.Subject)) {
			s.end("back-channel logout received (relayed by tokengate)")
			n++
		}
		s.mu.Unlock()
	}
	b.mu.Lock()
	b.backchannel = append(b.backchannel, BackchannelLogout{At: time.Now(), SID: claims.SID, Sub: lt.Subject, Sessions: n})
	b.mu.Unlock()
	b.log.Info("back-channel logout", "sid", claims.SID, "sub", lt.Subject, "sessions_ended", n)
	w.WriteHeader(http.StatusOK)
}

func errString(err error) string {
	if err == nil {
		return "not a back-channel logout token"
	}
	return err.Error()
}

// debugSession is a session as /debug/sessions shows it: DEMO ONLY, raw tokens included.
type debugSession struct {
	*Session
	InternalToken        string `json:"internal_token"`
	InternalRefreshToken string `json:"internal_refresh_token,omitempty"`
	KeycloakAccessToken  string `json:"keycloak_access_token,omitempty"`
	KeycloakExpiry       string `json:"keycloak_expiry,omitempty"`
}

func (b *BFF) debugSessions(w http.ResponseWriter, _ *http.Request) {
	out := []json.RawMessage{}
	for _, s := range b.liveSessions() {
		s.mu.Lock()
		d := debugSession{Session: s, InternalToken: s.Internal, InternalRefreshToken: s.InternalRefresh}
		if s.KC != nil {
			d.KeycloakAccessToken, d.KeycloakExpiry = s.KC.AccessToken, s.KC.Expiry.Format(time.RFC3339)
		}
		raw, _ := json.Marshal(d) // under the session's lock
		s.mu.Unlock()
		out = append(out, raw)
	}
	writeJSON(w, map[string]any{"warning": "DEMO ONLY: raw tokens", "sessions": out})
}

func (b *BFF) debugBackchannel(w http.ResponseWriter, _ *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	writeJSON(w, map[string]any{"logouts": b.backchannel})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>tokengate demo BFF</title>
<style>body{font-family:sans-serif;max-width:52em;margin:2em auto}pre{background:#f4f4f4;padding:.6em;white-space:pre-wrap;word-break:break-all}
.ok{color:#070}.bad{color:#b00}</style></head><body>
<h1>tokengate demo BFF</h1>
{{if not .S}}
<p id="status">Not logged in.</p>
<p><a id="login" href="/login">Log in with Keycloak</a> (alice / alice-password or bob / bob-password)</p>
{{else if .S.Ended}}
<p id="status" class="bad">Session of <b>{{.S.Username}}</b> ended: {{.S.EndedReason}}</p>
<p><a id="login" href="/login">Log in again</a></p>
{{else}}
<p id="status" class="ok">Logged in as <b id="username">{{.S.Username}}</b> (Keycloak session {{.S.SID}})</p>
<p>Internal token valid until {{.S.InternalExpiry.Format "15:04:05"}} · renewals {{.S.Renewals}} · exchanges {{.S.Exchanges}}</p>
<form method="post" action="/call" style="display:inline"><button id="call">Call the service</button></form>
<form method="post" action="/logout" style="display:inline"><button id="logout">Log out</button></form>
{{end}}
{{if .S}}
<h2>Last service answer{{if .S.LastStatus}} (HTTP <span id="last-status">{{.S.LastStatus}}</span> at {{.S.LastCallAt.Format "15:04:05"}}){{end}}</h2>
<pre id="answer">{{.S.LastAnswer}}</pre>
<h2>History</h2><pre>{{range .S.Events}}{{.At.Format "15:04:05.000"}}  {{.What}}
{{end}}</pre>
{{end}}
</body></html>`))

func (b *BFF) page(w http.ResponseWriter, r *http.Request) {
	s := b.session(r)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if s == nil {
		_ = pageTmpl.Execute(w, struct{ S *Session }{})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = pageTmpl.Execute(w, struct{ S *Session }{s})
}
