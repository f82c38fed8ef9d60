package issuer

import (
	"crypto/sha256"
	"crypto/subtle"
	"slices"
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

// audiences resolves the requested audiences against the client's allowed ones: none requested
// means all of the client's audiences.
func (c Client) audiences(requested []string) ([]string, error) {
	if len(requested) == 0 {
		return slices.Clone(c.Audiences), nil
	}
	for _, a := range requested {
		if !slices.Contains(c.Audiences, a) {
			return nil, oauthErr(CodeInvalidTarget, "audience "+quote(a)+" is not allowed for this client", nil)
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(requested))), nil
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return "\"" + s + "\""
}
