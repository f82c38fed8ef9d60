package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// revoke serves POST /revoke (RFC 7009).
func (s *Server) revoke(c *gin.Context) {
	form, cl, err := s.authenticate(c)
	if err != nil {
		return
	}
	if err := s.issuer.Revoke(c.Request.Context(), cl, form.Get("token"), form.Get("token_type_hint")); err != nil {
		s.writeIssuerError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Status(http.StatusOK)
}
