package forwardauth

import (
	"strings"
	"testing"
)

func parse(t *testing.T, yaml string, env map[string]string) (*Config, error) {
	t.Helper()
	return Parse(strings.NewReader(yaml), func(k string) string { return env[k] })
}

func TestConfig_DefaultsAndEnvSecret(t *testing.T) {
	c, err := parse(t, "listen: 127.0.0.1:4180\nissuer: https://tokengate.internal\naudience: orders\n",
		map[string]string{EnvStreamSecret: "from-env"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeAuth || c.AdminListen != "127.0.0.1:9091" || c.StreamSecret != "from-env" || c.LogLevel != "info" {
		t.Errorf("defaults: %+v", c)
	}
	vc := c.VerifierConfig()
	if vc.FailClosedAfter.String() != "30s" || vc.Audience != "orders" || vc.StreamSecret != "from-env" {
		t.Errorf("verifier config: %+v", vc)
	}
}

func TestConfig_RefusesWhatCannotWork(t *testing.T) {
	base := "listen: 127.0.0.1:4180\nissuer: https://tokengate.internal\naudience: orders\nstream_secret: s\n"
	cases := map[string]struct{ yaml, want string }{
		"empty":                  {"", "the file is empty"},
		"unknown field":          {base + "audiences: [x]\n", "field audiences not found"},
		"proxy without upstream": {base + "mode: proxy\n", "upstream: is required"},
		"upstream in auth mode":  {base + "upstream: http://127.0.0.1:8080\n", "upstream: is only used with mode: proxy"},
		"bad mode":               {base + "mode: sidecar\n", `mode: "sidecar"`},
		"admin on listen":        {base + "admin_listen: 127.0.0.1:4180\n", "admin_listen: must differ from listen"},
		"no secret":              {"listen: 127.0.0.1:4180\nissuer: https://tokengate.internal\naudience: orders\n", "stream_secret: is required"},
		"no audience":            {"listen: 127.0.0.1:4180\nissuer: https://tokengate.internal\nstream_secret: s\n", "audience: is required"},
		"issuer not a URL":       {"listen: 127.0.0.1:4180\nissuer: tokengate\naudience: orders\nstream_secret: s\n", "issuer:"},
		"fail_closed_after 1s":   {base + "fail_closed_after: 1s\n", "fail_closed_after: 1s is outside"},
		"not a duration":         {base + "fail_closed_after: soon\n", `line 5: "soon" is not a duration`},
		"own stream with an id":  {base + "own_stream: true\nstream_id: orders\n", "stream_id: must be empty"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parse(t, c.yaml, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}
