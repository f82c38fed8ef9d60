package server

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/tokengate/tokengate/issuer"
)

// Metadata is the discovery document (OpenID Connect Discovery 1.0 and RFC 8414).
type Metadata struct {
	Issuer                            string   `json:"issuer"`
	JWKSURI                           string   `json:"jwks_uri"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	RevocationAuthMethodsSupported    []string `json:"revocation_endpoint_auth_methods_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	AccessTokenSigningAlgValues       []string `json:"access_token_signing_alg_values_supported"`
	BackchannelLogoutSupported        bool     `json:"backchannel_logout_supported"`
	BackchannelLogoutSessionSupported bool     `json:"backchannel_logout_session_supported"`
	BackchannelLogoutURI              string   `json:"backchannel_logout_uri"`
	// The token types the token exchange grant accepts (tokengate's own members; RFC 8414
	// registers none for RFC 8693): a subject token is an access token — the upstream
	// provider's (a first exchange) or tokengate's own (a delegation, docs/delegation.md);
	// an actor token is one of tokengate's access tokens issued to the caller.
	SubjectTokenTypesSupported []string `json:"subject_token_types_supported"`
	ActorTokenTypesSupported   []string `json:"actor_token_types_supported"`
	// DelegationSupported says services may exchange the internal tokens they receive for a
	// token for another service (RFC 8693 delegation, with the act claim).
	DelegationSupported bool `json:"delegation_supported"`
}

// metadata builds the discovery document. go-oidc reads id_token_signing_alg_values_supported
// to choose the algorithms it accepts, so it lists the internal tokens' algorithms.
func (s *Server) metadata() Metadata {
	base := s.cfg.Issuer
	algs := s.keys.Algorithms()
	auth := []string{"client_secret_basic", "client_secret_post"}
	return Metadata{
		Issuer: base, JWKSURI: base + "/jwks.json", TokenEndpoint: base + "/token",
		RevocationEndpoint:                base + "/revoke",
		GrantTypesSupported:               []string{issuer.GrantTokenExchange, issuer.GrantRefreshToken},
		TokenEndpointAuthMethodsSupported: auth, RevocationAuthMethodsSupported: auth,
		ResponseTypesSupported: []string{}, SubjectTypesSupported: []string{"public"},
		IDTokenSigningAlgValuesSupported: algs, AccessTokenSigningAlgValues: algs,
		BackchannelLogoutSupported: true, BackchannelLogoutSessionSupported: true,
		BackchannelLogoutURI:       base + "/backchannel-logout",
		SubjectTokenTypesSupported: []string{issuer.TokenTypeAccessToken},
		ActorTokenTypesSupported:   []string{issuer.TokenTypeAccessToken}, DelegationSupported: true,
	}
}

func (s *Server) discovery(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=300")
	c.JSON(http.StatusOK, s.metadata())
}

// jwks serves the key set with a max-age short enough that a key published as next is seen by
// every cache before it starts signing.
func (s *Server) jwks(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age="+strconv.Itoa(int(s.cfg.JWKSMaxAge.Seconds())))
	c.Data(http.StatusOK, "application/json", s.keys.JWKSJSON())
}
