package issuer_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/issuer"
)

// TestExchange_TargetAudience: the audience of an internal token is what the request names,
// with RFC 8693 audience (logical names) and RFC 8707 resource (absolute URIs) both honoured
// and both checked against the client's allowed audiences. Without either, a client allowed
// one service gets it; a client allowed several must choose, so no token is good at every
// service it may call (a token replayed by one service at another).
func TestExchange_TargetAudience(t *testing.T) {
	const orders, payments = "orders", "https://payments.internal/api"
	for _, tc := range []struct {
		name               string
		allowed            []string
		audience, resource []string
		want               []string
		code               string
	}{
		{name: "one allowed, none asked", allowed: []string{orders}, want: []string{orders}},
		{name: "several allowed, none asked", allowed: []string{orders, payments}, code: issuer.CodeInvalidTarget},
		{name: "audience", allowed: []string{orders, payments}, audience: []string{orders}, want: []string{orders}},
		{name: "resource", allowed: []string{orders, payments}, resource: []string{payments}, want: []string{payments}},
		{name: "both", allowed: []string{orders, payments}, audience: []string{orders}, resource: []string{payments}, want: []string{payments, orders}},
		{name: "resource not allowed", allowed: []string{orders}, resource: []string{"https://payroll.internal/"}, code: issuer.CodeInvalidTarget},
		{name: "resource not absolute", allowed: []string{orders, "payroll"}, resource: []string{"payroll"}, code: issuer.CodeInvalidTarget},
		{name: "resource with fragment", allowed: []string{payments + "#x"}, resource: []string{payments + "#x"}, code: issuer.CodeInvalidTarget},
		{name: "audience not allowed", allowed: []string{orders}, audience: []string{"payroll"}, code: issuer.CodeInvalidTarget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(s *setup) { s.Clients[0].Audiences = tc.allowed })
			resp, err := f.is.Exchange(context.Background(), f.bff, issuer.ExchangeRequest{SubjectToken: f.realm.AccessToken(kctest.Token{}),
				SubjectTokenType: issuer.TokenTypeAccessToken, Audience: tc.audience, Resource: tc.resource})
			if tc.code != "" {
				var oe *issuer.Error
				if !errors.As(err, &oe) || oe.Code != tc.code {
					t.Fatalf("err = %v, want %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := audOf(t, resp.AccessToken); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("aud = %v, want %v", got, tc.want)
			}
		})
	}
}

// audOf decodes the aud claim of an internal token (no signature check: the issuer made it).
func audOf(t *testing.T, tok string) []string {
	t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Aud any `json:"aud"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	switch a := c.Aud.(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, x := range a {
			out = append(out, x.(string))
		}
		return out
	}
	return nil
}
