package server

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tokengate/tokengate/issuer"
)

// statusOf maps an OAuth error code to its HTTP status.
func statusOf(code string) int {
	switch code {
	case issuer.CodeInvalidClient:
		return http.StatusUnauthorized
	case issuer.CodeTemporarilyUnavailable:
		return http.StatusServiceUnavailable
	case issuer.CodeServerError:
		return http.StatusInternalServerError
	default:
		return http.StatusBadRequest
	}
}

// writeError writes err as an OAuth error response. Errors that are not *issuer.Error are
// server errors whose details stay in the log.
func (s *Server) writeError(c *gin.Context, err error) {
	var oe *issuer.Error
	if !errors.As(err, &oe) {
		s.log.Error("unexpected error", "route", c.FullPath(), "error", err.Error())
		writeOAuthError(c, http.StatusInternalServerError, issuer.CodeServerError, "internal error")
		return
	}
	if oe.Code == issuer.CodeServerError || oe.Code == issuer.CodeTemporarilyUnavailable {
		s.log.Error("request failed", "route", c.FullPath(), "code", oe.Code, "error", oe.Error())
	}
	writeOAuthError(c, statusOf(oe.Code), oe.Code, oe.Description)
}

// writeOAuthError writes an RFC 6749 §5.2 error body with no-store caching.
func writeOAuthError(c *gin.Context, status int, code, desc string) {
	h := c.Writer.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	switch status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Basic realm="tokengate", error="`+code+`"`)
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", "1")
	}
	body := gin.H{"error": code}
	if desc != "" {
		body["error_description"] = desc
	}
	c.JSON(status, body)
}
