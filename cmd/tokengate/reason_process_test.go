package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/issuer"
)

// TestRefusedSubjectToken_ResponseAndLogSayWhy (real binary): an ID token, a token of another
// realm and an expired access token are each refused 400 invalid_request with a description
// naming the reason, and `tokengate serve` writes one exchange_refused line per refusal with
// that reason and the token's hash, never the token.
func TestRefusedSubjectToken_ResponseAndLogSayWhy(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	g := startGateway(t, baseConfig(realm.Issuer(), t.TempDir()))
	master := strings.TrimSuffix(realm.Issuer(), "/demo") + "/master"
	cases := []struct {
		name, token, reason, desc string
	}{
		{"ID token", realm.AccessToken(kctest.Token{Typ: "ID"}), "typ", `subject_token is an ID token (typ "ID")`},
		{"master realm", realm.AccessToken(kctest.Token{Issuer: master}), "issuer", `subject_token was issued by "` + master + `"`},
		{"expired", realm.AccessToken(kctest.Token{IssuedAt: time.Now().Add(-time.Hour), Lifetime: time.Minute}), "expired",
			"subject_token expired at "},
	}
	for _, c := range cases {
		r := g.exchange(c.token)
		wantError(t, c.name, r, http.StatusBadRequest, "invalid_request")
		if !strings.HasPrefix(r.Description, c.desc) {
			t.Errorf("%s: description %q, want it to start %q", c.name, r.Description, c.desc)
		}
	}
	if code := g.terminate(exitTimeout); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d, want 0", code)
	}
	logs := g.Output()
	for _, c := range cases {
		if strings.Contains(logs, c.token) {
			t.Fatalf("%s: the log holds the token", c.name)
		}
		found := false
		for _, l := range strings.Split(logs, "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) != nil {
				continue
			}
			if m["event"] == "exchange_refused" && m["reason"] == c.reason && m["subject_token"] == issuer.TokenHash(c.token) &&
				m["level"] == "INFO" && m["client_id"] == clientID {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no INFO exchange_refused line with reason %s and the token's hash in:\n%s", c.name, c.reason, logs)
		}
	}
}
