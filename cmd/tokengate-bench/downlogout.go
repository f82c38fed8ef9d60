package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/tokengate/tokengate/internal/config"
)

// followSignals makes the measurement gateway follow Keycloak's Shared Signals stream with the
// realm's receiver client (deploy/keycloak/realm-demo.json).
func followSignals(c *config.Config) {
	c.Upstream.SharedSignals = config.SharedSignals{Enabled: true, ClientID: "tokengate-signals",
		ClientSecret: "tokengate-signals-secret-0123456789", PollInterval: config.Duration(2 * time.Second)}
}

// DownLogout is the measurement "logout while tokengate was down → renewal refused after
// restart": sessions are logged out at Keycloak while tokengate is stopped (the back-channel
// logout is lost), then tokengate starts again and each session renews once.
type DownLogout struct {
	Sessions int `json:"sessions"`
	// Refused counts the sessions whose first renewal after the restart was refused.
	Refused int `json:"refused_at_first_renewal"`
	// RestartReadyMs is exec → ready of the restarted tokengate (it drains Keycloak's stream
	// before it serves).
	RestartReadyMs float64 `json:"restart_ready_ms"`
	// Note says why it was not measured, when it was not.
	Note string `json:"note,omitempty"`
}

// downLogout measures DownLogout with a gateway that follows Keycloak's Shared Signals stream,
// on the address Keycloak sends back-channel logouts to (so that, while it is stopped, they
// fail as they would in production). Run it when no other gateway holds that address.
func (b *bench) downLogout(ctx context.Context) error {
	res := &b.res.DownLogout
	status, _, err := b.kc.do(ctx, http.MethodGet, "/.well-known/ssf-configuration/realms/"+realm, nil, "", "", "")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		res.Note = fmt.Sprintf("not measured: this Keycloak offers no Shared Signals transmitter (HTTP %d; needs 26.7+ with --features=ssf)", status)
		logf("logout while down: %s", res.Note)
		return nil
	}
	dataDir := filepath.Join(b.work, "down", "data")
	start := func() (*gateway, error) {
		return startGatewayWith(ctx, b.o.bin, b.o.gatewayAddr, b.kc.issuer(), dataDir, followSignals)
	}
	g, err := start()
	if err != nil {
		return err
	}
	n := min(b.p.sessions, 40)
	type sess struct {
		kc kcTokens
		rt string
	}
	ss := make([]sess, 0, n)
	for i := range n {
		t, err := b.kc.login(ctx, i)
		if err != nil {
			g.stop()
			return err
		}
		a, err := g.exchange(ctx, t.AccessToken)
		if err == nil {
			err = g.renewOK(ctx, a.RefreshToken)
		}
		if err != nil {
			g.stop()
			return err
		}
		ss = append(ss, sess{kc: t, rt: a.RefreshToken})
	}
	g.stop()
	for _, s := range ss {
		if err := b.kc.endSession(ctx, s.kc.RefreshToken); err != nil {
			return err
		}
	}
	if g, err = start(); err != nil {
		return err
	}
	defer g.stop()
	res.Sessions, res.RestartReadyMs = len(ss), float64(g.ReadyAfter.Microseconds())/1000
	for _, s := range ss {
		switch err := g.renewOK(ctx, s.rt); {
		case errors.Is(err, errRefused):
			res.Refused++
		case err != nil:
			return err
		}
	}
	logf("logout while down: %d/%d first renewals after the restart refused (restart → ready %.0f ms)",
		res.Refused, res.Sessions, res.RestartReadyMs)
	return nil
}
