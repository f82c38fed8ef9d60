package demostack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Chromium returns the path printed by scripts/chromium.sh path. It installs nothing: go test
// runs packages in parallel and two installs collide, so `make test` and `make demo` install
// Chromium before anything starts (scripts/chromium.sh ensure).
func Chromium(root string) (string, error) {
	out, err := exec.Command(filepath.Join(root, "scripts", "chromium.sh"), "path").Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("missing dependency: chromium (scripts/chromium.sh path): %s", msg)
	}
	return strings.TrimSpace(string(out)), nil
}

// Browser is one headless Chromium with a fresh profile.
type Browser struct {
	ctx    context.Context
	cancel func()

	mu         sync.Mutex
	responses  map[string]time.Time // URL prefix watched → when its first response arrived
	watchedFor []string
}

// NewBrowser starts headless Chromium at path with a fresh user-data-dir under dir.
func NewBrowser(ctx context.Context, path, dir string) (*Browser, error) {
	profile, err := os.MkdirTemp(dir, "chromium-profile-")
	if err != nil {
		return nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1000, 800),
	)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	b := &Browser{ctx: bctx, responses: map[string]time.Time{}}
	b.cancel = func() { bcancel(); acancel(); _ = os.RemoveAll(profile) }
	tctx, tcancel := context.WithTimeout(bctx, 90*time.Second)
	defer tcancel()
	// The first Do starts the browser; its context must not carry the timeout (chromedp.Run).
	if err := chromedp.Do(bctx); err != nil {
		b.cancel()
		return nil, fmt.Errorf("start chromium %s: %w", path, err)
	}
	if _, err := chromedp.Call(tctx, network.Enable, network.EnableParams{}); err != nil {
		b.cancel()
		return nil, fmt.Errorf("chromium: Network.enable: %w", err)
	}
	err = chromedp.Listen(bctx, func(ev any) {
		// A redirect answer shows up as the next request's redirectResponse, a final one as
		// responseReceived.
		var u string
		switch e := ev.(type) {
		case *network.EventResponseReceived:
			u = e.Response.URL
		case *network.EventRequestWillBeSent:
			if e.RedirectResponse != nil {
				u = e.RedirectResponse.URL
			}
		}
		if u == "" {
			return
		}
		now := time.Now()
		b.mu.Lock()
		for _, p := range b.watchedFor {
			if _, seen := b.responses[p]; !seen && strings.HasPrefix(u, p) {
				b.responses[p] = now
			}
		}
		b.mu.Unlock()
	})
	if err != nil {
		b.cancel()
		return nil, fmt.Errorf("chromium: listen: %w", err)
	}
	return b, nil
}

// Close stops Chromium and removes its profile.
func (b *Browser) Close() { b.cancel() }

func (b *Browser) run(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// Login opens the BFF, follows it to Keycloak's real login page, signs in and waits until the
// BFF page shows the user.
func (b *Browser) Login(bffURL, user, pass string) error {
	err := b.run(90*time.Second,
		chromedp.Navigate(bffURL+"/login"),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pass),
		chromedp.Click(chromedp.ID("kc-login")),
		chromedp.WaitVisible(chromedp.ID("logout")),
	)
	if err != nil {
		return fmt.Errorf("browser login as %s: %w (page: %s)", user, err, b.Text())
	}
	return nil
}

// LoginFrom opens pageURL, clicks its #login link, signs in on Keycloak's real login page and
// waits until the page it lands on shows a #logout button (a BFF other than demo-bff, e.g.
// examples/bff-spring).
func (b *Browser) LoginFrom(pageURL, user, pass string) error {
	err := b.run(90*time.Second,
		chromedp.Navigate(pageURL),
		chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pass),
		chromedp.Click(chromedp.ID("kc-login")),
		chromedp.WaitVisible(chromedp.ID("logout")),
	)
	if err != nil {
		return fmt.Errorf("browser login as %s from %s: %w (page: %s)", user, pageURL, err, b.Text())
	}
	return nil
}

// Logout clicks the BFF's logout button, which goes through Keycloak's end_session endpoint
// and back. It returns when Keycloak's end_session response reached the browser.
func (b *Browser) Logout(endSession string) (time.Time, error) {
	b.mu.Lock()
	b.watchedFor = append(b.watchedFor, endSession)
	delete(b.responses, endSession)
	b.mu.Unlock()
	err := b.run(60*time.Second,
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("login")),
	)
	b.mu.Lock()
	at, ok := b.responses[endSession]
	b.mu.Unlock()
	if err != nil {
		return at, fmt.Errorf("browser logout: %w (page: %s)", err, b.Text())
	}
	if !ok {
		return at, fmt.Errorf("browser logout: no response from %s seen", endSession)
	}
	return at, nil
}

// Reload reloads the current page.
func (b *Browser) Reload() error {
	return b.run(30*time.Second, chromedp.Reload(), chromedp.WaitReady(chromedp.CSS("body")))
}

// Text returns the visible text of the current page (for messages).
func (b *Browser) Text() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	return strings.Join(strings.Fields(s), " ")
}

// Screenshot saves a full-page PNG.
func (b *Browser) Screenshot(path string) error {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, buf, 0o644)
}

// UpdatePassword opens authURL — an authorization request with kc_action=UPDATE_PASSWORD (an
// application-initiated action) — signs in as user, fills Keycloak's update-password form with
// newPass, sets its "Sign out from other devices" box (logout-sessions) to signOutOthers and
// submits it. It returns once Keycloak redirected the browser to a URL starting with
// redirectURI. The browser's cookies are cleared first, so Keycloak always asks for the login.
func (b *Browser) UpdatePassword(authURL, redirectURI, user, pass, newPass string, signOutOthers bool) error {
	var (
		found bool
		err   error
	)
	// Keycloak's pages replace nodes while they load; chromedp then fails an action on a node it
	// had just found ("Could not find node with given id"). Nothing was submitted yet, so the
	// form is simply opened again (cookies cleared, a new login).
	for attempt := 1; ; attempt++ {
		found, err = b.fillUpdatePassword(authURL, user, pass, newPass, signOutOthers)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "Could not find node") {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("browser update-password as %s: %w (page: %s)", user, err, b.Text())
	}
	if !found {
		return fmt.Errorf("browser update-password: no logout-sessions box on the form (page: %s)", b.Text())
	}
	if err := b.run(30*time.Second, chromedp.Submit(chromedp.ID("password-new"))); err != nil {
		return fmt.Errorf("browser update-password: submit: %w (page: %s)", err, b.Text())
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		loc, err := chromedp.Run(ctx, chromedp.Location())
		cancel()
		if err == nil && strings.HasPrefix(loc, redirectURI) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("browser update-password: not redirected to %s (at %s, %v; page: %s)", redirectURI, loc, err, b.Text())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fillUpdatePassword clears the cookies, opens authURL, signs in and fills the update-password
// form without submitting it; found reports whether the form had its logout-sessions box.
func (b *Browser) fillUpdatePassword(authURL, user, pass, newPass string, signOutOthers bool) (found bool, err error) {
	err = b.run(90*time.Second,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{})
			return err
		}),
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pass),
		chromedp.Click(chromedp.ID("kc-login")),
		chromedp.WaitVisible(chromedp.ID("password-new")),
		chromedp.SendKeys(chromedp.ID("password-new"), newPass),
		chromedp.SendKeys(chromedp.ID("password-confirm"), newPass),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			var err error
			found, err = chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(
				`(() => { const c = document.getElementById("logout-sessions"); if (!c) return false; c.checked = %t; return true })()`,
				signOutOthers)))
			return err
		}),
	)
	return found, err
}
