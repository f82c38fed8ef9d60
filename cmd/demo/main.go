// Command demo plays the logout story of `make demo` against real components: it starts
// Keycloak (scripts/keycloak.sh), tokengate, demo-service, payments (demo-service again, for
// audience payments) and demo-bff, logs alice in through Keycloak's login page in headless
// Chromium, has demo-service call payments with a delegated token (RFC 8693 at tokengate), lets
// an "attacker" copy her internal token, the delegated token (on its way to payments) and her
// Keycloak access token, logs her out in the UI and prints what happened after, in
// milliseconds from Keycloak's end_session response. Then it keeps everything running for a
// person to try at the BFF page until Ctrl-C, and stops it all.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tokengate/tokengate/internal/demostack"
)

func main() {
	var o options
	flag.IntVar(&o.kcPort, "keycloak-port", 18080, "Keycloak port")
	flag.IntVar(&o.tgPort, "tokengate-port", 18443, "tokengate port (the realm's back-channel logout URL points here)")
	flag.IntVar(&o.bffPort, "bff-port", 18000, "demo-bff port")
	flag.IntVar(&o.svcPort, "service-port", 18090, "demo-service port")
	flag.IntVar(&o.payPort, "payments-port", 18091, "payments port (the second service, called with a delegated token)")
	flag.DurationVar(&o.ttl, "ttl", 10*time.Second, "tokengate tokens.ttl")
	flag.DurationVar(&o.recheck, "recheck-after", 30*time.Second, "tokengate tokens.recheck_after")
	flag.StringVar(&o.work, "work", "", "directory for configs, data and logs (default: a new temporary one)")
	flag.BoolVar(&o.noWait, "no-wait", false, "stop after the story instead of waiting for Ctrl-C")
	flag.StringVar(&o.artifacts, "artifacts", "artifacts/demo", "where screenshots go")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type options struct {
	kcPort, tgPort, bffPort, svcPort, payPort int
	ttl, recheck                              time.Duration
	work, artifacts                           string
	noWait                                    bool
}

func say(format string, a ...any) { fmt.Printf("demo: "+format+"\n", a...) }

func run(ctx context.Context, o options) (err error) {
	start := time.Now()
	root, err := demostack.RepoRoot()
	if err != nil {
		return err
	}
	for _, p := range []int{o.kcPort, o.tgPort, o.tgPort + 1, o.bffPort, o.svcPort, o.payPort} {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return fmt.Errorf("port %d is busy (another demo running? see the -*-port flags): %w", p, err)
		}
		l.Close()
	}
	if o.work == "" {
		if o.work, err = os.MkdirTemp("", "tokengate-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(o.work)
	}
	say("building tokengate, demo-bff, demo-service")
	bin, err := demostack.Build(filepath.Join(o.work, "bin"))
	if err != nil {
		return err
	}
	st, err := demostack.NewStack(root, o.work, bin, o.ttl, o.recheck)
	if err != nil {
		return err
	}
	st.Out = os.Stderr
	st.KCPort, st.TGPort, st.TGAdminPort, st.BFFPort, st.ServicePort = o.kcPort, o.tgPort, o.tgPort+1, o.bffPort, o.svcPort
	st.PaymentsPort = o.payPort
	// demo-service reaches payments through a recording proxy: the attacker's copy of the
	// delegated token, as a log line or a proxy on the way could leak it.
	wire, err := newWiretap(st.PaymentsURL())
	if err != nil {
		return err
	}
	defer wire.Close()
	st.DownstreamURL = wire.URL
	say("starting Keycloak on %s (first start on a fresh machine downloads it with Maven and takes longer)", st.KeycloakURL())
	kcTook, err := st.StartKeycloak(ctx)
	if err != nil {
		return err
	}
	defer func() {
		say("stopping Keycloak")
		if e := st.StopKeycloak(); e != nil && err == nil {
			err = e
		}
	}()
	say("Keycloak ready after %s", kcTook.Round(100*time.Millisecond))
	if st.SharedSignals = st.KeycloakOffersSignals(ctx); st.SharedSignals {
		say("Keycloak offers a Shared Signals stream: tokengate follows it (upstream.shared_signals)")
	} else {
		say("this Keycloak has no Shared Signals transmitter (26.7+ with --features=ssf): the logout-while-down scene is skipped")
	}
	defer st.StopAll()
	if err := st.StartTokengate(ctx); err != nil {
		return err
	}
	if err := st.StartService(ctx); err != nil {
		return err
	}
	if err := st.StartPayments(ctx); err != nil {
		return err
	}
	if err := st.StartBFF(ctx); err != nil {
		return err
	}
	say("tokengate %s (ttl %s), demo-service %s, payments %s, demo-bff %s", st.TokengateURL(), o.ttl, st.ServiceURL(), st.PaymentsURL(), st.BFFURL())
	chromium, err := demostack.Chromium(root)
	if err != nil {
		return err
	}
	br, err := demostack.NewBrowser(ctx, chromium, o.work)
	if err != nil {
		return err
	}
	tl, err := story(ctx, st, br, wire, o)
	br.Close()
	if err != nil {
		return err
	}
	if st.SharedSignals {
		down, err := downScene(ctx, st)
		if err != nil {
			return err
		}
		tl += "\n" + down
	}
	fmt.Println()
	fmt.Print(tl)
	fmt.Println()
	say("story played in %s (since the start of this command)", time.Since(start).Round(100*time.Millisecond))
	if o.noWait {
		return nil
	}
	fmt.Printf(`
Everything keeps running. Try it yourself:
  BFF page      %s   (alice / alice-password, bob / bob-password)
  Keycloak      %s   (admin console: admin / admin)
  tokengate     %s/.well-known/openid-configuration
  demo-service  %s   (and %s: calls payments with a delegated token)
  payments      %s   (only tokens demo-service delegated)
  logs          %s
Press Ctrl-C to stop everything.
`, st.BFFURL(), st.KeycloakURL(), st.TokengateURL(), st.ServiceURL(), st.ServiceDownstreamURL(), st.PaymentsURL(), o.work)
	<-ctx.Done()
	fmt.Println()
	return nil
}

// story plays the logout story and returns the timeline.
func story(ctx context.Context, st *demostack.Stack, br *demostack.Browser, wire *wiretap, o options) (string, error) {
	var b strings.Builder
	line := func(at string, format string, a ...any) {
		fmt.Fprintf(&b, "  %10s  %s\n", at, fmt.Sprintf(format, a...))
	}
	say("browser: alice logs in at Keycloak's login page")
	if err := br.Login(st.BFFURL(), "alice", "alice-password"); err != nil {
		return "", err
	}
	sessions, err := st.BFFSessions(ctx)
	if err != nil || len(sessions) != 1 {
		return "", fmt.Errorf("BFF sessions: %v (%d)", err, len(sessions))
	}
	s := sessions[0]
	if s.LastStatus != 200 {
		return "", fmt.Errorf("service call after login answered %d: %s", s.LastStatus, s.LastAnswer)
	}
	_ = br.Screenshot(filepath.Join(o.artifacts, "1-logged-in.png"))
	// The BFF's call reaches demo-service, which calls payments on alice's behalf with a token
	// tokengate delegated to it (aud payments, act demo-service).
	say("demo-service calls payments with a delegated token")
	down, err := callDownstream(ctx, st, s.InternalToken)
	if err != nil {
		return "", err
	}
	stolenDelegated := wire.Last()
	if stolenDelegated == "" {
		return "", errors.New("demo-service reached payments without a bearer token")
	}
	// The attacker copies what a compromised browser extension, log line or proxy could leak.
	stolenInternal, stolenKC, bffRefresh := s.InternalToken, s.KeycloakAccessToken, s.InternalRefreshToken
	kcProvider, err := oidc.NewProvider(ctx, st.KeycloakIssuer())
	if err != nil {
		return "", err
	}
	kcLocal := kcProvider.Verifier(&oidc.Config{SkipClientIDCheck: true})

	// The attacker keeps calling the service with the copied internal token from just before the
	// logout: the service follows tokengate's revocation feed, so it refuses the token as soon as
	// the logout reaches it, long before the token's exp.
	type refusal struct {
		lastOK, rejected time.Time
		wwwAuth          string
		err              error
	}
	poll := func(url, token string) chan refusal {
		polled := make(chan refusal, 1)
		go func() {
			var r refusal
			for deadline := time.Now().Add(o.ttl + 15*time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				code, _, wa, err := st.CallURL(ctx, url, token)
				if err != nil {
					r.err = err
					break
				}
				if code == 401 {
					r.rejected, r.wwwAuth = time.Now(), wa
					break
				}
				r.lastOK = time.Now()
			}
			polled <- r
		}()
		return polled
	}
	polled := poll(st.ServiceURL(), stolenInternal)
	polledDelegated := poll(st.PaymentsURL(), stolenDelegated)

	say("browser: alice logs out (BFF → Keycloak end_session → back)")
	t0, err := br.Logout(kcEndSession(kcProvider))
	if err != nil {
		return "", err
	}
	since := func(t time.Time) string { return fmt.Sprintf("%+d ms", t.Sub(t0).Milliseconds()) }
	// Renewal with the BFF's refresh token, as its renew loop would do next.
	renew, err := st.Renew(ctx, bffRefresh)
	tRenew := time.Now()
	if err != nil {
		return "", err
	}
	_ = br.Reload()
	_ = br.Screenshot(filepath.Join(o.artifacts, "2-logged-out.png"))
	// The BFF's own back-channel endpoint, fed by tokengate's relay.
	var relayed *demostack.BackchannelLogout
	for deadline := time.Now().Add(10 * time.Second); relayed == nil && time.Now().Before(deadline); {
		bc, _ := st.BFFBackchannel(ctx)
		for i := range bc {
			if bc[i].SID == s.SID {
				relayed = &bc[i]
			}
		}
		if relayed == nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The attacker's copied Keycloak access token: still a valid JWT locally, refused by tokengate.
	_, localErr := kcLocal.Verify(ctx, stolenKC)
	exch, err := st.Exchange(ctx, stolenKC)
	tExch := time.Now()
	if err != nil {
		return "", err
	}
	// demo-service (or anyone holding its credentials) tries to delegate the copied token again.
	again, err := st.Delegate(ctx, demostack.Audience, demostack.ServiceTokengateSecret, stolenInternal, demostack.PaymentsAudience)
	tAgain := time.Now()
	if err != nil {
		return "", err
	}
	pr, pd := <-polled, <-polledDelegated
	for _, r := range []refusal{pr, pd} {
		if r.err != nil {
			return "", r.err
		}
	}
	tRejected, lastOK, wwwAuth := pr.rejected, pr.lastOK, pr.wwwAuth
	fmt.Fprintf(&b, "Timeline (ms relative to Keycloak's end_session response reaching the browser; tokens.ttl %s)\n", o.ttl)
	line("before", "alice logged in through Keycloak's login page (Chromium); BFF exchanged her Keycloak token at tokengate")
	line("before", "service call with the internal token: HTTP %d %s", s.LastStatus, s.LastAnswer)
	line("before", "demo-service called payments with a delegated token (aud payments, act %v): HTTP %d, payments answered %d for %s",
		down.Answer.Whoami.Act, down.Status, down.Answer.Status, down.Answer.Whoami.Username)
	line("before", "attacker copied the internal token (exp %s), the delegated token on its way to payments (exp %s) and the Keycloak access token",
		s.InternalExpiry.Format("15:04:05"), down.expiry().Format("15:04:05"))
	line("0 ms", "alice clicked Log out; Keycloak answered end_session (it sent the back-channel logout to tokengate first)")
	if relayed != nil {
		line(since(relayed.At), "BFF's own back-channel endpoint got the logout relayed by tokengate; %d session(s) ended", relayed.Sessions)
	} else {
		line("never", "BFF's back-channel endpoint got NO relayed logout within 10 s")
	}
	if renew.Status == 400 && renew.Error == "invalid_grant" {
		line(since(tRenew), "renewal refused: %s (%s)", renew.Error, renew.Description)
	} else {
		line(since(tRenew), "renewal NOT refused: HTTP %d %s", renew.Status, renew.Error)
	}
	if localErr == nil {
		line(since(tExch), "copied Keycloak access token still verifies locally against Keycloak's JWKS (the problem tokengate solves)")
	}
	line(since(tExch), "copied Keycloak access token refused for exchange: HTTP %d %s (%s)", exch.Status, exch.Error, exch.Description)
	if !lastOK.IsZero() {
		line(since(lastOK), "copied internal token last accepted by the service (polled every 20 ms)")
	}
	if !tRejected.IsZero() {
		line(since(tRejected), "copied internal token rejected by the service, %s before its exp: 401 %s",
			s.InternalExpiry.Sub(tRejected).Round(time.Second), wwwAuth)
	} else {
		line("never", "copied internal token still accepted %s after logout", o.ttl+15*time.Second)
	}
	if again.Status == 400 && again.Error != "" {
		line(since(tAgain), "delegating the copied internal token again refused by tokengate: HTTP %d %s (%s)", again.Status, again.Error, again.Description)
	} else {
		line(since(tAgain), "delegating the copied internal token again NOT refused: HTTP %d %s", again.Status, again.Error)
	}
	if !pd.lastOK.IsZero() {
		line(since(pd.lastOK), "copied delegated token last accepted by payments (polled every 20 ms)")
	}
	if !pd.rejected.IsZero() {
		line(since(pd.rejected), "copied delegated token rejected by payments, %s before its exp: 401 %s",
			down.expiry().Sub(pd.rejected).Round(time.Second), pd.wwwAuth)
	} else {
		line("never", "copied delegated token still accepted by payments %s after logout", o.ttl+15*time.Second)
	}
	return b.String(), nil
}

// downScene: tokengate is stopped while alice (a second session) logs out at Keycloak, so the
// back-channel logout finds nobody; tokengate starts again and the copied refresh token's first
// renewal is refused at once — the logout waited in Keycloak's Shared Signals stream.
func downScene(ctx context.Context, st *demostack.Stack) (string, error) {
	var b strings.Builder
	line := func(at string, format string, a ...any) {
		fmt.Fprintf(&b, "  %10s  %s\n", at, fmt.Sprintf(format, a...))
	}
	say("scene 2: tokengate is stopped while alice logs out")
	kc, err := st.PasswordGrant(ctx, "alice", "alice-password")
	if err != nil {
		return "", err
	}
	in, err := st.Exchange(ctx, kc.AccessToken)
	if err != nil || in.Status != 200 {
		return "", fmt.Errorf("exchange: %v HTTP %d %s", err, in.Status, in.Error)
	}
	if err := st.Stop("tokengate", syscall.SIGTERM); err != nil {
		return "", err
	}
	code, err := st.KeycloakLogout(ctx, kc.RefreshToken)
	if err != nil {
		return "", err
	}
	t0 := time.Now()
	since := func(t time.Time) string { return fmt.Sprintf("%+d ms", t.Sub(t0).Milliseconds()) }
	if err := st.StartTokengate(ctx); err != nil {
		return "", err
	}
	tUp := time.Now()
	r, err := st.Renew(ctx, in.RefreshToken)
	tRenew := time.Now()
	if err != nil {
		return "", err
	}
	rev, _ := st.AdminSession(ctx, kc.SessionState)
	fmt.Fprintf(&b, "Scene 2: logout while tokengate is down (ms relative to Keycloak's logout answer)\n")
	line("before", "alice logged in again (second session); the attacker copied its tokengate refresh token; tokengate stopped")
	line("0 ms", "alice's session logged out at Keycloak (HTTP %d); its back-channel logout to tokengate found nobody listening", code)
	line(since(tUp), "tokengate ready again (it drained Keycloak's Shared Signals stream before serving)")
	if r.Status == 400 && r.Error == "invalid_grant" {
		line(since(tRenew), "first renewal with the copied refresh token: refused, %s (%s); recorded as %q", r.Error, r.Description, rev.Revocation.Reason)
	} else {
		line(since(tRenew), "first renewal with the copied refresh token NOT refused: HTTP %d %s", r.Status, r.Error)
	}
	return b.String(), nil
}

func kcEndSession(p *oidc.Provider) string {
	var m struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = p.Claims(&m)
	return m.EndSession
}
