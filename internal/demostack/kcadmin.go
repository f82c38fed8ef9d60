package demostack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// KeycloakAdmin calls Keycloak's admin REST API of the demo realm (path after
// /admin/realms/demo) as the master admin and returns the status and body; body, when not nil,
// is sent as JSON.
func (s *Stack) KeycloakAdmin(ctx context.Context, method, path string, body any) (int, []byte, error) {
	tr, err := postForm(ctx, s.KeycloakURL()+"/realms/master/protocol/openid-connect/token", "", "", url.Values{
		"grant_type": {"password"}, "client_id": {"admin-cli"}, "username": {"admin"}, "password": {"admin"},
	}, nil)
	if err != nil {
		return 0, nil, err
	}
	if tr.AccessToken == "" {
		return 0, nil, fmt.Errorf("admin token: HTTP %d %s", tr.Status, tr.Error)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.KeycloakURL()+"/admin/realms/"+Realm+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, out, nil
}

// KeycloakUserID returns the id (the sub) of a demo realm user.
func (s *Stack) KeycloakUserID(ctx context.Context, username string) (string, error) {
	status, body, err := s.KeycloakAdmin(ctx, http.MethodGet, "/users?exact=true&username="+url.QueryEscape(username), nil)
	if err != nil {
		return "", err
	}
	var users []struct {
		ID string `json:"id"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &users) != nil || len(users) != 1 {
		return "", fmt.Errorf("user %s: HTTP %d %.200s", username, status, body)
	}
	return users[0].ID, nil
}

// TokengateMetric sums the samples of tokengate's metric name whose labels contain every
// given name="value" pair (0 when none), read from the admin listener's /metrics.
func (s *Stack) TokengateMetric(ctx context.Context, name string, labels ...string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.AdminURL()+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		match := true
		for _, l := range labels {
			match = match && strings.Contains(line[:sp], l)
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

// KeycloakOffersSignals reports whether the demo realm publishes a Shared Signals transmitter
// (Keycloak 26.7+ with --features=ssf and the realm file's ssf.transmitterEnabled).
func (s *Stack) KeycloakOffersSignals(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.KeycloakURL()+"/.well-known/ssf-configuration/realms/"+Realm, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
