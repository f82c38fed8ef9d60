package issuer

import "fmt"

// OAuth error codes (RFC 6749 §5.2, RFC 8693 §2.2.2, RFC 7009 §2.2.1).
const (
	CodeInvalidRequest         = "invalid_request"
	CodeInvalidClient          = "invalid_client"
	CodeInvalidGrant           = "invalid_grant"
	CodeUnauthorizedClient     = "unauthorized_client"
	CodeUnsupportedGrantType   = "unsupported_grant_type"
	CodeInvalidScope           = "invalid_scope"
	CodeInvalidTarget          = "invalid_target"
	CodeUnsupportedTokenType   = "unsupported_token_type"
	CodeTemporarilyUnavailable = "temporarily_unavailable"
	CodeServerError            = "server_error"
)

// Error is an OAuth error: a code from the protocol, a description safe to show the caller, and
// the internal cause (never shown).
type Error struct {
	Code        string
	Description string
	Err         error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Description, e.Err)
	}
	return e.Code + ": " + e.Description
}

func (e *Error) Unwrap() error { return e.Err }

func oauthErr(code, desc string, cause error) *Error {
	return &Error{Code: code, Description: desc, Err: cause}
}

func invalidRequest(desc string, cause error) *Error {
	return oauthErr(CodeInvalidRequest, desc, cause)
}
func invalidGrant(desc string, cause error) *Error { return oauthErr(CodeInvalidGrant, desc, cause) }
func unavailable(desc string, cause error) *Error {
	return oauthErr(CodeTemporarilyUnavailable, desc, cause)
}
