// Package config loads and validates tokengate's YAML configuration file.
package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tokengate/tokengate/internal/readlimit"
)

// Environment variables that override secrets in the file.
const (
	EnvUpstreamClientSecret = "TOKENGATE_UPSTREAM_CLIENT_SECRET"
	EnvKEK                  = "TOKENGATE_KEK"
	EnvEtcdPassword         = "TOKENGATE_ETCD_PASSWORD"
)

// Config is the whole configuration file.
type Config struct {
	// Listen is the public listener address (token, logout, discovery, JWKS).
	Listen string `yaml:"listen,omitempty"`
	// AdminListen is the admin listener address (health; admin API and metrics later).
	AdminListen string `yaml:"admin_listen,omitempty"`
	// ShutdownGrace is how long, after SIGTERM, /readyz answers 503 while requests are still
	// served (each answer with Connection: close) before the listeners close: long enough for
	// a load balancer's health checks to take the process out of rotation (e.g. haproxy's
	// inter × fall). Default 0: close at once. At most 5m.
	ShutdownGrace Duration `yaml:"shutdown_grace,omitempty"`
	// Issuer is tokengate's own issuer URL, as services see it.
	Issuer string `yaml:"issuer,omitempty"`
	// DataDir holds the embedded database.
	DataDir string `yaml:"data_dir,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string   `yaml:"log_level,omitempty"`
	Upstream Upstream `yaml:"upstream,omitempty"`
	Tokens   Tokens   `yaml:"tokens,omitempty"`
	Keys     Keys     `yaml:"keys,omitempty"`
	Admin    Admin    `yaml:"admin,omitempty"`
	// TLS, when set, serves the public listener over TLS; the files are reloaded when they
	// change or on SIGHUP, without dropping connections.
	TLS *TLS `yaml:"tls,omitempty"`
	// Limits are the rate limits of the public endpoints.
	Limits Limits `yaml:"limits,omitempty"`
	// TrustedProxies are addresses or CIDRs whose X-Forwarded-For is believed for the source
	// address (rate limits, logs). Empty: the connection's address is used.
	TrustedProxies []string `yaml:"trusted_proxies,omitempty"`
	Clients        []Client `yaml:"clients,omitempty"`
	// Store chooses where revocations, replay state and keys live.
	Store Store `yaml:"store,omitempty"`
	// SSF configures the Shared Signals transmitter (logout events for services); see ssf.go.
	SSF SSF `yaml:"ssf,omitempty"`
	// Tracing configures OpenTelemetry traces (off by default); see tracing.go.
	Tracing Tracing `yaml:"tracing,omitempty"`
}

// Store backends.
const (
	BackendBolt = "bolt"
	BackendEtcd = "etcd"
)

// Store configures the storage backend.
type Store struct {
	// Backend is bolt (one embedded file under data_dir, one process; the default) or etcd
	// (several replicas sharing one etcd cluster).
	Backend string `yaml:"backend,omitempty"`
	// MaxStaleness (etcd) is how long a replica may go without proof that its local revocation
	// index follows etcd; past it renewals fail with temporarily_unavailable and logouts are
	// refused. Default 5s.
	MaxStaleness Duration `yaml:"max_staleness,omitempty"`
	// WriteTimeout bounds the store writes of one logout (back-channel, revoke, admin, recheck):
	// one the store has not committed by then (disk full, etcd without quorum) is answered 503
	// and held in memory, refused by this process, until the store takes it. Default 1s.
	WriteTimeout Duration `yaml:"write_timeout,omitempty"`
	Etcd         Etcd     `yaml:"etcd,omitempty"`
}

// Etcd configures the etcd backend.
type Etcd struct {
	// Endpoints are the etcd client URLs, e.g. https://10.0.0.1:2379.
	Endpoints []string `yaml:"endpoints,omitempty"`
	// Prefix namespaces tokengate's keys; it starts and ends with /. Default /tokengate/.
	Prefix string `yaml:"prefix,omitempty"`
	// DialTimeout bounds connecting at start. Default 5s.
	DialTimeout Duration `yaml:"dial_timeout,omitempty"`
	// ElectionTTL is how long a crashed leader keeps the scheduled key rotation. Default 10s.
	ElectionTTL Duration `yaml:"election_ttl,omitempty"`
	// CertFile and KeyFile are a client certificate for etcd's TLS client authentication;
	// CAFile verifies the etcd servers (system roots when empty).
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
	CAFile   string `yaml:"ca_file,omitempty"`
	// Username and Password authenticate with etcd's auth (env TOKENGATE_ETCD_PASSWORD).
	Username string `yaml:"username,omitempty"`
	Password string `yaml:"password,omitempty"`
}

// Upstream configures the Keycloak realm.
type Upstream struct {
	// Issuer is the realm URL.
	Issuer string `yaml:"issuer,omitempty"`
	// ClientID and ClientSecret authenticate tokengate at the introspection endpoint.
	ClientID     string `yaml:"client_id,omitempty"`
	ClientSecret string `yaml:"client_secret,omitempty"`
	// LogoutAudiences are the aud values accepted on logout tokens.
	LogoutAudiences []string `yaml:"logout_audiences,omitempty"`
	// RequireAudience (default true) refuses a subject token whose aud does not contain
	// client_id: Keycloak 26.6 and later introspect only such tokens (an audience mapper on
	// every client whose tokens are exchanged puts it there). false is only for realms
	// without the mapper on older Keycloak; start-up warns about it.
	RequireAudience *bool `yaml:"require_audience,omitempty"`
	// MaxTokenLifetime bounds the realm's access token lifespan; records of logouts Keycloak
	// knows of (back-channel, recheck) are kept that long.
	MaxTokenLifetime Duration `yaml:"max_token_lifetime,omitempty"`
	// MaxSessionLifetime bounds how long a Keycloak SSO session can live (the realm's SSO
	// Session Max, 10h by default); revocations tokengate makes itself (admin, RFC 7009), after
	// which Keycloak's session lives on, are kept that long.
	MaxSessionLifetime Duration `yaml:"max_session_lifetime,omitempty"`
	// Timeout bounds each call to Keycloak.
	Timeout Duration `yaml:"timeout,omitempty"`
	// ForwardLogoutTo are URLs each verified and recorded logout token is relayed to (form POST
	// logout_token=…, retried with backoff, bounded queue): a Keycloak client has one back-channel
	// logout URL, so the BFF's own endpoint can be listed here.
	ForwardLogoutTo []string `yaml:"forward_logout_to,omitempty"`
	// InsecureHTTP allows plain http to Keycloak on a host that is not a loopback address (the
	// issuer, the endpoints its metadata names, shared_signals.allowed_origins). Off by
	// default: client secrets, the tokens introspected and the keys that decide which tokens
	// are Keycloak's would cross the network in the clear. Start-up and check-config warn.
	InsecureHTTP bool `yaml:"insecure_http,omitempty"`
	// SharedSignals makes tokengate a receiver of Keycloak's Shared Signals stream, a second,
	// durable channel for logouts beside back-channel logout; see signals.go.
	SharedSignals SharedSignals `yaml:"shared_signals,omitempty"`
}

// Tokens configures internal tokens.
type Tokens struct {
	// TTL is an internal token's lifetime.
	TTL Duration `yaml:"ttl,omitempty"`
	// RecheckAfter is how often a renewing session is re-introspected at Keycloak.
	RecheckAfter Duration `yaml:"recheck_after,omitempty"`
}

// Keys configures signing keys.
type Keys struct {
	// Algorithm is ES256, EdDSA or RS256.
	Algorithm string `yaml:"algorithm,omitempty"`
	// JWKSMaxAge is the JWKS Cache-Control max-age; a new key is published at least this long
	// before it signs.
	JWKSMaxAge Duration `yaml:"jwks_max_age,omitempty"`
	// RotateEvery is how long a signing key signs before the next one takes over.
	RotateEvery Duration `yaml:"rotate_every,omitempty"`
	// KEKFile names a file holding the 32-byte key-encryption key (base64 or hex) that encrypts
	// private keys at rest. Env TOKENGATE_KEK (base64) may carry it instead.
	KEKFile string `yaml:"kek_file,omitempty"`
}

// Admin configures the admin API.
type Admin struct {
	// Tokens are the bearer tokens allowed to call the admin API, stored as SHA-256.
	Tokens []AdminToken `yaml:"tokens,omitempty"`
	// TLS, when set, serves the admin listener over TLS; with ClientCAFile it requires client
	// certificates (mTLS).
	TLS *TLS `yaml:"tls,omitempty"`
}

// AdminToken is one operator credential; Name appears in the audit log.
type AdminToken struct {
	Name   string `yaml:"name,omitempty"`
	SHA256 string `yaml:"sha256,omitempty"`
}

// Limits configures rate limits: rate is events per second, burst the bucket size. A rate of
// 0 disables a limit. Each limit left out keeps its default (DefaultLimits), whatever the
// others say.
type Limits struct {
	// Token limits /token and /revoke per client.
	Token *Limit `yaml:"token,omitempty"`
	// Logout limits refused back-channel logouts per source address.
	Logout *Limit `yaml:"logout,omitempty"`
	// AuthFailures limits failed client authentications per source address.
	AuthFailures *Limit `yaml:"auth_failures,omitempty"`
	// Caches bounds the in-memory per-session caches (entries); see DefaultCaches.
	Caches Caches `yaml:"caches,omitempty"`
}

// Caches bounds, in entries, the issuer's in-memory per-session caches. An eviction costs work
// (an introspection at Keycloak, an unsealing), never a refusal turned into an acceptance. A
// bound left out (or 0) keeps its default.
type Caches struct {
	// RecheckSchedule: when each live session is next introspected (about 100 bytes each). A
	// session evicted is introspected at its next renewal.
	RecheckSchedule int `yaml:"recheck_schedule,omitempty"`
	// Introspection: introspection answers per upstream token, until its exp. An evicted
	// token is verified and introspected again at its next exchange.
	Introspection int `yaml:"introspection,omitempty"`
	// RefreshTokens: unsealed refresh tokens (about 2 KiB each); an evicted one is unsealed again.
	RefreshTokens int `yaml:"refresh_tokens,omitempty"`
}

// MaxCacheEntries is the largest bound a cache accepts.
const MaxCacheEntries = 100_000_000

// DefaultCaches are the cache bounds a configuration leaves out (issuer.DefaultCaches): a
// million live sessions, a million upstream tokens within their lifetime, 16,384 unsealed
// refresh tokens.
func DefaultCaches() Caches {
	return Caches{RecheckSchedule: 1_000_000, Introspection: 1_000_000, RefreshTokens: 16_384}
}

// DefaultLimits are the limits a configuration leaves out. None may refuse load one tokengate
// can serve: the per-client token limit is off (one core renews about 7,500/s; clients are
// authenticated and configured, so the limit is a fairness tool between several BFFs, set by the
// operator from measured capacity); the other two count refusals only (invalid logout tokens,
// failed client authentications), which no legitimate caller produces at that rate.
func DefaultLimits() Limits {
	return Limits{
		Token:        &Limit{},
		Logout:       &Limit{Rate: 50, Burst: 200},
		AuthFailures: &Limit{Rate: 0.2, Burst: 20},
	}
}

// Limit is one token bucket.
type Limit struct {
	Rate  float64 `yaml:"rate,omitempty"`
	Burst int     `yaml:"burst,omitempty"`
}

// Get returns the limit, or no limit (rate 0) for nil.
func (l *Limit) Get() Limit {
	if l == nil {
		return Limit{}
	}
	return *l
}

// TLS names certificate files.
type TLS struct {
	CertFile     string `yaml:"cert_file,omitempty"`
	KeyFile      string `yaml:"key_file,omitempty"`
	ClientCAFile string `yaml:"client_ca_file,omitempty"`
}

// Client is a BFF allowed to call the token endpoint.
type Client struct {
	ID string `yaml:"id,omitempty"`
	// SecretSHA256 is the hex SHA-256 of the client secret (tokengate hash-secret).
	SecretSHA256 string `yaml:"secret_sha256,omitempty"`
	// Audiences are the services this client may get tokens for.
	Audiences []string `yaml:"audiences,omitempty"`
	// UpstreamClients are the Keycloak client ids (the token's azp, introspection's client_id)
	// whose access tokens this client may exchange. Absent: just id.
	UpstreamClients []string `yaml:"upstream_clients,omitempty"`
	// DelegateTo are the services this client (a service itself) may call on the user's behalf
	// with a delegated token (RFC 8693 delegation, docs/delegation.md). Absent: it does not
	// delegate.
	DelegateTo []string `yaml:"delegate_to,omitempty"`
	// MaxDelegationDepth is the longest actor chain a token this client obtains by delegation
	// may carry (1–10; DefaultMaxDelegationDepth when left out). Only with DelegateTo.
	MaxDelegationDepth int `yaml:"max_delegation_depth,omitempty"`
	// ServiceAudience is the aud that names this client as a service: a subject token it
	// delegates must carry it. Absent: the client id. Only with DelegateTo.
	ServiceAudience string `yaml:"service_audience,omitempty"`
}

// SecretHash returns the decoded secret hash (valid after Validate).
func (c Client) SecretHash() [32]byte { return sha256Of(c.SecretSHA256) }

// hashHint is what a bad SHA-256 field is told.
const hashHint = "must be 64 hex characters (make one with: tokengate hash-secret)"

// validSHA256 reports whether s is a hex SHA-256 (64 hex characters).
func validSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

// sha256Of decodes a hex SHA-256 checked by validSHA256 (zero otherwise).
func sha256Of(s string) [32]byte {
	var out [32]byte
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		copy(out[:], b)
	}
	return out
}

// Duration is a time.Duration written as "30s", "5m".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration like 30s", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 30s, 5m)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as Go writes it ("30s", "1m30s").
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MaxFileSize is the largest configuration file read, in bytes (1 MiB); a larger one is
// refused, never read in part.
const MaxFileSize = 1 << 20

// Load reads, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	f, err := readlimit.Open(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	return Parse(f, os.Getenv)
}

// Marshal writes c as a configuration file that Parse reads back into the same Config; unset
// fields are left out (Parse gives them their defaults). Tests and tools write the files they
// start tokengate with through it.
func Marshal(c *Config) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	return b.Bytes(), nil
}

// Parse reads a configuration (at most MaxFileSize bytes: a longer one is refused), applies
// defaults and environment overrides, and validates it.
func Parse(r io.Reader, getenv func(string) string) (*Config, error) {
	raw, err := readlimit.ReadAll(r, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config: the file is empty")
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	if s := getenv(EnvUpstreamClientSecret); s != "" {
		c.Upstream.ClientSecret = s
	}
	if s := getenv(EnvEtcdPassword); s != "" && c.Store.Etcd.Username != "" {
		c.Store.Etcd.Password = s // without a username there is no etcd auth: ignored
	}
	c.SetDefaults()
	if err := c.Upstream.SharedSignals.loadSecret(getenv); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// SetDefaults fills every unset field with its default, as Parse does before Validate: for a
// Config built in Go (tests, tools) rather than read from a file.
func (c *Config) SetDefaults() {
	if c.AdminListen == "" {
		c.AdminListen = "127.0.0.1:9090"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Tokens.TTL == 0 {
		c.Tokens.TTL = Duration(30 * time.Second)
	}
	if c.Tokens.RecheckAfter == 0 {
		c.Tokens.RecheckAfter = Duration(60 * time.Second)
	}
	if c.Upstream.MaxTokenLifetime == 0 {
		c.Upstream.MaxTokenLifetime = Duration(time.Hour)
	}
	if c.Upstream.MaxSessionLifetime == 0 {
		c.Upstream.MaxSessionLifetime = Duration(10 * time.Hour)
	}
	if c.Upstream.RequireAudience == nil {
		on := true
		c.Upstream.RequireAudience = &on
	}
	if c.Upstream.Timeout == 0 {
		c.Upstream.Timeout = Duration(5 * time.Second)
	}
	if c.Keys.Algorithm == "" {
		c.Keys.Algorithm = "ES256"
	}
	if c.Keys.JWKSMaxAge == 0 {
		c.Keys.JWKSMaxAge = Duration(5 * time.Minute)
	}
	if c.Keys.RotateEvery == 0 {
		c.Keys.RotateEvery = Duration(24 * time.Hour)
	}
	if c.Store.Backend == "" {
		c.Store.Backend = BackendBolt
	}
	if c.Store.MaxStaleness == 0 {
		c.Store.MaxStaleness = Duration(5 * time.Second)
	}
	if c.Store.WriteTimeout == 0 {
		c.Store.WriteTimeout = Duration(time.Second)
	}
	if c.Store.Etcd.Prefix == "" {
		c.Store.Etcd.Prefix = "/tokengate/"
	}
	if c.Store.Etcd.DialTimeout == 0 {
		c.Store.Etcd.DialTimeout = Duration(5 * time.Second)
	}
	if c.Store.Etcd.ElectionTTL == 0 {
		c.Store.Etcd.ElectionTTL = Duration(10 * time.Second)
	}
	def := DefaultLimits()
	for _, l := range []struct{ set, def **Limit }{
		{&c.Limits.Token, &def.Token}, {&c.Limits.Logout, &def.Logout}, {&c.Limits.AuthFailures, &def.AuthFailures},
	} {
		if *l.set == nil {
			*l.set = *l.def
		}
	}
	defCaches := DefaultCaches()
	for _, n := range []struct{ set, def *int }{{&c.Limits.Caches.RecheckSchedule, &defCaches.RecheckSchedule},
		{&c.Limits.Caches.Introspection, &defCaches.Introspection}, {&c.Limits.Caches.RefreshTokens, &defCaches.RefreshTokens}} {
		if *n.set == 0 {
			*n.set = *n.def
		}
	}
	for n := range c.Clients {
		c.Clients[n].setDelegationDefaults()
	}
	c.SSF.setDefaults(c.Tokens.TTL)
	c.Upstream.SharedSignals.setDefaults()
	c.Tracing.setDefaults()
}

// Validate reports every problem at once, each naming the field.
func (c *Config) Validate() error {
	var p problems
	c.validateServing(&p)
	c.Upstream.validate(&p)
	c.validateTokensAndKeys(&p)
	c.Admin.validate(&p)
	c.validateLimits(&p)
	c.validateStore(&p)
	c.validateClients(&p)
	c.SSF.validate(p.bad, c.Tokens.TTL.D())
	c.Upstream.SharedSignals.validate(p.bad, c.Upstream.ClientID, c.Upstream.InsecureHTTP)
	c.Tracing.validate(p.bad)
	if len(p) > 0 {
		return fmt.Errorf("config: %d problem(s):\n  - %s", len(p), strings.Join(p, "\n  - "))
	}
	return nil
}

// problems collects what Validate finds, one line per problem, each naming its field.
type problems []string

// bad records that field is wrong: format says how.
func (p *problems) bad(field, format string, a ...any) {
	*p = append(*p, field+": "+fmt.Sprintf(format, a...))
}

// addr checks a required host:port.
func (p *problems) addr(field, v string) {
	if v == "" {
		p.bad(field, "is required (host:port)")
	} else if _, _, err := net.SplitHostPort(v); err != nil {
		p.bad(field, "%q is not host:port", v)
	}
}

// url checks a required absolute http(s) URL without query, fragment or trailing slash.
func (p *problems) url(field, v string) {
	if v == "" {
		p.bad(field, "is required")
		return
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		p.bad(field, "%q must be an absolute http(s) URL without query or fragment", v)
	} else if strings.HasSuffix(v, "/") {
		p.bad(field, "%q must not end with /", v)
	}
}

// inRange checks that d lies within lo–hi.
func (p *problems) inRange(field string, d Duration, lo, hi time.Duration) {
	if d.D() < lo || d.D() > hi {
		p.bad(field, "%s is outside the allowed range %s–%s", d.D(), lo, hi)
	}
}

// validateServing checks the process's own settings: listeners, TLS, shutdown, issuer URL,
// data directory, log level, trusted proxies.
func (c *Config) validateServing(p *problems) {
	p.addr("listen", c.Listen)
	p.addr("admin_listen", c.AdminListen)
	p.inRange("shutdown_grace", c.ShutdownGrace, 0, 5*time.Minute)
	p.url("issuer", c.Issuer)
	if c.DataDir == "" {
		p.bad("data_dir", "is required")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		p.bad("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	if t := c.TLS; t != nil && (t.CertFile == "" || t.KeyFile == "" || t.ClientCAFile != "") {
		p.bad("tls", "needs cert_file and key_file (client certificates are for admin.tls only)")
	}
	for _, tp := range c.TrustedProxies {
		if net.ParseIP(tp) == nil {
			if _, _, err := net.ParseCIDR(tp); err != nil {
				p.bad("trusted_proxies", "%q is neither an IP address nor a CIDR", tp)
			}
		}
	}
}

// validate checks the upstream section but for shared_signals (SharedSignals.validate).
func (u *Upstream) validate(p *problems) {
	p.url("upstream.issuer", u.Issuer)
	if iu, err := url.Parse(u.Issuer); err == nil && iu.Scheme == "http" && !u.InsecureHTTP && !isLoopback(iu.Hostname()) {
		p.bad("upstream.issuer", "%q is plain http to a host that is not a loopback address: use https, or set upstream.insecure_http: true "+
			"(client secrets, the tokens introspected and Keycloak's keys would cross the network in the clear)", u.Issuer)
	}
	if u.ClientID == "" {
		p.bad("upstream.client_id", "is required")
	}
	if u.ClientSecret == "" {
		p.bad("upstream.client_secret", "is required (or set %s)", EnvUpstreamClientSecret)
	}
	if len(u.LogoutAudiences) == 0 {
		p.bad("upstream.logout_audiences", "needs at least one Keycloak client id whose back-channel logout URL points here")
	}
	for n, to := range u.ForwardLogoutTo {
		p.url(fmt.Sprintf("upstream.forward_logout_to[%d]", n), to)
	}
	p.inRange("upstream.max_token_lifetime", u.MaxTokenLifetime, time.Minute, 24*time.Hour)
	p.inRange("upstream.max_session_lifetime", u.MaxSessionLifetime, time.Minute, 90*24*time.Hour)
	if u.MaxSessionLifetime < u.MaxTokenLifetime {
		p.bad("upstream.max_session_lifetime", "%s must be at least upstream.max_token_lifetime (%s): a session outlives its access tokens",
			u.MaxSessionLifetime.D(), u.MaxTokenLifetime.D())
	}
	p.inRange("upstream.timeout", u.Timeout, 100*time.Millisecond, time.Minute)
}

// validateTokensAndKeys checks the tokens and keys sections, which bound each other.
func (c *Config) validateTokensAndKeys(p *problems) {
	p.inRange("tokens.ttl", c.Tokens.TTL, 5*time.Second, 5*time.Minute)
	p.inRange("tokens.recheck_after", c.Tokens.RecheckAfter, time.Second, time.Hour)
	p.inRange("keys.jwks_max_age", c.Keys.JWKSMaxAge, 0, 24*time.Hour)
	p.inRange("keys.rotate_every", c.Keys.RotateEvery, time.Minute, 90*24*time.Hour)
	if c.Keys.RotateEvery.D() < 2*c.Keys.JWKSMaxAge.D() {
		p.bad("keys.rotate_every", "%s must be at least twice keys.jwks_max_age (%s) so every key is published before it signs",
			c.Keys.RotateEvery.D(), c.Keys.JWKSMaxAge.D())
	}
	switch c.Keys.Algorithm {
	case "ES256", "EdDSA", "RS256":
	default:
		p.bad("keys.algorithm", "%q is not one of ES256, EdDSA, RS256", c.Keys.Algorithm)
	}
}

// validate checks the admin section.
func (a *Admin) validate(p *problems) {
	names := map[string]bool{}
	for n, tk := range a.Tokens {
		f := fmt.Sprintf("admin.tokens[%d]", n)
		if tk.Name == "" || names[tk.Name] {
			p.bad(f+".name", "is required and must be unique")
		}
		names[tk.Name] = true
		if !validSHA256(tk.SHA256) {
			p.bad(f+".sha256", hashHint)
		}
	}
	if t := a.TLS; t != nil && (t.CertFile == "" || t.KeyFile == "") {
		p.bad("admin.tls", "needs cert_file and key_file")
	}
}

// validateLimits checks the rate limits and cache bounds.
func (c *Config) validateLimits(p *problems) {
	for name, l := range map[string]*Limit{"limits.token": c.Limits.Token, "limits.logout": c.Limits.Logout, "limits.auth_failures": c.Limits.AuthFailures} {
		if l == nil {
			continue // only before setDefaults
		}
		if l.Rate < 0 || l.Burst < 0 || (l.Rate > 0 && l.Burst == 0) {
			p.bad(name, "rate and burst must be ≥ 0, and burst ≥ 1 when rate is set")
		}
	}
	for name, n := range map[string]int{"limits.caches.recheck_schedule": c.Limits.Caches.RecheckSchedule,
		"limits.caches.introspection": c.Limits.Caches.Introspection, "limits.caches.refresh_tokens": c.Limits.Caches.RefreshTokens} {
		if n < 0 || n > MaxCacheEntries {
			p.bad(name, "must be between 1 and %d entries (0 or left out: the default), got %d", MaxCacheEntries, n)
		}
	}
}

// validateClients checks the clients list: unique ids, secret hashes, audiences, delegation.
func (c *Config) validateClients(p *problems) {
	if len(c.Clients) == 0 {
		p.bad("clients", "needs at least one client")
	}
	seen := map[string]bool{}
	for n, cl := range c.Clients {
		f := fmt.Sprintf("clients[%d]", n)
		if cl.ID == "" {
			p.bad(f+".id", "is required")
		} else if seen[cl.ID] {
			p.bad(f+".id", "%q is listed twice", cl.ID)
		}
		seen[cl.ID] = true
		if !validSHA256(cl.SecretSHA256) {
			p.bad(f+".secret_sha256", hashHint)
		}
		cl.checkAudiences(f, p.bad)
		cl.validateDelegation(f, p.bad)
		for _, a := range cl.Audiences {
			if strings.TrimSpace(a) == "" {
				p.bad(f+".audiences", "has an empty audience")
			}
		}
		if cl.UpstreamClients != nil && len(cl.UpstreamClients) == 0 {
			p.bad(f+".upstream_clients", "is empty: leave it out to mean just %q", cl.ID)
		}
		for _, u := range cl.UpstreamClients {
			if strings.TrimSpace(u) == "" || u != strings.TrimSpace(u) {
				p.bad(f+".upstream_clients", "has an empty or blank-padded Keycloak client id %q", u)
			}
		}
	}
}

// AudienceRequired reports upstream.require_audience (true unless set to false).
func (u Upstream) AudienceRequired() bool { return u.RequireAudience == nil || *u.RequireAudience }

// Warnings lists settings that are valid but weaken a default; serve logs each at start-up
// and check-config prints them.
func (c *Config) Warnings() []string {
	var w []string
	if !c.Upstream.AudienceRequired() {
		w = append(w, fmt.Sprintf("upstream.require_audience is false: any access token of the realm whose azp "+
			"a client may exchange is accepted, meant for %q or not; Keycloak 26.6 and later will not introspect "+
			"such tokens anyway. Add an audience mapper for %q to the exchanged clients (docs/keycloak.md) and "+
			"remove the setting", c.Upstream.ClientID, c.Upstream.ClientID))
	}
	if c.Upstream.InsecureHTTP {
		w = append(w, "upstream.insecure_http is true: tokengate may talk to Keycloak over plain http on any host, "+
			"sending client secrets and the tokens it introspects in the clear and trusting keys anyone on the path can replace; "+
			"use https and remove the setting")
	} else if u, err := url.Parse(c.Upstream.Issuer); err == nil && u.Scheme == "http" {
		w = append(w, fmt.Sprintf("upstream.issuer %s is plain http on a loopback address: accepted because the traffic "+
			"stays on this machine; use https for a Keycloak on any other host", c.Upstream.Issuer))
	}
	return w
}

// isLoopback reports whether host (a URL's Hostname) is a loopback IP address; names, even
// localhost, are not (upstream.CheckTransport applies the same rule at run time).
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// KEK returns the key-encryption key from keys.kek_file or TOKENGATE_KEK, or nil when neither is
// set. The value is 32 bytes, written as base64 (standard or URL) or 64 hex characters.
func (c *Config) KEK(getenv func(string) string) ([]byte, error) {
	var text, from string
	switch {
	case c.Keys.KEKFile != "":
		b, err := readKEKFile(c.Keys.KEKFile)
		if err != nil {
			return nil, fmt.Errorf("keys.kek_file: %w", err)
		}
		text, from = strings.TrimSpace(string(b)), "keys.kek_file"
		if text == "" {
			return nil, fmt.Errorf("keys.kek_file: %s is empty (make one with: tokengate gen-kek > FILE)", c.Keys.KEKFile)
		}
	case getenv(EnvKEK) != "":
		text, from = strings.TrimSpace(getenv(EnvKEK)), EnvKEK
	default:
		return nil, nil
	}
	for _, dec := range []func(string) ([]byte, error){
		hex.DecodeString, base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString,
	} {
		if b, err := dec(text); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%s: want 32 bytes as base64 or 64 hex characters (make one with: tokengate gen-kek)", from)
}

// readKEKFile reads a key-encryption key file, refusing one that users other than its owner
// and group may read or write: with it anyone on the host opens the private keys at rest.
func readKEKFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w (make one with: tokengate gen-kek > FILE; chmod 600 FILE)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o007 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%s has mode %04o: other users may read or write it; run chmod 600 %s "+
			"(or 640 for a service group)", path, perm, path)
	}
	return io.ReadAll(io.LimitReader(f, 4096))
}

// AdminTokenHashes returns the decoded admin token hashes by name (valid after Validate).
func (c *Config) AdminTokenHashes() map[string][32]byte {
	out := make(map[string][32]byte, len(c.Admin.Tokens))
	for _, t := range c.Admin.Tokens {
		out[t.Name] = sha256Of(t.SHA256)
	}
	return out
}

// validateStore checks the store section.
func (c *Config) validateStore(p *problems) {
	p.inRange("store.write_timeout", c.Store.WriteTimeout, 50*time.Millisecond, 30*time.Second)
	switch c.Store.Backend {
	case BackendBolt:
		return
	case BackendEtcd:
	default:
		p.bad("store.backend", "%q is not one of bolt, etcd", c.Store.Backend)
		return
	}
	e := c.Store.Etcd
	p.inRange("store.max_staleness", c.Store.MaxStaleness, 500*time.Millisecond, 5*time.Minute)
	p.inRange("store.etcd.dial_timeout", e.DialTimeout, 100*time.Millisecond, time.Minute)
	p.inRange("store.etcd.election_ttl", e.ElectionTTL, time.Second, 10*time.Minute)
	if e.ElectionTTL.D()%time.Second != 0 {
		p.bad("store.etcd.election_ttl", "%s must be whole seconds", e.ElectionTTL.D())
	}
	if len(e.Endpoints) == 0 {
		p.bad("store.etcd.endpoints", "needs at least one etcd client URL when store.backend is etcd")
	}
	for i, ep := range e.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			p.bad(fmt.Sprintf("store.etcd.endpoints[%d]", i), "%q must be http(s)://host:port", ep)
		}
	}
	if !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/") {
		p.bad("store.etcd.prefix", "%q must start and end with /", e.Prefix)
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		p.bad("store.etcd.cert_file", "cert_file and key_file go together")
	}
	if e.Username != "" && e.Password == "" {
		p.bad("store.etcd.password", "is required with username (or set %s)", EnvEtcdPassword)
	}
	if e.Username == "" && e.Password != "" {
		p.bad("store.etcd.username", "is required with password")
	}
}
