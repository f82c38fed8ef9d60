package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokengate/tokengate/verifier"
)

// envClientSecret carries this service's client secret at tokengate (for -client-id).
const envClientSecret = "TOKENGATE_CLIENT_SECRET"

// delegator answers GET /api/downstream: it trades the caller's verified token for a delegated
// one (RFC 8693 token exchange at tokengate's /token as this service's own client, the
// received token as subject_token) meant for audience only, and calls the one downstream URL
// fixed at start with it. Nothing of the caller's request but its bearer token reaches
// tokengate, and nothing of it reaches the downstream service; the delegated token is never
// part of the answer.
type delegator struct {
	tokenURL         string // tokengate's token endpoint
	clientID, secret string // this service at tokengate
	audience         string // the downstream service's audience
	target           string // the downstream URL
	hc               *http.Client
}

// newDelegator checks the -call flags; tokenURL is tokengate's token endpoint.
func newDelegator(tokenURL, clientID, secret, audience, target string) (*delegator, error) {
	u, err := url.Parse(target)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, fmt.Errorf("-call %q: want an absolute http(s) URL", target)
	case clientID == "" || secret == "":
		return nil, fmt.Errorf("-call needs -client-id and %s (this service's client at tokengate)", envClientSecret)
	case strings.TrimSpace(audience) == "":
		return nil, errors.New("-call needs -call-audience")
	}
	return &delegator{tokenURL: tokenURL, clientID: clientID, secret: secret, audience: audience, target: target,
		hc: &http.Client{Timeout: 5 * time.Second}}, nil
}

// tokenAnswer is the part of tokengate's /token answer the delegator reads.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func (d *delegator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The verifier middleware ran first: the bearer token is one this service accepts.
	subject, _ := verifier.BearerToken(r.Header.Get("Authorization"))
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {subject},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {d.audience},
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, d.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		unavailable(w, "tokengate's token endpoint: "+err.Error())
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(d.clientID), url.QueryEscape(d.secret)) // RFC 6749 §2.3.1
	status, body, err := d.do(req)
	var ta tokenAnswer
	if err == nil {
		err = json.Unmarshal(body, &ta)
	}
	switch {
	case err != nil || status >= 500:
		unavailable(w, fmt.Sprintf("tokengate could not delegate the token (HTTP %d)", status))
		return
	case status != http.StatusOK || ta.AccessToken == "":
		writeJSON(w, http.StatusForbidden, map[string]any{"error": "delegation_refused",
			"error_description": fmt.Sprintf("tokengate refused to delegate the token to %s: %s (%s)", d.audience, ta.Error, ta.Description)})
		return
	}
	down, err := http.NewRequestWithContext(r.Context(), http.MethodGet, d.target, nil)
	if err != nil {
		unavailable(w, "downstream: "+err.Error())
		return
	}
	down.Header.Set("Authorization", "Bearer "+ta.AccessToken)
	status, body, err = d.do(down)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]any{"error": "downstream_unreachable", "audience": d.audience})
		return
	}
	answer := json.RawMessage(body)
	if !json.Valid(body) {
		answer, _ = json.Marshal(string(body))
	}
	code := http.StatusOK
	if status != http.StatusOK {
		code = http.StatusBadGateway
	}
	writeJSON(w, code, map[string]any{"audience": d.audience, "status": status, "answer": answer})
}

// do sends req and reads at most 64 KiB of the answer.
func (d *delegator) do(req *http.Request) (int, []byte, error) {
	resp, err := d.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, b, err
}

func unavailable(w http.ResponseWriter, why string) {
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": why})
}
