// Package upstream talks to the upstream OpenID provider (Keycloak): discovery, token
// introspection (RFC 7662), and local verification of its access and logout tokens.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tokengate/tokengate/internal/upstream/jwks"
)

// ErrUnavailable wraps failures to reach the provider (network errors, 5xx, bad discovery).
var ErrUnavailable = errors.New("upstream unavailable")

// ErrInvalidToken wraps every reason a token presented to us is not acceptable.
var ErrInvalidToken = errors.New("invalid token")

// asymmetric lists the signature algorithms tokengate accepts from the provider: never none, never HS*.
var asymmetric = map[string]bool{
	oidc.RS256: true, oidc.RS384: true, oidc.RS512: true,
	oidc.ES256: true, oidc.ES384: true, oidc.ES512: true,
	oidc.PS256: true, oidc.PS384: true, oidc.PS512: true,
	oidc.EdDSA: true,
}

// Config locates and authenticates to the provider.
type Config struct {
	// Issuer is the realm URL, e.g. http://127.0.0.1:18080/realms/demo.
	Issuer string
	// ClientID and ClientSecret authenticate tokengate at the introspection endpoint.
	ClientID     string
	ClientSecret string
	// HTTPClient is used for every call; a client with Timeout 5s when nil.
	HTTPClient *http.Client
	// JWKSRefetchInterval is the least time between two fetches of the provider's JWKS for a
	// token whose kid is not in hand (DefaultJWKSRefetchInterval when zero).
	JWKSRefetchInterval time.Duration
	// InsecureHTTP allows plain http to hosts that are not loopback addresses (the issuer and
	// the endpoints its discovery document names); see CheckTransport.
	InsecureHTTP bool
}

// DefaultJWKSRefetchInterval bounds the fetches of the provider's JWKS: a token with a kid
// not in hand fetches it at most once per interval (see package jwks).
const DefaultJWKSRefetchInterval = jwks.DefaultInterval

// Client is a lazily discovered connection to the provider, safe for concurrent use. Discovery
// is retried on the next call after a failure, so tokengate starts while Keycloak is down.
type Client struct {
	cfg Config

	mu   sync.Mutex
	disc *discovered
}

type discovered struct {
	provider      *oidc.Provider
	introspection string
	endSession    string
	algs          []string
	access        *oidc.IDTokenVerifier
	logout        *oidc.IDTokenVerifier
}

// New returns a client; no network call is made until first use.
func New(cfg Config) *Client {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.HTTPClient.CheckRedirect == nil {
		hc := *cfg.HTTPClient // a copy: the caller's client keeps its own redirect policy
		hc.CheckRedirect = noDowngrade(cfg.InsecureHTTP)
		cfg.HTTPClient = &hc
	}
	return &Client{cfg: cfg}
}

// Issuer returns the configured issuer URL.
func (c *Client) Issuer() string { return c.cfg.Issuer }

// discover returns the provider metadata, fetching it on first use.
func (c *Client) discover(ctx context.Context) (*discovered, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.disc != nil {
		return c.disc, nil
	}
	if err := CheckTransport(c.cfg.Issuer, c.cfg.InsecureHTTP); err != nil {
		return nil, fmt.Errorf("%w: issuer: %w", ErrUnavailable, err)
	}
	// The provider keeps this context for later JWKS fetches: it must outlive the request.
	pctx := oidc.ClientContext(context.Background(), c.cfg.HTTPClient)
	p, err := oidc.NewProvider(pctx, c.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: discovery of %s: %v", ErrUnavailable, c.cfg.Issuer, err)
	}
	var meta struct {
		JWKSURI       string   `json:"jwks_uri"`
		Introspection string   `json:"introspection_endpoint"`
		EndSession    string   `json:"end_session_endpoint"`
		Algs          []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, fmt.Errorf("%w: discovery document: %v", ErrUnavailable, err)
	}
	if meta.Introspection == "" || meta.JWKSURI == "" {
		return nil, fmt.Errorf("%w: discovery document lacks introspection_endpoint or jwks_uri", ErrUnavailable)
	}
	// The client secret goes to the introspection endpoint; the keys at jwks_uri decide which
	// tokens are Keycloak's.
	for _, e := range []struct{ name, url string }{{"introspection_endpoint", meta.Introspection}, {"jwks_uri", meta.JWKSURI}} {
		if err := CheckTransport(e.url, c.cfg.InsecureHTTP); err != nil {
			return nil, fmt.Errorf("%w: discovery document's %s: %w", ErrUnavailable, e.name, err)
		}
	}
	var algs []string
	for _, a := range meta.Algs {
		if asymmetric[a] {
			algs = append(algs, a)
		}
	}
	if len(algs) == 0 {
		algs = []string{oidc.RS256}
	}
	d := &discovered{provider: p, introspection: meta.Introspection, endSession: meta.EndSession, algs: algs}
	// One key set for both kinds of token, in place of go-oidc's RemoteKeySet (which fetched
	// the JWKS for every token no key in hand verified): its fetches are bounded.
	keys := jwks.New(meta.JWKSURI, jwks.Options{HTTPClient: c.cfg.HTTPClient, Interval: c.cfg.JWKSRefetchInterval})
	d.access = oidc.NewVerifier(c.cfg.Issuer, recordingKeys{keys}, &oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: algs})
	// exp is optional on logout tokens and aud is checked against a set: both checked by us.
	d.logout = oidc.NewVerifier(c.cfg.Issuer, keys, &oidc.Config{SkipClientIDCheck: true, SkipExpiryCheck: true, SupportedSigningAlgs: algs})
	c.disc = d
	return d, nil
}

// refetchInterval is the least time between two JWKS fetches for unknown kids.
func (c *Client) refetchInterval() time.Duration {
	if c.cfg.JWKSRefetchInterval > 0 {
		return c.cfg.JWKSRefetchInterval
	}
	return DefaultJWKSRefetchInterval
}

// Algorithms returns the pinned signature algorithms, discovering the provider if needed.
func (c *Client) Algorithms(ctx context.Context) ([]string, error) {
	d, err := c.discover(ctx)
	if err != nil {
		return nil, err
	}
	return d.algs, nil
}

// EndSessionEndpoint returns the provider's RP-initiated logout endpoint.
func (c *Client) EndSessionEndpoint(ctx context.Context) (string, error) {
	d, err := c.discover(ctx)
	if err != nil {
		return "", err
	}
	return d.endSession, nil
}
