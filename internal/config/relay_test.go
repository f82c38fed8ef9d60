package config

import (
	"strings"
	"testing"
)

func withForward(list string) string {
	return strings.Replace(base, "  logout_audiences: [bff]\n", "  logout_audiences: [bff]\n  forward_logout_to: "+list+"\n", 1)
}

func TestForwardLogoutTo_Parsed(t *testing.T) {
	c, err := Parse(strings.NewReader(withForward("[http://127.0.0.1:18000/backchannel-logout, https://bff.test/bcl]")), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Upstream.ForwardLogoutTo; len(got) != 2 || got[0] != "http://127.0.0.1:18000/backchannel-logout" {
		t.Errorf("forward_logout_to = %v", got)
	}
}

func TestForwardLogoutTo_BadURLNamesTheEntry(t *testing.T) {
	for _, bad := range []string{"[ftp://x/y]", "[/relative]", "[\"http://bff.test/bcl?x=1\"]"} {
		_, err := Parse(strings.NewReader(withForward(bad)), func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "upstream.forward_logout_to[0]") {
			t.Errorf("%s: err = %v, want one naming upstream.forward_logout_to[0]", bad, err)
		}
	}
}
