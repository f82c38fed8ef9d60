package verifier_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/verifier"
)

// withAct sets a token's act claim (raw JSON).
func withAct(raw string) func(map[string]any) {
	return func(c map[string]any) { c["act"] = json.RawMessage(raw) }
}

func TestActors_ChainOutermostFirst(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g, func(c *verifier.Config) { c.DisableFeed = true })
	now := time.Now()
	for _, tc := range []struct {
		act  string
		want []string
	}{
		{"", nil},
		{`{"sub":"orders"}`, []string{"orders"}},
		{`{"sub":"payments","act":{"sub":"orders"}}`, []string{"payments", "orders"}},
	} {
		var edit []func(map[string]any)
		if tc.act != "" {
			edit = append(edit, withAct(tc.act))
		}
		tok, err := v.Verify(context.Background(), g.AccessToken("alice", "sid-1", now, edit...))
		if err != nil {
			t.Fatalf("act %s: %v", tc.act, err)
		}
		if got := tok.Actors(); !slices.Equal(got, tc.want) || (len(tc.want) > 0 && tok.Actor() != tc.want[0]) {
			t.Errorf("act %s: Actors() = %q, Actor() = %q", tc.act, got, tok.Actor())
		}
	}
}

// TestActors_HostileActClaims: a signed token with a malformed or too long chain is invalid,
// not half-read.
func TestActors_HostileActClaims(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g, func(c *verifier.Config) { c.DisableFeed = true })
	eleven := strings.Repeat(`{"sub":"x","act":`, 10) + `{"sub":"y"}` + strings.Repeat("}", 10)
	for name, act := range map[string]string{
		"11 actors":   eleven,
		"deep arrays": `{"sub":"x","act":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`,
		"no sub":      `{"act":{"sub":"orders"}}`,
		"a string":    `"orders"`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), g.AccessToken("alice", "sid-1", time.Now(), withAct(act)))
			if !errors.Is(err, verifier.ErrInvalidToken) {
				t.Errorf("Verify = %v, want ErrInvalidToken", err)
			}
		})
	}
}

func TestRequireActor(t *testing.T) {
	g := newFakeGateway(t)
	v := newVerifier(t, g, func(c *verifier.Config) {
		c.DisableFeed = true
		c.ActorPolicy = verifier.RequireActor("orders")
	})
	now := time.Now()
	byOrders := g.AccessToken("alice", "sid-1", now, withAct(`{"sub":"orders"}`))
	if _, err := v.Verify(context.Background(), byOrders); err != nil {
		t.Fatalf("a token orders delegated: %v", err)
	}
	for name, raw := range map[string]string{
		"no actor (a BFF's token)":           g.AccessToken("alice", "sid-1", now),
		"another actor":                      g.AccessToken("alice", "sid-1", now, withAct(`{"sub":"search"}`)),
		"orders further down the chain only": g.AccessToken("alice", "sid-1", now, withAct(`{"sub":"search","act":{"sub":"orders"}}`)),
	} {
		if _, err := v.Verify(context.Background(), raw); !errors.Is(err, verifier.ErrActorRefused) {
			t.Errorf("%s: Verify = %v, want ErrActorRefused", name, err)
		}
	}
	// Middleware answers 403 insufficient_scope.
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	for raw, want := range map[string]int{byOrders: 204, g.AccessToken("alice", "sid-1", now): 403} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Authorization", "Bearer "+raw)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want || (want == 403 && !strings.Contains(rec.Body.String(), "insufficient_scope")) {
			t.Errorf("middleware: %d %s, want %d", rec.Code, rec.Body, want)
		}
	}
}
