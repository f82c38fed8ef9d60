package server

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tokengate/tokengate/issuer"
)

// backchannelLogout serves POST /backchannel-logout (OIDC Back-Channel Logout 1.0 §2.5, §2.8):
// 200 only once the logout is durably recorded. The token is verified before any limit is
// consulted, and the per-source limit counts refused tokens only: the provider never retries
// a refused logout, so a valid one must never wait behind someone else's junk from the same
// address (a proxy, a NAT). A source whose refusals exceed the limit gets 429 instead of 400.
func (s *Server) backchannelLogout(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	form, err := readForm(c)
	if err != nil {
		return
	}
	if _, err := s.issuer.RecordLogout(c.Request.Context(), form.Get("logout_token")); err != nil {
		var oe *issuer.Error
		if errors.As(err, &oe) && oe.Code == issuer.CodeInvalidRequest && !s.logoutLimit.allow(c.ClientIP()) {
			s.tooMany(c, s.logoutLimit)
			return
		}
		s.writeIssuerError(c, err)
		return
	}
	c.Status(http.StatusOK)
}
