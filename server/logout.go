package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// backchannelLogout serves POST /backchannel-logout (OIDC Back-Channel Logout 1.0 §2.5, §2.8):
// 200 only once the logout is durably recorded.
func (s *Server) backchannelLogout(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	if !s.logoutLimit.allow(c.ClientIP()) {
		s.tooMany(c, s.logoutLimit)
		return
	}
	form, err := readForm(c)
	if err != nil {
		return
	}
	if _, err := s.issuer.RecordLogout(c.Request.Context(), form.Get("logout_token")); err != nil {
		s.writeIssuerError(c, err)
		return
	}
	c.Status(http.StatusOK)
}
