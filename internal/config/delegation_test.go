package config

import (
	"strings"
	"testing"
)

// services is base with two service clients: orders delegates to payments (default depth),
// payments to ledger with depth 2 and its own service audience.
const services = `  - id: orders
    secret_sha256: 1111111111111111111111111111111111111111111111111111111111111111
    delegate_to: [payments]
  - id: payments
    secret_sha256: 2222222222222222222222222222222222222222222222222222222222222222
    delegate_to: [ledger, "https://ledger.internal/api"]
    max_delegation_depth: 2
    service_audience: https://payments.internal
`

func TestDelegation_ReadWithDefaults(t *testing.T) {
	c, err := Parse(strings.NewReader(base+services), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	bff, orders, payments := c.Clients[0], c.Clients[1], c.Clients[2]
	if bff.DelegateTo != nil || bff.MaxDelegationDepth != 0 {
		t.Errorf("bff, a client without delegate_to, got delegation settings: %+v", bff)
	}
	if got := orders.DelegateTo; len(got) != 1 || got[0] != "payments" || orders.MaxDelegationDepth != DefaultMaxDelegationDepth ||
		orders.ServiceAudienceOf() != "orders" || len(orders.Audiences) != 0 {
		t.Errorf("orders = %+v, service audience %q", orders, orders.ServiceAudienceOf())
	}
	if payments.MaxDelegationDepth != 2 || payments.ServiceAudienceOf() != "https://payments.internal" || len(payments.DelegateTo) != 2 {
		t.Errorf("payments = %+v", payments)
	}
}

// TestDelegation_RefusedWithActionableMessages: every mistake names its field and what to do.
func TestDelegation_RefusedWithActionableMessages(t *testing.T) {
	svc := func(extra string) string {
		return base + "  - id: orders\n    secret_sha256: " + strings.Repeat("11", 32) + "\n" + extra
	}
	for _, tc := range []struct{ name, file, want string }{
		{"neither audiences nor delegate_to", svc(""), "clients[1].audiences: needs at least one audience (the services a BFF may get tokens for), or delegate_to"},
		{"empty delegate_to", svc("    delegate_to: []\n"), "clients[1].delegate_to: is empty: leave it out"},
		{"blank audience", svc("    delegate_to: [\" payments\"]\n"), "clients[1].delegate_to: has an empty or blank-padded audience"},
		{"duplicate", svc("    delegate_to: [payments, payments]\n"), `clients[1].delegate_to: lists "payments" twice`},
		{"itself", svc("    delegate_to: [orders]\n"), `clients[1].delegate_to: lists "orders", the client's own service audience`},
		{"depth too large", svc("    delegate_to: [payments]\n    max_delegation_depth: 11\n"), "clients[1].max_delegation_depth: must be between 1 and 10 actors (left out: 3), got 11"},
		{"negative depth", svc("    delegate_to: [payments]\n    max_delegation_depth: -1\n"), "got -1"},
		{"depth without delegate_to", base + "    max_delegation_depth: 2\n", "clients[0].max_delegation_depth: has no effect without delegate_to"},
		{"service_audience without delegate_to", base + "    service_audience: api\n", "clients[0].service_audience: has no effect without delegate_to"},
		{"blank service_audience", svc("    delegate_to: [payments]\n    service_audience: \" orders\"\n"), "clients[1].service_audience: \" orders\" is blank-padded"},
		{"misspelled key", svc("    delegate: [payments]\n"), "field delegate not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.file), func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}
