package demostack

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
)

// TestTokengateConfig_LoadsAsWritten: the file StartTokengate writes is one tokengate accepts,
// with the stack's addresses, lifetimes and credentials.
func TestTokengateConfig_LoadsAsWritten(t *testing.T) {
	s, err := NewStack(t.TempDir(), t.TempDir(), Binaries{}, 30*time.Second, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := s.TokengateConfig()
	b, err := config.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.Parse(bytes.NewReader(b), func(string) string { return "" })
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if got.Issuer != s.TokengateURL() || got.Tokens.TTL.D() != 30*time.Second || got.Tokens.RecheckAfter.D() != 5*time.Second ||
		len(got.Upstream.ForwardLogoutTo) != 1 || len(got.SSF.Receivers) != 3 || got.Clients[0].SecretHash() == ([32]byte{}) {
		t.Fatalf("unexpected configuration: %+v", got)
	}
	delegates := map[string]string{}
	for _, c := range got.Clients {
		if len(c.DelegateTo) > 0 {
			delegates[c.ID] = strings.Join(c.DelegateTo, ",")
		}
	}
	if delegates[Audience] != PaymentsAudience || delegates[PaymentsAudience] != LedgerAudience || len(delegates) != 2 {
		t.Fatalf("delegating clients %v, want demo-service → payments → ledger", delegates)
	}
}
