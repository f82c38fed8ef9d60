package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

type tokenKey struct{}

// TokenFromContext returns the token Middleware verified for this request.
func TokenFromContext(ctx context.Context) (*Token, bool) {
	t, ok := ctx.Value(tokenKey{}).(*Token)
	return t, ok
}

// Middleware lets a request through only with a valid, unrevoked bearer token, which
// handlers find with TokenFromContext. Refusals are RFC 6750 answers: 401 invalid_token (with
// WWW-Authenticate) for a missing, invalid or revoked token; 403 insufficient_scope for an actor
// chain Config.ActorPolicy refuses; 503 while the feed fails closed.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, status, body := v.authorize(r)
		if tok == nil {
			WriteRefusal(w, status, body.Error, body.Description)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok)))
	})
}

type refusal struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// authorize verifies the request's bearer token, or returns the refusal to send.
func (v *Verifier) authorize(r *http.Request) (*Token, int, refusal) {
	raw, ok := BearerToken(r.Header.Get("Authorization"))
	if !ok {
		return nil, http.StatusUnauthorized, refusal{}
	}
	tok, err := v.Verify(r.Context(), raw)
	switch {
	case err == nil:
		return tok, 0, refusal{}
	case errors.Is(err, ErrFeedUnavailable):
		return nil, http.StatusServiceUnavailable, refusal{"temporarily_unavailable", "token revocations cannot be checked"}
	case errors.Is(err, ErrRevoked):
		return nil, http.StatusUnauthorized, refusal{"invalid_token", "the token's session has been logged out"}
	case errors.Is(err, ErrActorRefused):
		return nil, http.StatusForbidden, refusal{"insufficient_scope", "the token's actor chain is not accepted here"}
	default:
		return nil, http.StatusUnauthorized, refusal{"invalid_token", "the token is not valid"}
	}
}

// BearerToken returns the token of an RFC 6750 §2.1 Authorization header value; the scheme
// is case-insensitive (RFC 9110 §11.1), and false means no bearer token was sent.
func BearerToken(authorization string) (string, bool) {
	scheme, tok, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// WriteRefusal writes the RFC 6750 §3 answer Middleware gives, for proxies that call Verify
// themselves: for 401 a bare Bearer challenge when code is empty (no token was sent), else the
// challenge with error and error_description and the same as JSON; for 503 Retry-After: 1 and
// the JSON. Every refusal is Cache-Control: no-store.
func WriteRefusal(w http.ResponseWriter, status int, code, description string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	switch status {
	case http.StatusUnauthorized:
		if code == "" {
			h.Set("WWW-Authenticate", `Bearer realm="tokengate"`)
			w.WriteHeader(status)
			return
		}
		h.Set("WWW-Authenticate", `Bearer realm="tokengate", error="`+code+`", error_description="`+description+`"`)
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", "1")
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(refusal{code, description})
}
