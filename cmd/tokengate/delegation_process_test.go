package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/proctest"
	"github.com/tokengate/tokengate/verifier"
)

// TestDelegation_OrdersToPaymentsDiesAtLogout runs the real binary: the BFF exchanges alice's
// Keycloak token for orders; orders delegates it to payments; a payments verifier following
// its Shared Signals stream accepts the delegated token and sees orders as the actor. After
// the back-channel logout, orders' next delegation is refused and the payments verifier
// refuses the delegated token it accepted a moment before (same sid), within a second.
func TestDelegation_OrdersToPaymentsDiesAtLogout(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	ordersSecret := "orders-" + randID(t) + randID(t) + randID(t)
	streamSecret := "payments-stream-" + randID(t) + randID(t)
	c := baseConfig(realm.Issuer(), t.TempDir())
	c.Issuer = "" // the public listener's URL: the verifier discovers tokengate there
	c.Clients[0].Audiences = []string{"orders"}
	c.Clients = append(c.Clients, config.Client{ID: "orders", SecretSHA256: hash(ordersSecret), DelegateTo: []string{"payments"}})
	c.SSF.Streams = []config.SSFStream{{ID: "payments", SecretSHA256: hash(streamSecret)}}
	g := startGateway(t, c)

	v, err := verifier.New(context.Background(), verifier.Config{Issuer: g.Base, Audience: "payments", StreamID: "payments",
		StreamSecret: streamSecret, ActorPolicy: verifier.RequireActor("orders"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	exchange := proctest.ExchangeForm
	up := realm.AccessToken(kctest.Token{Subject: "alice", SID: "sid-alice", IssuedAt: time.Now()})
	first := g.PostT(t, httpClient, "/token", exchange(up, "orders"), clientID, clientSecret)
	if first.Status != 200 || first.RefreshToken == "" {
		t.Fatalf("exchange: %v", first)
	}
	delegated := g.PostT(t, httpClient, "/token", exchange(first.AccessToken, "payments"), "orders", ordersSecret)
	if delegated.Status != 200 || delegated.RefreshToken != "" || delegated.IssuedTokenType != "urn:ietf:params:oauth:token-type:access_token" {
		t.Fatalf("delegation: %v", delegated)
	}
	tok, err := v.Verify(context.Background(), delegated.AccessToken)
	if err != nil {
		t.Fatalf("payments refuses the delegated token: %v", err)
	}
	if tok.Subject != "alice" || tok.SessionID != "sid-alice" || strings.Join(tok.Actors(), ",") != "orders" || tok.ClientID != "orders" {
		t.Errorf("delegated token at payments: sub %s sid %s actors %q client %s", tok.Subject, tok.SessionID, tok.Actors(), tok.ClientID)
	}
	if _, err := v.Verify(context.Background(), first.AccessToken); err == nil {
		t.Error("payments accepted the BFF's token for orders")
	}
	// Hostile callers at the real endpoint: the BFF (no delegate_to), orders asking for a
	// service outside its delegate_to, orders presenting a Keycloak token.
	wantError(t, "bff delegating", g.PostT(t, httpClient, "/token", exchange(first.AccessToken, "payments"), clientID, clientSecret), 400, "unauthorized_client")
	wantError(t, "orders asking for ledger", g.PostT(t, httpClient, "/token", exchange(first.AccessToken, "ledger"), "orders", ordersSecret), 400, "invalid_target")
	wantError(t, "orders presenting a Keycloak token", g.PostT(t, httpClient, "/token", exchange(up, "payments"), "orders", ordersSecret), 400, "invalid_request")

	if r := g.logout(realm.LogoutToken("alice", "sid-alice")); r.Status != 200 {
		t.Fatalf("logout: %v", r)
	}
	loggedOut := time.Now()
	r := g.PostT(t, httpClient, "/token", exchange(first.AccessToken, "payments"), "orders", ordersSecret)
	wantError(t, "delegation after logout", r, 400, "invalid_request")
	if !strings.Contains(r.Description, "logged out") {
		t.Errorf("delegation after logout says %q", r.Description)
	}
	for {
		_, err := v.Verify(context.Background(), delegated.AccessToken)
		if errors.Is(err, verifier.ErrRevoked) {
			t.Logf("payments refused the delegated token %s after the logout's 200", time.Since(loggedOut).Round(time.Millisecond))
			break
		}
		if time.Since(loggedOut) > time.Second {
			t.Fatalf("payments still accepts the delegated token 1s after the logout: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if strings.Contains(g.Output(), delegated.AccessToken) || strings.Contains(g.Output(), first.AccessToken) {
		t.Error("the gateway logged a token")
	}
}

// TestDelegation_CheckConfig: check-config and serve know the delegation keys and name the
// field of a mistake.
func TestDelegation_CheckConfig(t *testing.T) {
	t.Parallel()
	c := baseConfig("http://127.0.0.1:1/realms/demo", t.TempDir())
	c.Listen, c.AdminListen = "127.0.0.1:1", "127.0.0.1:2"
	svc := config.Client{ID: "orders", SecretSHA256: clientSecretHash, DelegateTo: []string{"payments"}, MaxDelegationDepth: 2}
	c.Clients = append(c.Clients, svc)
	good := writeFile(t, t.TempDir(), "good.yaml", marshal(t, c))
	if code, stdout, stderr := runCLI(t, "", "check-config", "--config", good); code != 0 || !strings.Contains(stdout, "valid") {
		t.Fatalf("check-config with a delegating service: exit %d, %q %q", code, stdout, stderr)
	}
	c.Clients[1].MaxDelegationDepth, c.Clients[1].DelegateTo = 11, []string{"orders"}
	bad := writeFile(t, t.TempDir(), "bad.yaml", marshal(t, c))
	for _, cmd := range []string{"check-config", "serve"} {
		code, _, stderr := runCLI(t, "", cmd, "--config", bad)
		if code == 0 || !strings.Contains(stderr, "clients[1].max_delegation_depth") || !strings.Contains(stderr, "clients[1].delegate_to") {
			t.Errorf("%s: exit %d, stderr %q; want both fields named", cmd, code, stderr)
		}
	}
}
