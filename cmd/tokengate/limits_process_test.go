package main

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
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
