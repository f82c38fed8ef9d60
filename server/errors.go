package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tokengate/tokengate/internal/ssf"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// errorFormat is how one of the three APIs spells an error response: the members of its JSON
// body and the headers that go with some statuses. writeError is the one writer for all three.
type errorFormat struct {
	codeKey, descKey string
	// omitEmptyDesc leaves the description member out when it is empty.
	omitEmptyDesc bool
	// challenge is the WWW-Authenticate value of a 401 with code.
	challenge func(code string) string
	// pragma adds Pragma: no-cache (RFC 6749 §5.1).
	pragma bool
	// retryAfter adds Retry-After: 1 to a 503.
	retryAfter bool
}

var (
	// oauthErrors: RFC 6749 §5.2 on the token, revoke and back-channel logout endpoints.
	oauthErrors = errorFormat{codeKey: "error", descKey: "error_description", omitEmptyDesc: true,
		challenge: func(code string) string { return `Basic realm="tokengate", error="` + code + `"` },
		pragma:    true, retryAfter: true}
	// adminErrors: the admin API (server/openapi/admin.yaml).
	adminErrors = errorFormat{codeKey: "error", descKey: "error_description",
		challenge: func(string) string { return `Bearer realm="tokengate-admin"` }}
	// ssfErrors: RFC 8935 §2.3 delivery errors on the Shared Signals endpoints.
	ssfErrors = errorFormat{codeKey: "err", descKey: "description",
		challenge:  func(string) string { return `Bearer realm="tokengate-ssf", error="invalid_token"` },
		retryAfter: true}
)

// writeError writes an error response in format f with no-store caching and aborts the
// request's remaining handlers.
func writeError(c *gin.Context, f errorFormat, status int, code, desc string) {
	h := c.Writer.Header()
	h.Set("Cache-Control", "no-store")
	if f.pragma {
		h.Set("Pragma", "no-cache")
	}
	switch {
	case status == http.StatusUnauthorized:
		h.Set("WWW-Authenticate", f.challenge(code))
	case status == http.StatusServiceUnavailable && f.retryAfter:
		h.Set("Retry-After", "1")
	}
	c.AbortWithStatusJSON(status, errorBody{f: &f, code: code, desc: desc})
}

// errorBody marshals the code member first, then the description.
type errorBody struct {
	f          *errorFormat
	code, desc string
}

func (b errorBody) MarshalJSON() ([]byte, error) {
	out := []byte{'{'}
	out = appendMember(out, b.f.codeKey, b.code)
	if b.desc != "" || !b.f.omitEmptyDesc {
		out = append(out, ',')
		out = appendMember(out, b.f.descKey, b.desc)
	}
	return append(out, '}'), nil
}

func appendMember(out []byte, k, v string) []byte {
	kb, _ := json.Marshal(k)
	vb, _ := json.Marshal(v)
	out = append(out, kb...)
	out = append(out, ':')
	return append(out, vb...)
}

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

// writeIssuerError writes err as an OAuth error response. Errors that are not *issuer.Error
// are server errors whose details stay in the log.
func (s *Server) writeIssuerError(c *gin.Context, err error) {
	var oe *issuer.Error
	if !errors.As(err, &oe) {
		s.log.Error("unexpected error", "route", c.FullPath(), "error", err.Error())
		writeError(c, oauthErrors, http.StatusInternalServerError, issuer.CodeServerError, "internal error")
		return
	}
	if oe.Code == issuer.CodeServerError || oe.Code == issuer.CodeTemporarilyUnavailable {
		s.log.Error("request failed", "route", c.FullPath(), "code", oe.Code, "error", oe.Error())
	}
	writeError(c, oauthErrors, statusOf(oe.Code), oe.Code, oe.Description)
}

// ssfStatus maps a delivery error code (RFC 8935 §2.3) to its HTTP status.
func ssfStatus(code string) int {
	switch code {
	case secevent.CodeInvalidRequest:
		return http.StatusBadRequest
	case secevent.CodeAuthenticationFailed:
		return http.StatusUnauthorized
	case secevent.CodeAccessDenied:
		return http.StatusForbidden
	case ssf.CodeTemporarilyUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// writeTransmitterError writes an error of the transmitter in the RFC 8935 §2.3 shape;
// anything but an *ssf.Error is an internal error.
func writeTransmitterError(c *gin.Context, err error) {
	var se *ssf.Error
	if !errors.As(err, &se) {
		writeError(c, ssfErrors, http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	writeError(c, ssfErrors, ssfStatus(se.Code), se.Code, se.Description)
}
