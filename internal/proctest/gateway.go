package proctest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/loopback"
)

// Options say how to run a gateway; the configuration itself is a config.Config.
type Options struct {
	// Bin is the tokengate binary (BuildTokengate, Run).
	Bin string
	// Dir receives tokengate.yaml (created if missing). When empty, Start makes a temporary
	// directory that the caller removes (the directory of Gateway.ConfigPath); StartT uses
	// t.TempDir.
	Dir string
	// Prefix is a command the binary runs under, e.g. {"taskset", "-c", "1"}.
	Prefix []string
	// Env is added to the process's environment.
	Env []string
	// LogPath, when set, is the file the output is appended to; otherwise it is kept in memory.
	// Either way Output returns it.
	LogPath string
	// ReadyTimeout bounds the wait for /readyz; DefaultReadyTimeout when zero.
	ReadyTimeout time.Duration
	// PollEvery is how often /readyz is asked while waiting; 10ms when zero (ReadyAfter is only
	// as precise as this).
	PollEvery time.Duration
	// NoWait returns as soon as the process runs, for an admin listener the harness cannot
	// ask (mTLS): the caller decides when it is ready.
	NoWait bool
}

// Gateway is a `tokengate serve` process run from a config.Config that Start wrote with
// config.Marshal. It may be stopped and started again on the same file (same addresses, same
// data directory); the Process methods signal, stop and read it.
type Gateway struct {
	*Process
	// Config is the configuration as written, with the addresses Start chose.
	Config config.Config
	// ConfigPath is the file it was written to.
	ConfigPath string
	// Base and Admin are the URLs of the public and the admin listener (http://host:port).
	Base, Admin string
}

// UpstreamFor returns the upstream section for the fake Keycloak realm (internal/kctest) at
// issuer: its introspection client and logout audience, with a 2s timeout.
func UpstreamFor(issuer string) config.Upstream {
	return config.Upstream{Issuer: issuer, ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret,
		LogoutAudiences: []string{kctest.LogoutAudience}, Timeout: config.Duration(2 * time.Second)}
}

// Start writes c to Options.Dir/tokengate.yaml and runs `tokengate serve` on it, returning once
// /readyz answers 200 on the admin listener (unless Options.NoWait). An empty Listen or
// AdminListen gets a free loopback address, and a start that loses the race for one is
// retried on new addresses; an empty Issuer becomes the public listener's URL. On error the
// process is not running.
func Start(ctx context.Context, c config.Config, o Options) (*Gateway, error) {
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "tokengate-proc-")
		if err != nil {
			return nil, err
		}
		o.Dir = dir
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	pickListen, pickAdmin, pickIssuer := c.Listen == "", c.AdminListen == "", c.Issuer == ""
	configPath := filepath.Join(o.Dir, "tokengate.yaml")
	g := &Gateway{ConfigPath: configPath, Process: NewProcess(Spec{
		Name: "tokengate", Argv: append(append(append([]string(nil), o.Prefix...), o.Bin), "serve", "--config", configPath),
		Env: o.Env, LogPath: o.LogPath, ReadyTimeout: o.ReadyTimeout, PollEvery: o.PollEvery,
	})}
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		var err error
		if pickListen {
			if c.Listen, err = loopback.FreeAddr(); err != nil {
				return nil, err
			}
		}
		if pickAdmin {
			if c.AdminListen, err = loopback.FreeAddr(); err != nil {
				return nil, err
			}
		}
		if pickIssuer {
			c.Issuer = "http://" + c.Listen
		}
		g.Config, g.Base, g.Admin = c, "http://"+c.Listen, "http://"+c.AdminListen
		if !o.NoWait {
			g.SetReadyURL(g.Admin + "/readyz")
		}
		b, err := config.Marshal(&c)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(g.ConfigPath, append([]byte("# written by internal/proctest\n"), b...), 0o600); err != nil {
			return nil, err
		}
		before := len(g.Output())
		last = g.Restart(ctx)
		// A gateway that lost the race for an address it was given fails to bind: try others.
		if last == nil || !(pickListen || pickAdmin) || !strings.Contains(g.Output()[before:], "address already in use") {
			break
		}
	}
	if last != nil {
		return nil, last
	}
	return g, nil
}

// Restart starts the process again on the same configuration file and waits as Start does. It
// is an error to restart a running gateway.
func (g *Gateway) Restart(ctx context.Context) error { return g.Process.Start(ctx) }

// ReadyStatus asks /readyz once with hc and returns the status, 0 when there is no answer.
func (g *Gateway) ReadyStatus(hc *http.Client) int { return Status(hc, g.Admin+"/readyz") }

// PostForm posts form to path on the public listener, with HTTP Basic credentials when
// clientID is not empty, decodes a JSON answer into reply (an answer that is not JSON leaves
// it as it was) and returns the HTTP status.
func (g *Gateway) PostForm(hc *http.Client, path string, form url.Values, clientID, secret string, reply any) (int, error) {
	req, err := http.NewRequest(http.MethodPost, g.Base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientID != "" {
		req.SetBasicAuth(clientID, secret)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, reply)
	return resp.StatusCode, nil
}

// StartT is Start for a test: it fails the test unless the gateway becomes ready, and when
// the test ends it kills the process, fails the test if the race detector reported in its
// output, and logs the output (the end of it) if the test failed.
func StartT(t testing.TB, c config.Config, o Options) *Gateway {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	g, err := Start(context.Background(), c, o)
	if err != nil {
		t.Fatal(err)
	}
	g.CleanupT(t)
	return g
}

// CleanupT does StartT's end-of-test work for a gateway from Start (which, unlike StartT, may
// be called from any goroutine): when t ends, the process is killed, a race detector report in
// its output fails t, and the output is logged if t failed.
func (g *Gateway) CleanupT(t testing.TB) {
	t.Cleanup(func() {
		g.Kill()
		out := g.Output()
		if strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("the race detector fired in tokengate serve (%s)", g.Base)
		}
		if t.Failed() {
			t.Logf("tokengate serve (%s) output:\n%s", g.Base, Tail(out, 20000))
		}
	})
}

// StartAll starts one gateway per configuration at once — a replica set sharing a store — and
// returns them in the order of cs once every one answers /readyz. opts(i) gives the options of
// the i-th (each needs its own Dir). On error every gateway it started is killed.
func StartAll(ctx context.Context, cs []config.Config, opts func(i int) Options) ([]*Gateway, error) {
	gs := make([]*Gateway, len(cs))
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { gs[i], errs[i] = Start(ctx, c, opts(i)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, g := range gs {
			if g != nil {
				g.Kill()
			}
		}
		return nil, err
	}
	return gs, nil
}

// Reply is a decoded answer of the token, revocation or logout endpoint; Status 0 means no
// answer (Err says why).
type Reply struct {
	Status int
	Err    error
	// Header is the answer's header (nil when there was no answer).
	Header http.Header
	// Body is the answer's body as received.
	Body            string
	AccessToken     string `json:"access_token"`
	RefreshToken    string `json:"refresh_token"`
	TokenType       string `json:"token_type"`
	IssuedTokenType string `json:"issued_token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Error           string `json:"error"`
	Description     string `json:"error_description"`

	nonJSON bool
}

// NonJSON reports whether the answer had a body that is not JSON (Error is then "non-json"
// and Description the body).
func (r Reply) NonJSON() bool { return r.nonJSON }

// String shows the status and the error, or the status and the start of a success body.
func (r Reply) String() string {
	if r.Err != nil {
		return "no answer: " + r.Err.Error()
	}
	if r.Error != "" {
		return fmt.Sprintf("%d %s (%s)", r.Status, r.Error, r.Description)
	}
	if r.Body == "" {
		return fmt.Sprint(r.Status)
	}
	if len(r.Body) > 120 {
		return fmt.Sprintf("%d %s…", r.Status, r.Body[:120])
	}
	return fmt.Sprintf("%d %s", r.Status, r.Body)
}

// Post posts form to path on the public listener with hc, with HTTP Basic credentials when
// clientID is not empty. An answer that is not JSON has Error "non-json" and the body as
// Description (see Reply.NonJSON).
func (g *Gateway) Post(hc *http.Client, path string, form url.Values, clientID, secret string) Reply {
	req, err := http.NewRequest(http.MethodPost, g.Base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return Reply{Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientID != "" {
		req.SetBasicAuth(clientID, secret)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Reply{Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	out := Reply{Status: resp.StatusCode, Err: err, Header: resp.Header, Body: string(body)}
	if len(bytes.TrimSpace(body)) > 0 && json.Unmarshal(body, &out) != nil {
		out.Error, out.Description, out.nonJSON = "non-json", string(body), true
	}
	return out
}

// PostT is Post for a test that expects a JSON answer: it fails the test when there is no
// answer, the body cannot be read or it is not JSON.
func (g *Gateway) PostT(t testing.TB, hc *http.Client, path string, form url.Values, clientID, secret string) Reply {
	t.Helper()
	r := g.Post(hc, path, form, clientID, secret)
	switch {
	case r.Status == 0:
		t.Fatalf("POST %s: %v", path, r.Err)
	case r.Err != nil:
		t.Fatalf("POST %s: read: %v", path, r.Err)
	case r.nonJSON:
		t.Fatalf("POST %s: %d answer is not JSON: %q", path, r.Status, r.Body)
	}
	return r
}

// ExchangeForm is the /token form that exchanges subjectToken (RFC 8693, an access token)
// for a token for audience (none asked for when empty).
func ExchangeForm(subjectToken, audience string) url.Values {
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {subjectToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
	}
	if audience != "" {
		form.Set("audience", audience)
	}
	return form
}

// RenewForm is the /token form that renews with a refresh token.
func RenewForm(refresh string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}
}

// LogoutForm is the /backchannel-logout form that carries a logout token.
func LogoutForm(logoutToken string) url.Values {
	return url.Values{"logout_token": {logoutToken}}
}

// Exchange asks /token, as clientID, for a token for audience (none asked for when empty) in
// exchange for subjectToken (RFC 8693, an access token).
func (g *Gateway) Exchange(hc *http.Client, clientID, secret, subjectToken, audience string) Reply {
	return g.Post(hc, "/token", ExchangeForm(subjectToken, audience), clientID, secret)
}

// Renew asks /token, as clientID, for new tokens for a refresh token.
func (g *Gateway) Renew(hc *http.Client, clientID, secret, refresh string) Reply {
	return g.Post(hc, "/token", RenewForm(refresh), clientID, secret)
}

// Logout posts a back-channel logout token to /backchannel-logout.
func (g *Gateway) Logout(hc *http.Client, logoutToken string) Reply {
	return g.Post(hc, "/backchannel-logout", LogoutForm(logoutToken), "", "")
}
