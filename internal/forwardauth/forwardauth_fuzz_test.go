package forwardauth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/verifier"
)

// stubVerifier accepts the token "good" as fuzzToken, refuses "revoked" as revoked, answers
// "down" as with the feed unavailable and refuses anything else as invalid.
type stubVerifier struct{}

var fuzzToken = verifier.Token{Subject: "alice", SessionID: "sid-1", ClientID: "bff", Scope: "openid orders:read",
	Roles: []string{"reader", "writer"}, PreferredUsername: "alice"}

// fuzzIdentity is what the upstream (proxy mode) or the answer (auth mode) must carry, by
// cgiKey, for fuzzToken and a request from httptest.NewRequest.
var fuzzIdentity = map[string]string{
	"x-tokengate-subject": "alice", "x-tokengate-session": "sid-1", "x-tokengate-client": "bff",
	"x-tokengate-scope": "openid orders:read", "x-tokengate-roles": "reader,writer", "x-tokengate-username": "alice",
}

func (stubVerifier) Verify(_ context.Context, raw string) (*verifier.Token, error) {
	switch raw {
	case "good":
		t := fuzzToken
		return &t, nil
	case "revoked":
		return nil, verifier.ErrRevoked
	case "down":
		return nil, verifier.ErrFeedUnavailable
	}
	return nil, errors.New("invalid")
}

func (stubVerifier) Status() verifier.Status { return verifier.Status{} }

// fuzzFields turns the fuzzer's text into header fields as Go's server would accept them:
// one "name:value" a line, names of token characters only, values without control bytes.
func fuzzFields(s string) [][2]string {
	var out [][2]string
	for line := range strings.SplitSeq(s, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsFunc(name, func(r rune) bool {
			return r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
		}) {
			continue
		}
		value = strings.TrimSpace(strings.Map(func(r rune) rune {
			if r < ' ' && r != '\t' || r == 0x7f {
				return -1
			}
			return r
		}, value))
		out = append(out, [2]string{name, value})
	}
	return out
}

// FuzzForwardAuthHeaders sends requests with arbitrary header fields through both modes.
// Invariants: no panic; no 5xx but the stub's 503; in auth mode a field spelled with '_' under
// X-Tokengate- is refused (403), and a 200 carries exactly the verified identity; in proxy
// mode an accepted request reaches the upstream with, under every name a CGI-style server
// reads as an identity or X-Forwarded-* header, exactly one field with the verified value,
// whatever the client sent; two Authorization fields are refused in both modes.
func FuzzForwardAuthHeaders(f *testing.F) {
	f.Add(true, true, "X_Tokengate_Roles: admin\nx_tokengate_roles: root")
	f.Add(false, true, "X_Tokengate_Roles: admin")
	f.Add(true, true, "X-Tokengate-Subject: admin\nX_Forwarded_For: 6.6.6.6\nForwarded: for=6.6.6.6")
	f.Add(false, true, "X-TOKENGATE-SUBJECT: admin\nX-Tokengate-Roles: admin")
	f.Add(true, false, "Authorization: Bearer good\nX-Tokengate_Username: root")
	f.Add(false, true, "Authorization: Bearer other")
	f.Add(true, true, "Connection: X-Tokengate-Subject\nX-Tokengate-Subject: admin")
	f.Add(true, false, "Authorization: Bearer revoked\nX_Tokengate_Tenant: t")
	f.Add(false, false, "authorization: bearer down")
	f.Add(true, true, "X_Request_Id: 1\nTe: trailers")

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	f.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	g := NewGate(static{stubVerifier{}}, nil, slog.New(slog.DiscardHandler))
	auth, proxy := g.AuthHandler(), g.ProxyHandler(u)

	f.Fuzz(func(t *testing.T, proxyMode, withToken bool, headers string) {
		r := httptest.NewRequest(http.MethodGet, "/orders/1", nil)
		fields := fuzzFields(headers)
		if withToken {
			fields = append([][2]string{{"Authorization", "Bearer good"}}, fields...)
		}
		smuggled, authorizations := false, 0
		for _, fl := range fields {
			r.Header.Add(fl[0], fl[1]) // canonicalised, as Go's server does
			k := cgiKey(fl[0])
			smuggled = smuggled || strings.Contains(fl[0], "_") && strings.HasPrefix(k, "x-tokengate-")
			if k == "authorization" {
				authorizations++
			}
		}
		w := httptest.NewRecorder()
		if proxyMode {
			proxy.ServeHTTP(w, r)
		} else {
			auth.ServeHTTP(w, r)
		}
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if authorizations > 1 && w.Code != http.StatusBadRequest && w.Code != http.StatusForbidden {
			t.Fatalf("%d Authorization fields: %d, want a refusal", authorizations, w.Code)
		}
		if !proxyMode {
			if smuggled && w.Code != http.StatusForbidden {
				t.Fatalf("auth mode: an identity header spelled with '_' got %d, want 403", w.Code)
			}
			for k := range fuzzIdentity {
				if _, ok := w.Header()[http.CanonicalHeaderKey(k)]; ok != (w.Code == 200) {
					t.Fatalf("auth mode: %d with identity header %s present=%v", w.Code, k, ok)
				}
			}
			if w.Code == 200 {
				for k, v := range fuzzIdentity {
					if got := w.Header().Values(k); !slices.Equal(got, []string{v}) {
						t.Fatalf("auth mode 200: %s = %q, want %q", k, got, v)
					}
				}
			}
			return
		}
		if w.Code != 200 {
			return
		}
		var got http.Header
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatalf("upstream answer: %v: %s", err, w.Body)
		}
		seen := map[string][]string{}
		for k, vs := range got {
			seen[cgiKey(k)] = append(seen[cgiKey(k)], vs...)
		}
		want := map[string]string{"x-forwarded-for": "192.0.2.1", "x-forwarded-host": "example.com", "x-forwarded-proto": "http", "forwarded": ""}
		for k, v := range fuzzIdentity {
			want[k] = v
		}
		for k, vs := range seen {
			if strings.HasPrefix(k, "x-tokengate-") {
				if _, ok := want[k]; !ok {
					t.Fatalf("proxy mode: client header %s = %q reached the upstream", k, vs)
				}
			}
		}
		for k, v := range want {
			if v == "" && len(seen[k]) > 0 || v != "" && !slices.Equal(seen[k], []string{v}) {
				t.Fatalf("proxy mode: the upstream reads %s as %q, want %q", k, seen[k], v)
			}
		}
		if a := seen["authorization"]; len(a) != 1 {
			t.Fatalf("proxy mode: upstream Authorization %q", a)
		}
	})
}
