package issuer

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/url"
	"slices"
	"strings"
)

// Client is a BFF allowed to call the token endpoint.
type Client struct {
	ID string
	// SecretSHA256 is the SHA-256 of the client secret; the secret itself is never stored.
	SecretSHA256 [32]byte
	// Audiences are the services this client may ask tokens for.
	Audiences []string
	// UpstreamClients are the provider (Keycloak) client ids whose access tokens this client
	// may exchange: the token's azp, the introspection answer's client_id. Empty: ID alone.
	UpstreamClients []string
	// Delegation is what the client, a service, may do with the internal tokens it receives.
	Delegation Delegation
}

// MinSecretLength is the shortest client secret accepted: secrets are high-entropy, not passwords.
const MinSecretLength = 32

// dummyHash keeps the work equal for unknown client ids.
var dummyHash = sha256.Sum256([]byte("tokengate: no such client"))

// Authenticate checks a client's credentials in constant time.
func (i *Issuer) Authenticate(id, secret string) (Client, error) {
	c, ok := i.clients[id]
	want := dummyHash
	if ok {
		want = c.SecretSHA256
	}
	got := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !ok || len(secret) < MinSecretLength {
		return Client{}, oauthErr(CodeInvalidClient, "client authentication failed", nil)
	}
	return c, nil
}

// audiences resolves a request's targets against the client's allowed audiences: the RFC 8693
// audience values (logical names) and the RFC 8707 resource values (absolute URIs without a
// fragment), each of which must be one of the client's audiences. Without either, a client
// allowed one audience gets it; a client allowed several must name the one it calls, so that
// no token is accepted by every service the client may reach (one service could replay it at
// another).
func (c Client) audiences(audience, resource []string) ([]string, error) {
	for _, r := range resource {
		u, err := url.Parse(r)
		if err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(r, "#") {
			return nil, oauthErr(CodeInvalidTarget, "resource "+quote(r)+" must be an absolute URI without a fragment (RFC 8707)", nil)
		}
		if !slices.Contains(c.Audiences, r) {
			return nil, oauthErr(CodeInvalidTarget, "resource "+quote(r)+" is not allowed for this client", nil)
		}
	}
	for _, a := range audience {
		if !slices.Contains(c.Audiences, a) {
			return nil, oauthErr(CodeInvalidTarget, "audience "+quote(a)+" is not allowed for this client", nil)
		}
	}
	requested := append(slices.Clone(audience), resource...)
	switch {
	case len(requested) > 0:
		return slices.Compact(slices.Sorted(slices.Values(requested))), nil
	case len(c.Audiences) == 1:
		return slices.Clone(c.Audiences), nil
	default:
		return nil, oauthErr(CodeInvalidTarget, "this client may call several services: name one with audience or resource", nil)
	}
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return "\"" + s + "\""
}
