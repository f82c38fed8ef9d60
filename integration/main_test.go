// Package integration runs the logout story against a real Keycloak (scripts/keycloak.sh),
// the real tokengate, demo-bff and demo-service binaries, headless Chromium (chromedp) and
// npm jose run by node. It runs when TOKENGATE_INTEGRATION=1 (make test); without it every
// test skips saying so. With it, a missing dependency (Java ≥ 21, Maven or the cached Keycloak,
// Chromium, node/npm, curl, unzip) fails every test with a message naming it.
//
// One Keycloak (scripts/keycloak.sh's default version, KEYCLOAK_VERSION selects another)
// serves the whole package: TestMain (demostack.RunSuite) starts it once, on a free port, with
// its own KC_RUN_DIR and TOKENGATE_URL pointing at the tokengate started here. Tests run in
// file order; the one that restarts Keycloak (a fresh realm import: new keys, user ids,
// sessions) comes last. integration/kc265 runs a short smoke path on Keycloak 26.5.6.
package integration

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/demostack"
)

// Timing of the tokengate under test: short so expiry and recheck are observable quickly.
const (
	ttl          = 5 * time.Second
	recheckAfter = 10 * time.Second
)

// otherBFF is a second BFF registered at tokengate, bound to Keycloak client bff-other
// (created by the audience-mapper test): it must not exchange tokens Keycloak issued to bff.
var otherBFF = demostack.Client{ID: "other-bff", Secret: "other-bff-at-tokengate-secret-0123456789", UpstreamClients: []string{"bff-other"}}

var (
	suite     demostack.Suite
	st        *demostack.Stack
	chromium  string
	root      string
	artifacts string
)

func TestMain(m *testing.M) {
	os.Exit(demostack.RunSuite(m, demostack.SuiteOptions{
		Name: "integration", TTL: ttl, RecheckAfter: recheckAfter, MoreClients: []demostack.Client{otherBFF},
		Tools: []demostack.Tool{
			{Bin: "node", Why: "runs the npm jose verifier (test 6)"},
			{Bin: "npm", Why: "installs the pinned npm jose (test 6)"},
		},
	}, &suite))
}

// need skips without TOKENGATE_INTEGRATION=1 and fails when the setup failed.
func need(t *testing.T) {
	t.Helper()
	suite.Need(t)
	st, chromium, root = suite.Stack, suite.Chromium, suite.Root
	artifacts = filepath.Join(root, "artifacts", "integration")
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var errNotYet = errors.New("not yet")
