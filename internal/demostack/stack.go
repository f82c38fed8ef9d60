// Package demostack starts and drives the real components of the logout story — Keycloak
// (scripts/keycloak.sh), tokengate, demo-bff and demo-service as processes, and Chromium via
// chromedp — for `make demo` (cmd/demo) and the integration suite (integration/).
package demostack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/internal/proctest"
)

// Secrets of the demo realm (deploy/keycloak/realm-demo.json) and of the BFF at tokengate.
const (
	BFFKeycloakSecret  = "bff-secret-0123456789-abcdefghijkl"
	TokengateKCSecret  = "tokengate-secret-0123456789-abcdefg"
	BFFTokengateSecret = "bff-at-tokengate-secret-0123456789-abcdef"
	Audience           = "demo-service"
	// AdminToken is tokengate's admin API bearer token in the demo configuration.
	AdminToken = "demo-admin-token-0123456789-abcdefghijkl"
	// ServiceStreamSecret lets demo-service create its own revocation stream (ssf.receivers).
	ServiceStreamSecret = "demo-service-stream-secret-0123456789-abc"
	Realm               = "demo"
	// SignalsClientID and SignalsClientSecret are the realm's Shared Signals receiver client.
	SignalsClientID     = "tokengate-signals"
	SignalsClientSecret = "tokengate-signals-secret-0123456789"
	// SignalsPollInterval is the demo's pause between polls of Keycloak's stream.
	SignalsPollInterval = 500 * time.Millisecond
	// PaymentsAudience is the second demo service (demo-service started again as payments):
	// demo-service calls it with a delegated token (docs/delegation.md).
	PaymentsAudience = "payments"
	// LedgerAudience is where payments may delegate on (a chain of two actors).
	LedgerAudience = "ledger"
	// ServiceTokengateSecret is demo-service's client secret at tokengate (it delegates).
	ServiceTokengateSecret = "demo-service-at-tokengate-secret-0123456789"
	// PaymentsTokengateSecret is payments' client secret at tokengate (it delegates to ledger).
	PaymentsTokengateSecret = "payments-at-tokengate-secret-0123456789-ab"
	// PaymentsStreamSecret and LedgerStreamSecret let those services create their own
	// revocation streams (ssf.receivers).
	PaymentsStreamSecret = "payments-stream-secret-0123456789-abcdefgh"
	LedgerStreamSecret   = "ledger-stream-secret-0123456789-abcdefghij"
)

// Binaries are the built executables.
type Binaries struct{ Tokengate, BFF, Service string }

// Build compiles the three binaries into dir (created if missing) with proctest.Build; the
// compiler's output goes to stderr.
func Build(dir string) (Binaries, error) {
	b := Binaries{
		Tokengate: filepath.Join(dir, "tokengate"),
		BFF:       filepath.Join(dir, "demo-bff"),
		Service:   filepath.Join(dir, "demo-service"),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return b, err
	}
	return b, proctest.Build(dir, false, "tokengate", "demo-bff", "demo-service")
}

// RepoRoot finds the module root from the working directory upwards.
func RepoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "scripts", "keycloak.sh")); err == nil {
				return d, nil
			}
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("repository root (go.mod + scripts/keycloak.sh) not found")
		}
		d = p
	}
}

// FreePort returns a TCP port free on 127.0.0.1 right now and reserved for this process
// (loopback.Port): the stack's ports are picked before Keycloak starts, tens of seconds before
// the last process binds its own.
func FreePort() (int, error) { return loopback.Port() }

// Stack is one set of processes with fixed ports (fixed so restarts keep their URLs).
type Stack struct {
	Root string
	Work string // data, configs and logs live here
	Bin  Binaries

	KCPort, TGPort, TGAdminPort, BFFPort, ServicePort int
	// PaymentsPort is the port of payments (StartPayments).
	PaymentsPort int
	// DownstreamURL is where demo-service's GET /api/downstream sends its delegated token;
	// empty: payments (PaymentsURL). The demo puts a recording proxy there.
	DownstreamURL     string
	TTL, RecheckAfter time.Duration
	// KeycloakVersion selects the Keycloak distribution (KEYCLOAK_VERSION of
	// scripts/keycloak.sh); empty: the script's default.
	KeycloakVersion string
	// MoreClients are BFFs registered at tokengate besides bff (the integration suite's
	// caller-binding tests).
	MoreClients []Client
	// SharedSignals makes tokengate follow Keycloak's Shared Signals stream with the realm's
	// receiver client (Keycloak 26.7+; scripts/keycloak.sh turns the feature on).
	SharedSignals bool
	// SignalEvents are upstream.shared_signals.events (the events tokengate acts on); empty:
	// tokengate's default.
	SignalEvents []string
	// Out receives the processes' output (logs); nil discards it.
	Out io.Writer

	mu    sync.Mutex
	procs map[string]*proctest.Process
}

// Client is a BFF registered at tokengate: its id, secret and the Keycloak clients whose
// tokens it may exchange (upstream_clients; empty: its own id).
type Client struct {
	ID, Secret      string
	UpstreamClients []string
}

// NewStack picks free ports (the Keycloak port may be preset by the caller).
func NewStack(root, work string, bin Binaries, ttl, recheck time.Duration) (*Stack, error) {
	s := &Stack{Root: root, Work: work, Bin: bin, TTL: ttl, RecheckAfter: recheck, procs: map[string]*proctest.Process{}}
	for _, p := range []*int{&s.KCPort, &s.TGPort, &s.TGAdminPort, &s.BFFPort, &s.ServicePort, &s.PaymentsPort} {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		*p = port
	}
	return s, nil
}

// URLs of the components.
func (s *Stack) KeycloakURL() string    { return fmt.Sprintf("http://127.0.0.1:%d", s.KCPort) }
func (s *Stack) KeycloakIssuer() string { return s.KeycloakURL() + "/realms/" + Realm }
func (s *Stack) TokengateURL() string   { return fmt.Sprintf("http://127.0.0.1:%d", s.TGPort) }
func (s *Stack) AdminURL() string       { return fmt.Sprintf("http://127.0.0.1:%d", s.TGAdminPort) }
func (s *Stack) BFFURL() string         { return fmt.Sprintf("http://127.0.0.1:%d", s.BFFPort) }
func (s *Stack) ServiceURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/api/whoami", s.ServicePort)
}

// ServiceDownstreamURL is demo-service's endpoint that delegates to payments.
func (s *Stack) ServiceDownstreamURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/api/downstream", s.ServicePort)
}

// PaymentsURL is payments' whoami endpoint.
func (s *Stack) PaymentsURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/api/whoami", s.PaymentsPort)
}

func (s *Stack) downstreamURL() string {
	if s.DownstreamURL != "" {
		return s.DownstreamURL
	}
	return s.PaymentsURL()
}
func (s *Stack) kcRunDir() string { return filepath.Join(s.Work, "keycloak") }

// KeycloakLog is the path of Keycloak's log file.
func (s *Stack) KeycloakLog() string { return filepath.Join(s.kcRunDir(), "keycloak.log") }

func (s *Stack) kcEnv() []string {
	env := append(os.Environ(),
		fmt.Sprintf("KC_PORT=%d", s.KCPort),
		"KC_RUN_DIR="+s.kcRunDir(),
		"TOKENGATE_URL="+s.TokengateURL(),
	)
	if s.KeycloakVersion != "" {
		env = append(env, "KEYCLOAK_VERSION="+s.KeycloakVersion)
	}
	return env
}

// KeycloakScript runs scripts/keycloak.sh sub (fetch, java, version, …) for this stack's
// Keycloak version and returns its trimmed standard output; errors carry its standard error.
func (s *Stack) KeycloakScript(ctx context.Context, sub string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.Root, "scripts", "keycloak.sh"), sub)
	cmd.Env = s.kcEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/keycloak.sh %s: %v: %s", sub, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// StartKeycloak runs scripts/keycloak.sh start (a fresh realm import: new keys, user ids and
// sessions every time) and waits for it.
func (s *Stack) StartKeycloak(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(s.Root, "scripts", "keycloak.sh"), "start")
	cmd.Env = s.kcEnv()
	cmd.Dir = s.Root
	var stderr bytes.Buffer
	cmd.Stderr = io.MultiWriter(&stderr, s.out())
	if err := os.MkdirAll(s.kcRunDir(), 0o755); err != nil {
		return 0, err
	}
	if _, err := cmd.Output(); err != nil {
		return 0, fmt.Errorf("scripts/keycloak.sh start: %v\n%s", err, lastLines(stderr.String(), 30))
	}
	return time.Since(t0), nil
}

// StopKeycloak runs scripts/keycloak.sh stop.
func (s *Stack) StopKeycloak() error {
	cmd := exec.Command(filepath.Join(s.Root, "scripts", "keycloak.sh"), "stop")
	cmd.Env = s.kcEnv()
	cmd.Stderr = s.out()
	return cmd.Run()
}

func (s *Stack) out() io.Writer {
	if s.Out == nil {
		return io.Discard
	}
	return s.Out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TokengateConfig is tokengate's configuration for this stack.
func (s *Stack) TokengateConfig() config.Config {
	hash := func(secret string) string {
		h := sha256.Sum256([]byte(secret))
		return hex.EncodeToString(h[:])
	}
	c := config.Config{
		Listen:      fmt.Sprintf("127.0.0.1:%d", s.TGPort),
		AdminListen: fmt.Sprintf("127.0.0.1:%d", s.TGAdminPort),
		Issuer:      s.TokengateURL(),
		DataDir:     filepath.Join(s.Work, "tokengate-data"),
		LogLevel:    "info",
		Upstream: config.Upstream{
			Issuer: s.KeycloakIssuer(), ClientID: "tokengate", ClientSecret: TokengateKCSecret,
			LogoutAudiences: []string{"bff"}, MaxTokenLifetime: config.Duration(time.Hour),
			Timeout: config.Duration(2 * time.Second), ForwardLogoutTo: []string{s.BFFURL() + "/backchannel-logout"},
		},
		Tokens:  config.Tokens{TTL: config.Duration(s.TTL), RecheckAfter: config.Duration(s.RecheckAfter)},
		Keys:    config.Keys{JWKSMaxAge: config.Duration(time.Minute), RotateEvery: config.Duration(24 * time.Hour)},
		Admin:   config.Admin{Tokens: []config.AdminToken{{Name: "demo", SHA256: hash(AdminToken)}}},
		Clients: s.clients(hash),
		SSF: config.SSF{Receivers: []config.SSFReceiver{{ID: "demo-service", Audience: Audience,
			SecretSHA256: hash(ServiceStreamSecret)},
			{ID: PaymentsAudience, Audience: PaymentsAudience, SecretSHA256: hash(PaymentsStreamSecret)},
			{ID: LedgerAudience, Audience: LedgerAudience, SecretSHA256: hash(LedgerStreamSecret)}}},
	}
	if s.SharedSignals {
		c.Upstream.SharedSignals = config.SharedSignals{Enabled: true, ClientID: SignalsClientID,
			ClientSecret: SignalsClientSecret, PollInterval: config.Duration(SignalsPollInterval),
			Events: s.SignalEvents}
	}
	return c
}

// clients is bff and MoreClients, as configured at tokengate.
func (s *Stack) clients(hash func(string) string) []config.Client {
	out := []config.Client{{ID: "bff", SecretSHA256: hash(BFFTokengateSecret), Audiences: []string{Audience}}}
	for _, c := range s.MoreClients {
		out = append(out, config.Client{ID: c.ID, SecretSHA256: hash(c.Secret), Audiences: []string{Audience},
			UpstreamClients: c.UpstreamClients})
	}
	// The services delegate (docs/delegation.md): demo-service → payments → ledger.
	out = append(out,
		config.Client{ID: Audience, SecretSHA256: hash(ServiceTokengateSecret), DelegateTo: []string{PaymentsAudience}},
		config.Client{ID: PaymentsAudience, SecretSHA256: hash(PaymentsTokengateSecret), DelegateTo: []string{LedgerAudience}})
	return out
}

// StartTokengate starts tokengate (keeping its data dir across restarts) and waits for its
// discovery document.
func (s *Stack) StartTokengate(ctx context.Context) error {
	c := s.TokengateConfig()
	b, err := config.Marshal(&c)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(s.Work, "tokengate.yaml")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return err
	}
	return s.start(ctx, "tokengate", s.TokengateURL()+"/.well-known/openid-configuration",
		s.Bin.Tokengate, "serve", "--config", cfgPath)
}

// StartService starts demo-service; its GET /api/downstream delegates to payments.
func (s *Stack) StartService(ctx context.Context) error {
	return s.startEnv(ctx, "demo-service", fmt.Sprintf("http://127.0.0.1:%d/status", s.ServicePort),
		[]string{"TOKENGATE_STREAM_SECRET=" + ServiceStreamSecret, "TOKENGATE_CLIENT_SECRET=" + ServiceTokengateSecret}, s.Bin.Service,
		"-listen", fmt.Sprintf("127.0.0.1:%d", s.ServicePort), "-issuer", s.TokengateURL(), "-audience", Audience,
		"-client-id", Audience, "-call", s.downstreamURL(), "-call-audience", PaymentsAudience)
}

// StartPayments starts payments: demo-service again, for audience payments, accepting only
// tokens demo-service obtained by delegation, following its own revocation stream.
func (s *Stack) StartPayments(ctx context.Context) error {
	return s.startEnv(ctx, PaymentsAudience, fmt.Sprintf("http://127.0.0.1:%d/status", s.PaymentsPort),
		[]string{"TOKENGATE_STREAM_SECRET=" + PaymentsStreamSecret}, s.Bin.Service,
		"-listen", fmt.Sprintf("127.0.0.1:%d", s.PaymentsPort), "-issuer", s.TokengateURL(), "-audience", PaymentsAudience,
		"-require-actor", Audience)
}

// StartBFF starts demo-bff with its DEMO-ONLY debug endpoints on.
func (s *Stack) StartBFF(ctx context.Context) error {
	return s.start(ctx, "demo-bff", s.BFFURL()+"/healthz", s.Bin.BFF,
		"-listen", fmt.Sprintf("127.0.0.1:%d", s.BFFPort), "-keycloak", s.KeycloakIssuer(),
		"-keycloak-secret", BFFKeycloakSecret, "-tokengate", s.TokengateURL(),
		"-tokengate-secret", BFFTokengateSecret, "-service", s.ServiceURL(), "-audience", Audience, "-debug")
}

func (s *Stack) start(ctx context.Context, name, readyURL, bin string, args ...string) error {
	return s.startEnv(ctx, name, readyURL, nil, bin, args...)
}

// startEnv is start with extra environment variables. The process (proctest.Process) logs to
// Work/name.log and counts as started once readyURL answers 200 (60s at the most).
func (s *Stack) startEnv(ctx context.Context, name, readyURL string, env []string, bin string, args ...string) error {
	s.mu.Lock()
	if p := s.procs[name]; p != nil {
		s.mu.Unlock()
		return fmt.Errorf("%s is already running", name)
	}
	s.mu.Unlock()
	p, err := proctest.StartProcess(ctx, proctest.Spec{Name: name, Argv: append([]string{bin}, args...), Env: env,
		LogPath: filepath.Join(s.Work, name+".log"), ReadyURL: readyURL,
		ReadyTimeout: 60 * time.Second, PollEvery: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	return nil
}

// Stop sends sig to a started process and waits for it to exit (SIGKILL after 15 s).
func (s *Stack) Stop(name string, sig syscall.Signal) error {
	s.mu.Lock()
	p := s.procs[name]
	delete(s.procs, name)
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	if _, err := p.Stop(sig, 15*time.Second); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// StopAll stops the processes this stack started (not Keycloak).
func (s *Stack) StopAll() {
	for _, n := range []string{"demo-bff", "demo-service", PaymentsAudience, "tokengate"} {
		_ = s.Stop(n, syscall.SIGTERM)
	}
}
