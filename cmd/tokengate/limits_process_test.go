package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/proctest"
)

// TestDefaultLimits_32ConnectionsRenewingFlatOutGetNo429: the default configuration (no
// limits block) must never refuse load the gateway can serve. One BFF renews as fast as 32
// keep-alive connections allow for a few seconds: every answer is 200, none is 429.
func TestDefaultLimits_32ConnectionsRenewingFlatOutGetNo429(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	g := startGateway(t, baseConfig(realm.Issuer(), t.TempDir()))
	rt := g.mustExchange(realm.AccessToken(kctest.Token{})).RefreshToken
	body := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()

	const conns = 32
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	var ok, limited, other atomic.Int64
	deadline := time.Now().Add(4 * time.Second)
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodPost, g.Base+"/token", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(clientID, clientSecret)
				resp, err := hc.Do(req)
				if err != nil {
					other.Add(1)
					return
				}
				drain(resp)
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d renewals in 4s over %d connections (%.0f/s): %d × 429, %d other", ok.Load(), conns,
		float64(ok.Load()+limited.Load())/4, limited.Load(), other.Load())
	if limited.Load() != 0 || other.Load() != 0 {
		t.Fatalf("default limits refused a load the gateway served: %d × 429, %d other failures, %d × 200",
			limited.Load(), other.Load(), ok.Load())
	}
}

// TestLogout_JunkFromOneAddressDoesNotCrowdOutAValidLogout: 300 invalid logout tokens from
// one address, then Keycloak's valid logout token from the same address: it is recorded (200),
// because Keycloak never retries a refused logout.
func TestLogout_JunkFromOneAddressDoesNotCrowdOutAValidLogout(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	g := startGateway(t, baseConfig(realm.Issuer(), t.TempDir()))
	sid := "sid-junk-" + randID(t)
	rt := g.mustExchange(realm.AccessToken(kctest.Token{Subject: "kim", SID: sid})).RefreshToken
	statuses := map[int]int{}
	for i := range 300 {
		statuses[g.logout("junk."+randID(t)+"."+strings.Repeat("x", i%7)).Status]++
	}
	if statuses[http.StatusOK] != 0 {
		t.Fatalf("junk logout tokens answered 200: %v", statuses)
	}
	if r := g.logout(realm.LogoutToken("kim", sid)); r.Status != http.StatusOK {
		t.Fatalf("valid logout after 300 junk calls from the same address: want 200, got %v (junk answers %v)", r, statuses)
	}
	wantError(t, "renewal after the logout", g.renew(rt), http.StatusBadRequest, "invalid_grant")
}

func drain(resp *http.Response) {
	buf := make([]byte, 4096)
	for {
		if _, err := resp.Body.Read(buf); err != nil {
			break
		}
	}
	resp.Body.Close()
}

// TestAuthFailures_1000WrongSecretsFromTheBFFsAddressLockNobodyOut: limits.auth_failures (the
// default: 0.2/s, burst 20) costs the failer, not the caller. Someone sharing the BFF's and the
// services' source address (a NAT, the replicas' haproxy) sends 1,000 wrong secrets at /token,
// /revoke and the Shared Signals endpoints; then the BFF's renewals, exchanges and revocations,
// a service's polls and a receiver's stream management all succeed from that same address,
// while the attacker's next wrong attempt is still refused with 429 and Retry-After.
func TestAuthFailures_1000WrongSecretsFromTheBFFsAddressLockNobodyOut(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	streamSecret, receiverSecret := "orders-stream-secret-"+randID(t)+randID(t), "search-receiver-secret-"+randID(t)+randID(t)
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	c := baseConfig(realm.Issuer(), t.TempDir())
	c.SSF.Streams = []config.SSFStream{{ID: "orders", SecretSHA256: hash(streamSecret)}}
	c.SSF.Receivers = []config.SSFReceiver{{ID: "search", Audience: "search-api", SecretSHA256: hash(receiverSecret)}}
	g := startGateway(t, c)
	rt := g.mustExchange(realm.AccessToken(kctest.Token{Subject: "kim", SID: "sid-" + randID(t)})).RefreshToken
	toRevoke := g.mustExchange(realm.AccessToken(kctest.Token{Subject: "lea", SID: "sid-" + randID(t)})).RefreshToken

	// call sends one request with a bearer credential and returns its status and Retry-After.
	call := func(method, path, bearer, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, g.Base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		drain(resp)
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	wrong := "wrong-secret-0123456789-0123456789-"
	statuses := map[int]int{}
	for i := range 1000 {
		var st int
		switch i % 4 {
		case 0:
			st = g.PostT(t, httpClient, "/token", proctest.RenewForm(rt), clientID, wrong+randID(t)).Status
		case 1:
			st = g.PostT(t, httpClient, "/revoke", url.Values{"token": {toRevoke}}, clientID, wrong+randID(t)).Status
		case 2:
			st, _ = call(http.MethodPost, "/ssf/poll/orders", wrong+randID(t), `{"returnImmediately":true}`)
		default:
			st, _ = call(http.MethodGet, "/ssf/streams", wrong+randID(t), "")
		}
		statuses[st]++
	}
	if statuses[http.StatusUnauthorized]+statuses[http.StatusTooManyRequests] != 1000 || statuses[http.StatusTooManyRequests] < 900 {
		t.Fatalf("1,000 wrong secrets answered %v, want 401 then 429", statuses)
	}

	for i := range 5 {
		g.mustRenew(rt, fmt.Sprintf("the BFF's renewal %d after 1,000 wrong secrets from its address", i))
	}
	g.mustExchange(realm.AccessToken(kctest.Token{Subject: "max", SID: "sid-" + randID(t)}))
	if r := g.PostT(t, httpClient, "/revoke", url.Values{"token": {toRevoke}}, clientID, clientSecret); r.Status != http.StatusOK {
		t.Fatalf("the BFF's revocation after 1,000 wrong secrets from its address: %v", r)
	}
	wantError(t, "renewal of the revoked session", g.renew(toRevoke), http.StatusBadRequest, "invalid_grant")
	for i := range 3 {
		if st, _ := call(http.MethodPost, "/ssf/poll/orders", streamSecret, `{"returnImmediately":true}`); st != http.StatusOK {
			t.Fatalf("the service's poll %d after 1,000 wrong secrets from its address: %d", i, st)
		}
	}
	if st, _ := call(http.MethodGet, "/ssf/streams", streamSecret, ""); st != http.StatusOK {
		t.Fatalf("the service's stream configuration: %d", st)
	}
	if st, _ := call(http.MethodPost, "/ssf/streams", receiverSecret, `{"delivery":{"method":"urn:ietf:rfc:8936"}}`); st != http.StatusCreated {
		t.Fatalf("a receiver's new stream: %d", st)
	}

	if r := g.PostT(t, httpClient, "/token", proctest.RenewForm(rt), clientID, wrong+"next"); r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "5" || r.Error != "temporarily_unavailable" {
		t.Fatalf("the attacker's next wrong secret at /token: %v (Retry-After %q), want 429 temporarily_unavailable, Retry-After 5", r, r.Header.Get("Retry-After"))
	}
	if st, ra := call(http.MethodPost, "/ssf/poll/orders", wrong+"next", `{"returnImmediately":true}`); st != http.StatusTooManyRequests || ra != "5" {
		t.Fatalf("the attacker's next wrong secret at /ssf/poll: %d (Retry-After %q), want 429, Retry-After 5", st, ra)
	}
}
