package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
)

// ssfPoll sends an RFC 8936 poll to stream orders and returns the status and the SETs' jtis.
func ssfPoll(t *testing.T, g *gateway, secret, body string, wait int) (int, []string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.Base+"/ssf/poll/orders", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Prefer", fmt.Sprintf("wait=%d", wait))
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Errorf("poll: %v", err)
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		Sets map[string]string `json:"sets"`
	}
	_ = json.Unmarshal(raw, &out)
	var jtis []string
	for j := range out.Sets {
		jtis = append(jtis, j)
	}
	return resp.StatusCode, jtis
}

// TestSSF_SIGTERMEndsHeldPollsAndKeepsAcks: SIGTERM answers held long polls at once (the
// process exits well within its 15s drain although polls may be held 25s), and the
// acknowledgements are written before the store closes: after a restart only the SET that was
// not acknowledged comes again, with the same jti.
func TestSSF_SIGTERMEndsHeldPollsAndKeepsAcks(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	secret := "orders-stream-secret-" + randID(t) + randID(t)
	sum := sha256.Sum256([]byte(secret))
	opts := baseConfig(realm.Issuer(), t.TempDir())
	opts.SSF.Streams = []config.SSFStream{{ID: "orders", SecretSHA256: hex.EncodeToString(sum[:])}}
	g := startGateway(t, opts)

	var wg sync.WaitGroup
	statuses := make(chan int, 3)
	for range 3 {
		wg.Go(func() {
			status, _ := ssfPoll(t, g, secret, `{}`, 25)
			statuses <- status
		})
	}
	time.Sleep(300 * time.Millisecond) // the polls are held
	start := time.Now()
	if code := g.terminate(5 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d", code)
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Errorf("held poll answered %d at shutdown, want 200 with no SETs", s)
		}
	}
	t.Logf("exited %s after SIGTERM with 3 polls held", time.Since(start).Round(time.Millisecond))

	g = startGateway(t, opts)
	for _, sid := range []string{"sid-acked", "sid-pending"} {
		sub := "user-" + randID(t)
		g.mustExchange(realm.AccessToken(kctest.Token{Subject: sub, SID: sid}))
		if r := g.logout(realm.LogoutToken(sub, sid)); r.Status != http.StatusOK {
			t.Fatalf("logout: %v", r)
		}
	}
	status, jtis := ssfPoll(t, g, secret, `{"returnImmediately":true}`, 0)
	if status != http.StatusOK || len(jtis) != 2 {
		t.Fatalf("poll: %d %v", status, jtis)
	}
	acked, pending := jtis[0], jtis[1]
	if strings.HasPrefix(pending, "1-") {
		acked, pending = pending, acked
	}
	if status, _ := ssfPoll(t, g, secret, `{"maxEvents":0,"ack":["`+acked+`"]}`, 0); status != http.StatusOK {
		t.Fatalf("ack: %d", status)
	}
	if code := g.terminate(5 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d", code)
	}
	g = startGateway(t, opts)
	if status, jtis := ssfPoll(t, g, secret, `{"returnImmediately":true}`, 0); status != http.StatusOK ||
		len(jtis) != 1 || jtis[0] != pending {
		t.Errorf("after restart: %d %v, want only %s", status, jtis, pending)
	}
}
