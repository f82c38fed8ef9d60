package server

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tokengate/tokengate/issuer"
)

// token serves POST /token: RFC 8693 token exchange (a first exchange of an upstream token, or a
// delegation of an internal one: see issuer.Exchange) and refresh_token renewal.
func (s *Server) token(c *gin.Context) {
	form, cl, err := s.authenticate(c)
	if err != nil {
		return
	}
	var resp issuer.TokenResponse
	switch gt := form.Get("grant_type"); gt {
	case issuer.GrantTokenExchange:
		if form.Get("subject_token") == "" || form.Get("subject_token_type") == "" {
			writeError(c, oauthErrors, http.StatusBadRequest, issuer.CodeInvalidRequest, "subject_token and subject_token_type are required")
			return
		}
		resp, err = s.issuer.Exchange(c.Request.Context(), cl, issuer.ExchangeRequest{
			SubjectToken: form.Get("subject_token"), SubjectTokenType: form.Get("subject_token_type"),
			RequestedTokenType: form.Get("requested_token_type"), Audience: form["audience"], Resource: form["resource"],
			Scope: form.Get("scope"), ActorToken: form.Get("actor_token"), ActorTokenType: form.Get("actor_token_type"),
		})
	case issuer.GrantRefreshToken:
		if form.Get("refresh_token") == "" {
			writeError(c, oauthErrors, http.StatusBadRequest, issuer.CodeInvalidRequest, "refresh_token is required")
			return
		}
		resp, err = s.issuer.Renew(c.Request.Context(), cl, form.Get("refresh_token"), form.Get("scope"))
	case "":
		writeError(c, oauthErrors, http.StatusBadRequest, issuer.CodeInvalidRequest, "grant_type is required")
		return
	default:
		writeError(c, oauthErrors, http.StatusBadRequest, issuer.CodeUnsupportedGrantType, "grant_type "+truncate(gt, 80)+" is not supported")
		return
	}
	if err != nil {
		s.writeIssuerError(c, err)
		return
	}
	writeTokenResponse(c, resp)
}

// Header values of every token answer, shared read-only by all responses.
var (
	noStore  = []string{"no-store"}
	noCache  = []string{"no-cache"}
	jsonType = []string{"application/json; charset=utf-8"}
)

// writeTokenResponse writes a 200 token answer (RFC 6749 §5.1: no-store) straight to the
// connection, without the intermediate copy c.JSON makes.
func writeTokenResponse(c *gin.Context, resp issuer.TokenResponse) {
	h := c.Writer.Header()
	h["Cache-Control"], h["Pragma"], h["Content-Type"] = noStore, noCache, jsonType
	c.Status(http.StatusOK)
	if err := json.NewEncoder(c.Writer).Encode(resp); err != nil {
		_ = c.Error(err) // the status is sent; the client sees a cut body
	}
}
