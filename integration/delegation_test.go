package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/demostack"
	"github.com/tokengate/tokengate/internal/testwait"
	"github.com/tokengate/tokengate/verifier"
)

// hopRefusal is when a copied token was first refused at one hop, and why.
type hopRefusal struct {
	hop    string
	exp    time.Time
	at     time.Time
	reason string
	err    error
}

var errNotRefused = errors.New("not refused yet")

// pollRefusal calls check every 10 ms until it reports a refusal (a non-empty reason) or an
// error, at most 30 s; it sends the result on the returned channel.
func pollRefusal(ctx context.Context, hop string, exp time.Time, check func() (string, error)) <-chan hopRefusal {
	out := make(chan hopRefusal, 1)
	go func() {
		r := hopRefusal{hop: hop, err: errors.New("never refused")}
		_ = testwait.Poll(ctx, 30*time.Second, 10*time.Millisecond, func() error {
			reason, err := check()
			if err != nil || reason != "" {
				r = hopRefusal{hop: hop, exp: exp, at: time.Now(), reason: reason, err: err}
				return nil
			}
			return errNotRefused
		})
		out <- r
	}()
	return out
}

// TestDelegation_EveryHopRefusedAtLogout (issue 23, on the real Keycloak): alice's Keycloak
// token is exchanged by the BFF for demo-service (T1); demo-service delegates it to payments
// (T2, through its own GET /api/downstream too, to the payments process), payments delegates T2
// to ledger (T3, a chain of two actors). Each token verifies at its service, each service
// following its own Shared Signals stream: demo-service and payments (processes), payments and
// ledger (verifier instances with RequireActor). Then alice logs out at Keycloak: every hop's
// copied token is refused at its service within a second of Keycloak's logout returning, long
// before its exp; a further delegation at either hop is refused (400 invalid_request, RFC 8693
// §2.2.2, OAuth JSON), and so is the BFF's renewal (invalid_grant).
func TestDelegation_EveryHopRefusedAtLogout(t *testing.T) {
	need(t)
	ctx := testContext(t, 2*time.Minute)
	follow := func(aud, secret string, policy func([]string) error) *verifier.Verifier {
		v, err := verifier.New(ctx, verifier.Config{Issuer: st.TokengateURL(), Audience: aud, StreamSecret: secret, OwnStream: true,
			ActorPolicy: policy, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("%s verifier: %v", aud, err)
		}
		t.Cleanup(func() { _ = v.Close() })
		return v
	}
	payV := follow(demostack.PaymentsAudience, demostack.PaymentsStreamSecret, verifier.RequireActor(demostack.Audience))
	ledgerV := follow(demostack.LedgerAudience, demostack.LedgerStreamSecret, verifier.RequireActor(demostack.PaymentsAudience))
	if err := st.StartPayments(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Stop(demostack.PaymentsAudience, syscall.SIGTERM) })

	// tokens.ttl is 5 s here: log in, delegate and verify at once, so that the logout below
	// comes well before every token's exp.
	kc, in := st.LoginT(t, ctx, "alice")
	t1 := in.AccessToken
	t2x, err := st.Delegate(ctx, demostack.Audience, demostack.ServiceTokengateSecret, t1, demostack.PaymentsAudience)
	if err != nil || t2x.Status != http.StatusOK || t2x.RefreshToken != "" {
		t.Fatalf("demo-service delegates to payments: %v HTTP %d %s %s (refresh token %t)", err, t2x.Status, t2x.Error, t2x.Description, t2x.RefreshToken != "")
	}
	t2 := t2x.AccessToken
	t3x, err := st.Delegate(ctx, demostack.PaymentsAudience, demostack.PaymentsTokengateSecret, t2, demostack.LedgerAudience)
	if err != nil || t3x.Status != http.StatusOK || t3x.RefreshToken != "" {
		t.Fatalf("payments delegates to ledger: %v HTTP %d %s %s", err, t3x.Status, t3x.Error, t3x.Description)
	}
	t3 := t3x.AccessToken

	// Each hop verifies at its service, with the chain.
	if code, body, _, err := st.CallService(ctx, t1); err != nil || code != http.StatusOK || !strings.Contains(body, `"act":[]`) {
		t.Fatalf("demo-service with T1: %v HTTP %d %s", err, code, body)
	}
	if code, body, _, err := st.CallURL(ctx, st.ServiceDownstreamURL(), t1); err != nil || code != http.StatusOK ||
		!strings.Contains(body, `"act":["demo-service"]`) || !strings.Contains(body, `"username":"alice"`) {
		t.Fatalf("demo-service → payments (processes) with a delegated token: %v HTTP %d %s", err, code, body)
	}
	if code, body, _, err := st.CallURL(ctx, st.PaymentsURL(), t2); err != nil || code != http.StatusOK {
		t.Fatalf("payments process with T2: %v HTTP %d %s", err, code, body)
	}
	exp1 := tokenExpiry(t, t1)
	tok2, err := payV.Verify(ctx, t2)
	if err != nil {
		t.Fatalf("payments verifier refuses T2: %v", err)
	}
	tok3, err := ledgerV.Verify(ctx, t3)
	if err != nil {
		t.Fatalf("ledger verifier refuses T3: %v", err)
	}
	for _, c := range []struct {
		name   string
		tok    *verifier.Token
		actors []string
		client string
	}{{"T2", tok2, []string{"demo-service"}, "demo-service"}, {"T3", tok3, []string{"payments", "demo-service"}, "payments"}} {
		if c.tok.SessionID != kc.SessionState || c.tok.PreferredUsername != "alice" || !slices.Equal(c.tok.Actors(), c.actors) ||
			c.tok.ClientID != c.client || c.tok.Expiry.After(exp1) {
			t.Errorf("%s: sid %s user %s actors %q client %s exp %s (T1's exp %s)", c.name, c.tok.SessionID, c.tok.PreferredUsername,
				c.tok.Actors(), c.tok.ClientID, c.tok.Expiry, exp1)
		}
	}
	// Hostile uses of the live tokens, refused for their own reason while the session lives.
	if _, err := payV.Verify(ctx, t1); err == nil {
		t.Error("payments accepted demo-service's own token T1")
	}
	if _, err := ledgerV.Verify(ctx, t2); err == nil {
		t.Error("ledger accepted payments' token T2")
	}
	if x, _ := st.Delegate(ctx, demostack.Audience, demostack.ServiceTokengateSecret, t2, demostack.PaymentsAudience); x.Status != http.StatusBadRequest || x.Error != "invalid_request" {
		t.Errorf("demo-service delegating payments' token T2: HTTP %d %s, want 400 invalid_request", x.Status, x.Error)
	}
	if x, _ := st.Delegate(ctx, demostack.Audience, demostack.ServiceTokengateSecret, t1, demostack.LedgerAudience); x.Status != http.StatusBadRequest || x.Error != "invalid_target" {
		t.Errorf("demo-service delegating T1 to ledger (not in its delegate_to): HTTP %d %s, want 400 invalid_target", x.Status, x.Error)
	}

	// Every hop's copied token, polled at its service from just before the logout.
	verifyAt := func(v *verifier.Verifier, tok string) func() (string, error) {
		return func() (string, error) {
			_, err := v.Verify(ctx, tok)
			switch {
			case err == nil:
				return "", nil
			case errors.Is(err, verifier.ErrRevoked):
				return err.Error(), nil
			default:
				return "", err
			}
		}
	}
	callAt := func(url, tok string) func() (string, error) {
		return func() (string, error) {
			code, body, wa, err := st.CallURL(ctx, url, tok)
			switch {
			case err != nil:
				return "", err
			case code == http.StatusOK:
				return "", nil
			case code == http.StatusUnauthorized && strings.Contains(wa, "logged out"):
				return "401 " + wa, nil
			default:
				return "", fmt.Errorf("HTTP %d %s %s", code, wa, body)
			}
		}
	}
	polls := []<-chan hopRefusal{
		pollRefusal(ctx, "T1 at demo-service (process)", exp1, callAt(st.ServiceURL(), t1)),
		pollRefusal(ctx, "T2 at payments (process)", tok2.Expiry, callAt(st.PaymentsURL(), t2)),
		pollRefusal(ctx, "T2 at payments (verifier)", tok2.Expiry, verifyAt(payV, t2)),
		pollRefusal(ctx, "T3 at ledger (verifier)", tok3.Expiry, verifyAt(ledgerV, t3)),
	}
	sent := time.Now()
	if code, err := st.KeycloakLogout(ctx, kc.RefreshToken); err != nil || code != http.StatusNoContent {
		t.Fatalf("Keycloak logout: %v HTTP %d", err, code)
	}
	t0 := time.Now()
	t.Logf("logout at Keycloak took %d ms (it sends the back-channel logout before it answers) and returned %s before T1's exp",
		t0.Sub(sent).Milliseconds(), exp1.Sub(t0).Round(time.Millisecond))

	// No hop may delegate again, and the BFF may not renew.
	for _, c := range []struct{ name, client, secret, subject, aud string }{
		{"demo-service → payments", demostack.Audience, demostack.ServiceTokengateSecret, t1, demostack.PaymentsAudience},
		{"payments → ledger", demostack.PaymentsAudience, demostack.PaymentsTokengateSecret, t2, demostack.LedgerAudience},
	} {
		x, err := st.Delegate(ctx, c.client, c.secret, c.subject, c.aud)
		if err != nil {
			t.Fatal(err) // not OAuth JSON, or no answer
		}
		t.Logf("delegation %s after logout: HTTP %d %s (%s), %d ms after the logout returned", c.name, x.Status, x.Error, x.Description, time.Since(t0).Milliseconds())
		if x.Status != http.StatusBadRequest || x.Error != "invalid_request" || !strings.Contains(x.Description, "logged out") || x.AccessToken != "" {
			t.Errorf("delegation %s after logout: HTTP %d %s %q, want 400 invalid_request naming the logout", c.name, x.Status, x.Error, x.Description)
		}
	}
	if r, err := st.Renew(ctx, in.RefreshToken); err != nil || !refused(r) {
		t.Errorf("renewal after logout: %v HTTP %d %s, want invalid_grant", err, r.Status, r.Error)
	}
	if code, body, _, err := st.CallURL(ctx, st.ServiceDownstreamURL(), t1); err != nil || code != http.StatusUnauthorized {
		t.Errorf("demo-service's /api/downstream with T1 after logout: %v HTTP %d %s, want 401", err, code, body)
	}

	for _, p := range polls {
		r := <-p
		if r.err != nil {
			t.Errorf("%s: %v", r.hop, r.err)
			continue
		}
		after := r.at.Sub(t0)
		t.Logf("%s refused %+d ms from Keycloak's logout answer (%+d ms from the logout call), %s before its exp: %s", r.hop,
			after.Milliseconds(), r.at.Sub(sent).Milliseconds(), r.exp.Sub(r.at).Round(time.Millisecond), r.reason)
		if after > time.Second {
			t.Errorf("%s refused %s after the logout, want ≤ 1 s", r.hop, after)
		}
		if !r.at.Before(r.exp) {
			t.Errorf("%s refused only at its exp (%s): the revocation did not reach the service", r.hop, r.exp)
		}
	}
}
