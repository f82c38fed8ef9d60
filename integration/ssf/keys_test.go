package ssf

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/verifier"
)

// goidcObserve is how long the key-revocation test watches a plain go-oidc verifier after each
// revocation: it keeps accepting the revoked key until a token with a kid it does not know
// arrives (the next scheduled rotation, keys.rotate_every), far beyond any test.
const goidcObserve = 3 * time.Second

// kidOf reads the kid from a JWS header.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.Kid
}

// revokeKey calls POST /admin/keys/{kid}/revoke.
func (g *gateway) revokeKey(kid string) {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.Admin+"/admin/keys/"+kid+"/revoke", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+g.adminTok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		g.t.Fatalf("revoke key %s: %d %s", kid, resp.StatusCode, body)
	}
}

// TestKeyRevocation_WindowAtStreamFollowingAndPlainVerifiers measures the window from the 200
// of an emergency key revocation (POST /admin/keys/{kid}/revoke at a real tokengate process)
// to the first refusal of a token signed with that key: at a verifier following its Shared
// Signals stream (the signing-key-revoked event makes it refetch the JWKS), and at a plain
// go-oidc RemoteKeySet verifier, which refetches only for a kid it does not know. The token
// stands for one forged with a stolen key: signed by the revoked key, valid for minutes.
func TestKeyRevocation_WindowAtStreamFollowingAndPlainVerifiers(t *testing.T) {
	integration(t)
	realm := kctest.New(t)
	g := newGateway(t, realm)
	ctx := context.Background()
	v, err := verifier.New(ctx, verifier.Config{Issuer: g.Base, Audience: audience, StreamID: "svc-00",
		StreamSecret: g.secrets[0], Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	plain := oidc.NewVerifier(g.Base, oidc.NewRemoteKeySet(ctx, g.Base+"/jwks.json"),
		&oidc.Config{ClientID: audience, SupportedSigningAlgs: []string{"ES256"}})

	const samples = 5
	var windows []time.Duration
	goidcStillAccepted := 0
	for i := range samples {
		tok := g.exchange(realm, fmt.Sprintf("mallory-%d", i), fmt.Sprintf("sid-key-%d", i)).AccessToken
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("sample %d: stream-following verifier refused a good token: %v", i, err)
		}
		if _, err := plain.Verify(ctx, tok); err != nil {
			t.Fatalf("sample %d: go-oidc verifier refused a good token: %v", i, err)
		}
		time.Sleep(50 * time.Millisecond) // the stream's poll is waiting
		g.revokeKey(kidOf(t, tok))
		acked := time.Now()
		var window time.Duration
		for time.Since(acked) < 5*time.Second {
			if _, err := v.Verify(ctx, tok); err != nil {
				window = time.Since(acked)
				break
			}
			time.Sleep(time.Millisecond)
		}
		if window == 0 {
			t.Fatalf("sample %d: the stream-following verifier still accepts the revoked key's token 5s after the revocation", i)
		}
		windows = append(windows, window)
		if i == 0 {
			accepted := true
			for time.Since(acked) < goidcObserve {
				if _, err := plain.Verify(ctx, tok); err != nil {
					accepted = false
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if accepted {
				goidcStillAccepted++
			}
		}
	}
	p50, p99, worst := percentile(windows, .5), percentile(windows, .99), percentile(windows, 1)
	t.Logf("key revocation → token of the revoked key refused: stream-following verifier p50 %s max %s over %d revocations; "+
		"go-oidc RemoteKeySet still accepting %s later: %v", p50.Round(100*time.Microsecond), worst.Round(100*time.Microsecond),
		samples, goidcObserve, goidcStillAccepted == 1)
	fmt.Printf("BENCH key_revocation_window samples=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f goidc_accepted_after_ms=%d goidc_still_accepting=%d\n",
		len(windows), float64(p50.Microseconds())/1000, float64(p99.Microseconds())/1000, float64(worst.Microseconds())/1000,
		goidcObserve.Milliseconds(), goidcStillAccepted)
	if p99 > time.Second {
		t.Errorf("p99 key revocation window %s exceeds 1s", p99)
	}
}
