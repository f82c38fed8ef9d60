package app_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/issuer"
)

const (
	ordersClientSecret   = "orders-client-secret-0123456789-abcdef"
	paymentsClientSecret = "payments-client-secret-0123456789-abcd"
)

// newDelegationStack is the stack with two services as clients: orders may call payments;
// payments may call ledger with chains of at most 1 actor. bff gets tokens for orders.
func newDelegationStack(t testing.TB) *stack {
	return newStackOpts(t, stackOptions{configure: func(c *config.Config) {
		c.Clients = append(c.Clients,
			config.Client{ID: "orders", SecretSHA256: hexSHA256(ordersClientSecret), DelegateTo: []string{"payments"}},
			config.Client{ID: "payments", SecretSHA256: hexSHA256(paymentsClientSecret), DelegateTo: []string{"ledger"}, MaxDelegationDepth: 1},
		)
	}})
}

func delegationForm(subject, audience string, extra ...string) url.Values {
	f := url.Values{"grant_type": {issuer.GrantTokenExchange}, "subject_token": {subject},
		"subject_token_type": {issuer.TokenTypeAccessToken}}
	if audience != "" {
		f.Set("audience", audience)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Set(extra[i], extra[i+1])
	}
	return f
}

// TestDelegation_HTTPMapping: the status, error code and headers of each delegation answer.
func TestDelegation_HTTPMapping(t *testing.T) {
	s := newDelegationStack(t)
	up := s.realm.AccessToken(kctest.Token{Subject: "alice", SID: "sid-1", IssuedAt: s.clock.Now()})
	first := s.post("/token", "bff", bffSecret, delegationForm(up, "orders"))
	if first.Status != 200 {
		t.Fatalf("exchange: %d %s", first.Status, first.Raw)
	}
	subject := first.str("access_token")
	ok := s.post("/token", "orders", ordersClientSecret, delegationForm(subject, "payments"))
	if ok.Status != 200 || ok.Header.Get("Cache-Control") != "no-store" || ok.Header.Get("Pragma") != "no-cache" ||
		ok.str("issued_token_type") != issuer.TokenTypeAccessToken || ok.str("token_type") != "Bearer" ||
		ok.Body["refresh_token"] != nil || ok.str("access_token") == "" {
		t.Fatalf("delegation: %d %v %s", ok.Status, ok.Header, ok.Raw)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(ok.str("access_token"), ".")[1])
	var claims struct {
		Aud []string       `json:"aud"`
		Act map[string]any `json:"act"`
		SID string         `json:"sid"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Act["sub"] != "orders" || claims.SID != "sid-1" ||
		len(claims.Aud) != 1 || claims.Aud[0] != "payments" {
		t.Errorf("delegated claims %s", payload)
	}
	delegated := ok.str("access_token")
	parts := strings.Split(subject, ".")
	for _, tc := range []struct {
		name, id, secret string
		form             url.Values
		status           int
		code, desc       string
	}{
		{"audience outside delegate_to", "orders", ordersClientSecret, delegationForm(subject, "ledger"), 400, "invalid_target", "delegate_to"},
		{"another service's token replayed", "payments", paymentsClientSecret, delegationForm(subject, "ledger"), 400, "invalid_request", "service audience"},
		{"client without delegate_to", "bff", bffSecret, delegationForm(subject, "orders"), 400, "unauthorized_client", "no delegate_to"},
		{"Keycloak token where an internal one is expected", "orders", ordersClientSecret, delegationForm(up, "payments"), 400, "invalid_request", "not issued by tokengate"},
		{"chain too deep", "payments", paymentsClientSecret, delegationForm(delegated, "ledger"), 400, "invalid_request", "max_delegation_depth of 1"},
		{"wider scope", "orders", ordersClientSecret, delegationForm(subject, "payments", "scope", "openid admin"), 400, "invalid_scope", "not granted"},
		{"forged", "orders", ordersClientSecret, delegationForm(parts[0]+"."+parts[1]+"."+parts[2][:len(parts[2])-4]+"AAAA", "payments"), 400, "invalid_request", "signature"},
		{"actor_token from another client", "orders", ordersClientSecret,
			delegationForm(subject, "payments", "actor_token", subject, "actor_token_type", issuer.TokenTypeAccessToken), 400, "invalid_request", "another client"},
		{"actor_token in a first exchange", "bff", bffSecret,
			delegationForm(up, "orders", "actor_token", subject, "actor_token_type", issuer.TokenTypeAccessToken), 400, "invalid_request", "only in a delegation"},
		{"service with a wrong secret", "orders", paymentsClientSecret, delegationForm(subject, "payments"), 401, "invalid_client", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.post("/token", tc.id, tc.secret, tc.form)
			if r.Status != tc.status || r.str("error") != tc.code || !strings.Contains(r.str("error_description"), tc.desc) ||
				r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("Pragma") != "no-cache" || r.Body["access_token"] != nil {
				t.Errorf("%d %v %s, want %d %s naming %q", r.Status, r.Header, r.Raw, tc.status, tc.code, tc.desc)
			}
			if (tc.status == 401) != (r.Header.Get("WWW-Authenticate") != "") {
				t.Errorf("WWW-Authenticate %q on a %d", r.Header.Get("WWW-Authenticate"), r.Status)
			}
		})
	}
	if r := s.logout(s.realm.LogoutToken("alice", "sid-1")); r.Status != 200 {
		t.Fatalf("logout: %d %s", r.Status, r.Raw)
	}
	r := s.post("/token", "orders", ordersClientSecret, delegationForm(subject, "payments"))
	if r.Status != 400 || r.str("error") != "invalid_request" || !strings.Contains(r.str("error_description"), "logged out") {
		t.Errorf("delegation after logout: %d %s", r.Status, r.Raw)
	}
	if !strings.Contains(s.logs.String(), `"event":"delegation_refused"`) || strings.Contains(s.logs.String(), subject) {
		t.Error("refusals are not in the audit log, or the log holds a token")
	}
}

func TestDelegation_Discovery(t *testing.T) {
	s := newStack(t)
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/.well-known/openid-configuration", nil)
	d := s.do(req)
	want := `["` + issuer.TokenTypeAccessToken + `"]`
	if d.Body["delegation_supported"] != true || jsonString(d.Body["subject_token_types_supported"]) != want ||
		jsonString(d.Body["actor_token_types_supported"]) != want {
		t.Errorf("discovery does not advertise delegation: %s", d.Raw)
	}
}

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }
