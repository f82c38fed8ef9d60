package issuer_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/issuer"
)

// newSubjectFixture is the fixture in front of a fake Keycloak ≥ 26.6 with three BFFs, all
// with secret bffSecret: bff (its Keycloak client id is its own id), web (exchanges tokens of
// Keycloak clients web-app and web-spa) and bff2; skipAudience is upstream.require_audience off.
func newSubjectFixture(t *testing.T, skipAudience bool) *fixture {
	t.Helper()
	h := sha256.Sum256([]byte(bffSecret))
	return newFixture(t, func(s *setup) {
		s.SkipAudienceCheck = skipAudience
		s.Clients = []issuer.Client{
			{ID: "bff", SecretSHA256: h, Audiences: []string{"svc"}},
			{ID: "web", SecretSHA256: h, Audiences: []string{"svc"}, UpstreamClients: []string{"web-app", "web-spa"}},
			{ID: "bff2", SecretSHA256: h, Audiences: []string{"svc"}},
		}
	})
}

// exchangeAs exchanges an upstream token as one of the subject fixture's clients.
func (f *fixture) exchangeAs(client, token string) (issuer.TokenResponse, error) {
	f.t.Helper()
	return f.is.Exchange(context.Background(), f.client(client, bffSecret),
		issuer.ExchangeRequest{SubjectToken: token, SubjectTokenType: issuer.TokenTypeAccessToken})
}

// refusal is what one refused exchange must look like.
type refusal struct {
	name        string
	client      string
	token       kctest.Token
	skipAud     bool // upstream.require_audience: false
	oldKeycloak bool // Keycloak before 26.6: no introspection audience rule
	// introspects: the refusal comes after the provider was asked (once).
	introspects bool
	desc        []string // substrings of error_description
	reason      string   // audit line's reason
	// owner, when set, is a caller that may exchange the token: it does so afterwards.
	owner string
}

// TestExchange_SubjectTokenRefusals: a subject token not meant for tokengate, or issued to a
// Keycloak client the caller may not exchange tokens of, is refused 400 invalid_request with a
// description naming the cause; the refusal writes nothing (no revocation, no cached answer:
// the same token is introspected again when an allowed caller presents it), asks the provider
// nothing when it is decided locally, and leaves one audit line.
func TestExchange_SubjectTokenRefusals(t *testing.T) {
	noMapper := []string{"account"}
	for _, tc := range []refusal{
		{name: "aud lacks tokengate", client: "bff", token: kctest.Token{Audience: noMapper},
			desc: []string{`aud does not contain "tokengate"`, `upstream client "bff" needs an audience mapper`}, reason: "audience"},
		{name: "aud lacks tokengate, on old Keycloak too", client: "bff", token: kctest.Token{Audience: noMapper}, oldKeycloak: true,
			desc: []string{`aud does not contain "tokengate"`}, reason: "audience"},
		{name: "token of another Keycloak client", client: "bff2", token: kctest.Token{},
			desc: []string{`issued to upstream client "bff"`, "may not exchange"}, reason: "upstream_client", owner: "bff"},
		{name: "own id is not in an explicit upstream_clients list", client: "web", token: kctest.Token{AZP: "web"},
			desc: []string{`issued to upstream client "web"`}, reason: "upstream_client"},
		{name: "binding holds with require_audience off", client: "bff2", token: kctest.Token{Audience: noMapper}, skipAud: true, oldKeycloak: true,
			desc: []string{`issued to upstream client "bff"`}, reason: "upstream_client", owner: "bff"},
		{name: "Keycloak 26.6+ refuses to introspect: the cause is named", client: "bff", token: kctest.Token{Audience: noMapper},
			skipAud: true, introspects: true,
			desc:   []string{"not active", `aud contains "tokengate"`, "Keycloak 26.6", `upstream client "bff" needs an audience mapper`},
			reason: "inactive_audience"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newSubjectFixture(t, tc.skipAud)
			f.realm.SetAudienceRule(!tc.oldKeycloak)
			tc.token.IssuedAt = f.clock.Now()
			tc.token.SID = "sid-refused"
			tok := f.realm.AccessToken(tc.token)
			before, err := f.store.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			resp, err := f.exchangeAs(tc.client, tok)
			var oe *issuer.Error
			if !errors.As(err, &oe) || oe.Code != issuer.CodeInvalidRequest {
				t.Fatalf("exchange: %+v, %v; want invalid_request", resp, err)
			}
			for _, d := range tc.desc {
				if !strings.Contains(oe.Description, d) {
					t.Errorf("description %q does not say %q", oe.Description, d)
				}
			}
			if resp.AccessToken != "" || resp.RefreshToken != "" {
				t.Error("a refused exchange returned tokens")
			}
			want := int64(0)
			if tc.introspects {
				want = 1
			}
			if n := f.realm.Introspections.Load(); n != want {
				t.Errorf("%d introspections, want %d", n, want)
			}
			after, err := f.store.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if after != before {
				t.Errorf("store changed: %+v → %+v", before, after)
			}
			if _, err := f.store.SessionRevocation(context.Background(), "sid-refused"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a refusal recorded a revocation: %v", err)
			}
			lines := f.auditLines("exchange refused")
			if len(lines) != 1 || lines[0]["event"] != "exchange_refused" || lines[0]["reason"] != tc.reason ||
				lines[0]["client_id"] != tc.client || lines[0]["subject_token"] != issuer.TokenHash(tok) {
				t.Errorf("audit lines %v, want one exchange_refused with reason %s", lines, tc.reason)
			}
			if strings.Contains(f.logs.String(), tok) {
				t.Error("the log holds the token")
			}
			// Nothing was remembered: the token's own caller gets it exchanged, and the provider
			// is asked for it then.
			if tc.owner == "" {
				return
			}
			if _, err := f.exchangeAs(tc.owner, tok); err != nil {
				t.Fatalf("the token's own client could not exchange it afterwards: %v", err)
			}
			if n := f.realm.Introspections.Load(); n != want+1 {
				t.Errorf("%d introspections after the allowed exchange, want %d: a refusal was cached", n, want+1)
			}
		})
	}
}

// TestExchange_UpstreamClientsAllowsListedKeycloakClients: a caller with upstream_clients
// exchanges tokens of each listed Keycloak client; without the list, tokens of its own id.
func TestExchange_UpstreamClientsAllowsListedKeycloakClients(t *testing.T) {
	f := newSubjectFixture(t, false)
	for _, c := range []struct{ caller, azp string }{{"web", "web-app"}, {"web", "web-spa"}, {"bff", "bff"}, {"bff2", "bff2"}} {
		tok := f.realm.AccessToken(kctest.Token{AZP: c.azp, IssuedAt: f.clock.Now()})
		if _, err := f.exchangeAs(c.caller, tok); err != nil {
			t.Errorf("%s exchanging a token of %s: %v", c.caller, c.azp, err)
		}
	}
	// A token exchanged (and cached) for its own caller is still refused to another one.
	tok := f.realm.AccessToken(kctest.Token{IssuedAt: f.clock.Now()})
	if _, err := f.exchangeAs("bff", tok); err != nil {
		t.Fatal(err)
	}
	var oe *issuer.Error
	if _, err := f.exchangeAs("web", tok); !errors.As(err, &oe) || oe.Code != issuer.CodeInvalidRequest {
		t.Fatalf("a cached token of bff exchanged by web: %v, want invalid_request", err)
	}
}

// TestExchange_MissingMapperHintIsRateLimited: the WARN naming the audience mapper is logged
// once per minute, however many exchanges Keycloak refuses to introspect.
func TestExchange_MissingMapperHintIsRateLimited(t *testing.T) {
	f := newSubjectFixture(t, true)
	warns := func() int {
		n := 0
		for _, l := range strings.Split(f.logs.String(), "\n") {
			if strings.Contains(l, `"level":"WARN"`) && strings.Contains(l, `"event":"audience_mapper_missing"`) &&
				strings.Contains(l, "oidc-audience-mapper") && strings.Contains(l, "included.client.audience=tokengate") {
				n++
			}
		}
		return n
	}
	for range 3 {
		if _, err := f.exchangeAs("bff", f.realm.AccessToken(kctest.Token{Audience: []string{"account"}, IssuedAt: f.clock.Now()})); err == nil {
			t.Fatal("exchanged a token Keycloak would not introspect")
		}
	}
	if n := warns(); n != 1 {
		t.Fatalf("%d WARN lines after 3 refusals within a minute, want 1", n)
	}
	f.clock.Advance(61 * time.Second)
	if _, err := f.exchangeAs("bff", f.realm.AccessToken(kctest.Token{Audience: []string{"account"}, IssuedAt: f.clock.Now()})); err == nil {
		t.Fatal("exchanged a token Keycloak would not introspect")
	}
	if n := warns(); n != 2 {
		t.Fatalf("%d WARN lines a minute later, want 2", n)
	}
}

// TestExchange_InactiveTokenWithAudienceIsPlainlyInactive: a token meant for tokengate that
// Keycloak calls inactive (the session ended) keeps the plain description, without the hint.
func TestExchange_InactiveTokenWithAudienceIsPlainlyInactive(t *testing.T) {
	f := newSubjectFixture(t, false)
	f.realm.EndSession("sid-ended")
	_, err := f.exchangeAs("bff", f.realm.AccessToken(kctest.Token{SID: "sid-ended", IssuedAt: f.clock.Now()}))
	var oe *issuer.Error
	if !errors.As(err, &oe) || oe.Code != issuer.CodeInvalidRequest || oe.Description != "subject_token is not active" {
		t.Fatalf("exchange of an ended session's token: %v", err)
	}
	if l := f.auditLines("exchange refused"); len(l) != 1 || l[0]["reason"] != "inactive" {
		t.Errorf("audit lines %v, want one with reason inactive", l)
	}
	if strings.Contains(f.logs.String(), "audience_mapper_missing") {
		t.Error("the mapper hint was logged for a token that has the audience")
	}
}

// TestNew_UpstreamClientIDRequiredWithAudienceCheck: the audience check needs tokengate's
// Keycloak client id.
func TestNew_UpstreamClientIDRequiredWithAudienceCheck(t *testing.T) {
	cfg := issuer.Config{Issuer: "https://tg.test", TTL: time.Second, RecheckAfter: time.Second, MaxUpstreamLifetime: time.Hour}
	if _, err := issuer.New(cfg, nil, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "UpstreamClientID") {
		t.Fatalf("New without UpstreamClientID: %v", err)
	}
	cfg.SkipAudienceCheck = true
	if _, err := issuer.New(cfg, nil, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
}
