//go:build !chaosclock

package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/proctest"
)

// TestReleaseBuild_IgnoresTheChaosClock is an attacker's test of the chaos suite's clock
// (clock_chaos.go, built only with -tags chaosclock): someone who can set the gateway's
// environment points TOKENGATE_CHAOS_CLOCK_FILE at a file offsetting the clock by a day, to
// mint tokens that outlive their ttl. The release binary neither contains the variable's name
// nor lets it move the clock: the tokens it issues carry the real time.
func TestReleaseBuild_IgnoresTheChaosClock(t *testing.T) {
	t.Parallel()
	bin, err := os.ReadFile(binPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"TOKENGATE_CHAOS_CLOCK_FILE", "chaosclock build"} {
		if bytes.Contains(bin, []byte(s)) {
			t.Errorf("the release binary contains %q: the chaos clock is compiled in", s)
		}
	}
	off := filepath.Join(t.TempDir(), "offset")
	if err := os.WriteFile(off, []byte("24h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	realm := kctest.New(t)
	g := &gateway{Gateway: proctest.StartT(t, baseConfig(realm.Issuer(), t.TempDir()),
		proctest.Options{Bin: binPath, Env: []string{"TOKENGATE_CHAOS_CLOCK_FILE=" + off}}), t: t}
	r := g.mustExchange(realm.AccessToken(kctest.Token{Subject: "mallory", SID: "sid-clock-" + randID(t)}))
	parts := strings.Split(r.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not a JWS: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var cl struct {
		Iat, Exp int64
	}
	if err := json.Unmarshal(b, &cl); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(time.Unix(cl.Iat, 0)).Abs(); d > 5*time.Second {
		t.Errorf("iat is %s off the real clock: the environment moved the release build's clock", d)
	}
	if ttl := time.Duration(cl.Exp-cl.Iat) * time.Second; ttl > 30*time.Second {
		t.Errorf("exp - iat = %s, more than tokens.ttl", ttl)
	}
	if strings.Contains(g.Output(), "chaos_clock") {
		t.Error("the release build logged the chaos clock")
	}
}
