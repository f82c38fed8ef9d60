package config

import (
	"strings"
	"testing"
)

func TestRequireAudience_DefaultsToTrueAndWarnsWhenOff(t *testing.T) {
	c, err := parseWith(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Upstream.AudienceRequired() || c.Upstream.RequireAudience == nil || !*c.Upstream.RequireAudience {
		t.Errorf("require_audience default = %v, want true", c.Upstream.RequireAudience)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings for the defaults: %q", w)
	}
	off := strings.Replace(base, "  logout_audiences: [bff]\n", "  logout_audiences: [bff]\n  require_audience: false\n", 1)
	c, err = Parse(strings.NewReader(off), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstream.AudienceRequired() {
		t.Fatal("require_audience: false was not read")
	}
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "upstream.require_audience is false") || !strings.Contains(w[0], "audience mapper") {
		t.Errorf("warnings %q, want one naming require_audience and the audience mapper", w)
	}
}

func TestUpstreamClients(t *testing.T) {
	with := func(list string) string {
		return strings.Replace(base, "    audiences: [api]\n", "    audiences: [api]\n    upstream_clients: "+list+"\n", 1)
	}
	c, err := Parse(strings.NewReader(with("[web-app, web-spa]")), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Clients[0].UpstreamClients; len(got) != 2 || got[0] != "web-app" || got[1] != "web-spa" {
		t.Errorf("upstream_clients = %q", got)
	}
	for _, bad := range []string{"[]", `[""]`, `[" web "]`} {
		_, err := Parse(strings.NewReader(with(bad)), func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "clients[0].upstream_clients") {
			t.Errorf("upstream_clients: %s: %v, want an error naming the field", bad, err)
		}
	}
}
