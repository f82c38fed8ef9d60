package config

import (
	"strings"
	"testing"
	"time"
)

func TestLimits_PartialBlockKeepsTheOtherDefaults(t *testing.T) {
	c, err := parseWith(t, "limits:\n  token: {rate: 2000, burst: 4000}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultLimits()
	if *c.Limits.Token != (Limit{Rate: 2000, Burst: 4000}) {
		t.Errorf("token = %+v, want the configured 2000/4000", *c.Limits.Token)
	}
	if *c.Limits.Logout != *def.Logout || *c.Limits.AuthFailures != *def.AuthFailures {
		t.Errorf("a partial limits block dropped defaults: logout %+v, auth_failures %+v", *c.Limits.Logout, *c.Limits.AuthFailures)
	}
}

func TestLimits_ZeroRateDisablesOneLimitOnly(t *testing.T) {
	c, err := parseWith(t, "limits:\n  auth_failures: {rate: 0}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.AuthFailures.Rate != 0 || *c.Limits.Logout != *DefaultLimits().Logout {
		t.Errorf("limits = %+v %+v", *c.Limits.AuthFailures, *c.Limits.Logout)
	}
}

func TestLimits_DefaultTokenLimitIsOff(t *testing.T) {
	c, err := parseWith(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.Token.Rate != 0 {
		t.Errorf("default limits.token = %+v: a per-client cap refuses load one gateway serves", *c.Limits.Token)
	}
}

func TestUpstream_MaxSessionLifetimeDefaultAndValidation(t *testing.T) {
	c, err := parseWith(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstream.MaxSessionLifetime.D() != 10*time.Hour {
		t.Errorf("default upstream.max_session_lifetime = %s, want 10h (Keycloak's SSO Session Max)", c.Upstream.MaxSessionLifetime.D())
	}
	for _, bad := range []string{"30s", "2400h", "30m"} {
		_, err := Parse(strings.NewReader(strings.Replace(base, "  logout_audiences: [bff]\n",
			"  logout_audiences: [bff]\n  max_session_lifetime: "+bad+"\n", 1)), func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "upstream.max_session_lifetime") {
			t.Errorf("max_session_lifetime %s: %v, want an error naming the field", bad, err)
		}
	}
}
