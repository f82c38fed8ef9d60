package verifier_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokengate/tokengate/verifier"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// forgedWithActiveKey mints, with the gateway's active key, a token an attacker holding that
// key would make (sub mallory, every role), valid for an hour, and returns it with the kid.
func forgedWithActiveKey(t *testing.T, g *fakeGateway) (string, string) {
	t.Helper()
	tok := g.AccessToken("mallory", "sid-mallory", time.Now(), func(c map[string]any) {
		c["exp"] = time.Now().Add(time.Hour).Unix()
		c["roles"] = []string{"admin"}
	})
	return tok, g.km.ActiveKeyID()
}

// TestVerify_RevokedKeyRefusedOnceTheJWKSMaxAgePassed: a key that leaves the JWKS (keys revoke
// promotes the next key, which the verifier already has, so no unknown kid ever appears) stops
// verifying once the max-age the JWKS declared has passed, without any stream; a token the
// verifier cached as verified is refused too.
func TestVerify_RevokedKeyRefusedOnceTheJWKSMaxAgePassed(t *testing.T) {
	g := newFakeGateway(t)
	g.jwksAge.Store(1)
	v := newVerifier(t, g, func(c *verifier.Config) { c.DisableFeed = true })
	ctx := context.Background()
	forged, kid := forgedWithActiveKey(t, g)
	if _, err := v.Verify(ctx, forged); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}
	if _, err := g.km.RevokeKey(ctx, kid); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, "token of the revoked key refused", func() bool {
		_, err := v.Verify(ctx, forged)
		return errors.Is(err, verifier.ErrInvalidToken)
	})
	if took > 2*time.Second {
		t.Errorf("refused %s after the revocation, want within the 1s max-age (+1s)", took)
	}
	// A token of the new active key is still fine.
	if _, err := v.Verify(ctx, g.AccessToken("alice", "sid-1", time.Now())); err != nil {
		t.Fatalf("token of the new active key: %v", err)
	}
}

// TestVerify_KeyRevokedEventRefetchesAtOnce: with a long max-age, the signing-key-revoked event
// on the stream makes the verifier refetch the JWKS before it acknowledges the event; the
// token of the revoked key is refused at once.
func TestVerify_KeyRevokedEventRefetchesAtOnce(t *testing.T) {
	g := newFakeGateway(t)
	g.jwksAge.Store(3600)
	v := newVerifier(t, g)
	ctx := context.Background()
	forged, kid := forgedWithActiveKey(t, g)
	if _, err := v.Verify(ctx, forged); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}
	if _, err := g.km.RevokeKey(ctx, kid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := v.Verify(ctx, forged); err != nil {
		t.Fatalf("test premise: within the 1h max-age and without the event the key still verifies: %v", err)
	}
	now := time.Now()
	g.Send("key-1", g.Sign("secevent+jwt", map[string]any{"iss": g.URL(), "aud": setAud, "jti": "key-1", "iat": now.Unix(),
		"sub_id": map[string]any{"format": "opaque", "id": kid},
		"events": map[string]any{secevent.EventSigningKeyRevoked: map[string]any{"event_timestamp": now.Unix()}}}))
	acked, refused := g.Settled()
	if len(refused) != 0 || len(acked) != 1 || acked[0] != "key-1" {
		t.Fatalf("key event: acked %v, refused %v", acked, refused)
	}
	if _, err := v.Verify(ctx, forged); !errors.Is(err, verifier.ErrInvalidToken) {
		t.Fatalf("token of the revoked key after the event was acknowledged: %v", err)
	}
}
