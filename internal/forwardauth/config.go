package forwardauth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tokengate/tokengate/internal/readlimit"
	"github.com/tokengate/tokengate/verifier"
)

// EnvStreamSecret overrides stream_secret from the file.
const EnvStreamSecret = "TOKENGATE_STREAM_SECRET"

// Modes.
const (
	// ModeAuth answers auth subrequests (nginx auth_request, Traefik ForwardAuth, Envoy HTTP
	// ext_authz) on every path of Listen.
	ModeAuth = "auth"
	// ModeProxy verifies every request on Listen and forwards the accepted ones to Upstream.
	ModeProxy = "proxy"
)

// Config is tokengate-auth's YAML configuration file, in the style of tokengate serve's.
type Config struct {
	// Mode is auth (the default) or proxy.
	Mode string `yaml:"mode"`
	// Listen is the address of auth subrequests (auth) or of the service's clients (proxy).
	Listen string `yaml:"listen"`
	// AdminListen serves /healthz, /readyz and /metrics; never on Listen, where every path is
	// a request to authorize.
	AdminListen string `yaml:"admin_listen"`
	// Upstream is the one service requests are forwarded to (proxy mode only).
	Upstream string `yaml:"upstream"`
	// Issuer is tokengate's issuer URL.
	Issuer string `yaml:"issuer"`
	// Audience is the service's name: accepted tokens carry it in aud.
	Audience string `yaml:"audience"`
	// StreamID names the service's Shared Signals stream; empty when the secret names one.
	StreamID string `yaml:"stream_id"`
	// StreamSecret is the stream's bearer secret (env TOKENGATE_STREAM_SECRET).
	StreamSecret string `yaml:"stream_secret"`
	// OwnStream makes StreamSecret a receiver credential: the process creates its own stream
	// at start and deletes it at exit (one stream per replica).
	OwnStream bool `yaml:"own_stream"`
	// FailClosedAfter is how long the stream may stay unreachable before every token is
	// refused with 503 (default 30s, at least 3s).
	FailClosedAfter Duration `yaml:"fail_closed_after"`
	// MaxTokenLifetime is how long revocations are remembered: tokengate's tokens.ttl plus
	// clock skew (default 6m).
	MaxTokenLifetime Duration `yaml:"max_token_lifetime"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
}

// Duration is a time.Duration written as "30s", "5m" (as in tokengate's own configuration).
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

// Parse reads a configuration (at most MaxFileSize bytes: a longer one is refused), applies
// defaults and the environment override, and validates it.
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
	if s := getenv(EnvStreamSecret); s != "" {
		c.StreamSecret = s
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) setDefaults() {
	if c.Mode == "" {
		c.Mode = ModeAuth
	}
	if c.AdminListen == "" {
		c.AdminListen = "127.0.0.1:9091"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.FailClosedAfter == 0 {
		c.FailClosedAfter = Duration(verifier.DefaultFailClosedAfter)
	}
	if c.MaxTokenLifetime == 0 {
		c.MaxTokenLifetime = Duration(verifier.DefaultMaxTokenLifetime)
	}
}

// Validate reports every problem at once, each naming the field.
func (c *Config) Validate() error {
	var p []string
	bad := func(field, format string, a ...any) { p = append(p, field+": "+fmt.Sprintf(format, a...)) }
	checkAddr := func(field, v string) {
		if v == "" {
			bad(field, "is required (host:port)")
		} else if _, _, err := net.SplitHostPort(v); err != nil {
			bad(field, "%q is not host:port", v)
		}
	}
	checkURL := func(field, v string) {
		u, err := url.Parse(v)
		switch {
		case v == "":
			bad(field, "is required")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad(field, "%q is not an http(s) URL", v)
		}
	}
	switch c.Mode {
	case ModeAuth:
		if c.Upstream != "" {
			bad("upstream", "is only used with mode: proxy")
		}
	case ModeProxy:
		checkURL("upstream", c.Upstream)
	default:
		bad("mode", "%q is neither auth nor proxy", c.Mode)
	}
	checkAddr("listen", c.Listen)
	checkAddr("admin_listen", c.AdminListen)
	if c.Listen != "" && c.Listen == c.AdminListen {
		bad("admin_listen", "must differ from listen (every path of listen is authorized)")
	}
	checkURL("issuer", c.Issuer)
	if c.Audience == "" {
		bad("audience", "is required (the service's name in the tokens' aud)")
	}
	if c.StreamSecret == "" {
		bad("stream_secret", "is required (or set %s)", EnvStreamSecret)
	}
	if c.OwnStream && c.StreamID != "" {
		bad("stream_id", "must be empty with own_stream (the process creates its stream)")
	}
	if d := c.FailClosedAfter.D(); d < verifier.MinFailClosedAfter || d > 10*time.Minute {
		bad("fail_closed_after", "%s is outside [%s, 10m]", d, verifier.MinFailClosedAfter)
	}
	if d := c.MaxTokenLifetime.D(); d < 5*time.Second || d > 24*time.Hour {
		bad("max_token_lifetime", "%s is outside [5s, 24h]", d)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	if len(p) > 0 {
		return errors.New("config: " + strings.Join(p, "; "))
	}
	return nil
}

// VerifierConfig is the verifier.Config this configuration describes.
func (c *Config) VerifierConfig() verifier.Config {
	return verifier.Config{Issuer: c.Issuer, Audience: c.Audience, StreamID: c.StreamID,
		StreamSecret: c.StreamSecret, OwnStream: c.OwnStream, FailClosedAfter: c.FailClosedAfter.D(),
		MaxTokenLifetime: c.MaxTokenLifetime.D()}
}
