package server

import (
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/tokengate/tokengate/issuer"
)

// repeatable lists parameters that may appear more than once (RFC 8693 §2.1).
var repeatable = map[string]bool{"audience": true, "resource": true}

// errAnswered means the error response has been written already.
var errAnswered = errors.New("answered")

// readForm parses an application/x-www-form-urlencoded body, refusing other content types and
// duplicated parameters. On error it writes the response and returns errAnswered.
func readForm(c *gin.Context) (url.Values, error) {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		writeError(c, oauthErrors, http.StatusBadRequest, issuer.CodeInvalidRequest,
			"Content-Type must be application/x-www-form-urlencoded")
		return nil, errAnswered
	}
	body, ok := readBody(c, oauthErrors)
	if !ok {
		return nil, errAnswered
	}
	form, err := parseForm(body) // the one copy of the body; values share it
	if err != nil {
		writeError(c, oauthErrors, http.StatusBadRequest, issuer.CodeInvalidRequest, "malformed form body")
		return nil, errAnswered
	}
	for k, v := range form {
		if len(v) > 1 && !repeatable[k] {
			writeError(c, oauthErrors, http.StatusBadRequest, issuer.CodeInvalidRequest, "parameter "+k+" is repeated")
			return nil, errAnswered
		}
	}
	return form, nil
}

// parseForm is url.ParseQuery with a fast path: a body without '%' or '+' has nothing to
// unescape, so its pairs are plain substrings. Token bodies are base64url and take that path,
// which skips the byte-by-byte unescape scan of a 2 KiB refresh token. FuzzParseForm checks
// that both paths agree with url.ParseQuery.
func parseForm(body string) (url.Values, error) {
	if strings.IndexByte(body, '%') >= 0 || strings.IndexByte(body, '+') >= 0 {
		return url.ParseQuery(body)
	}
	form := make(url.Values, 4)
	for body != "" {
		var pair string
		pair, body, _ = strings.Cut(body, "&")
		if strings.Contains(pair, ";") {
			return url.ParseQuery(pair) // for url.ParseQuery's own error
		}
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		form[k] = append(form[k], v)
	}
	return form, nil
}

// clientCredentials extracts client_secret_basic or client_secret_post credentials; using both
// is an error (RFC 6749 §2.3.1).
func clientCredentials(c *gin.Context, form url.Values) (id, secret string, err error) {
	user, pass, hasBasic := c.Request.BasicAuth()
	postID, postSecret := form.Get("client_id"), form.Get("client_secret")
	if hasBasic {
		if postSecret != "" {
			return "", "", errors.New("use one client authentication method, not two")
		}
		if id, err = url.QueryUnescape(user); err != nil {
			return "", "", errors.New("malformed client_id in Authorization header")
		}
		if secret, err = url.QueryUnescape(pass); err != nil {
			return "", "", errors.New("malformed client_secret in Authorization header")
		}
		if postID != "" && postID != id {
			return "", "", errors.New("client_id in body differs from Authorization header")
		}
		return id, secret, nil
	}
	if c.GetHeader("Authorization") != "" {
		return "", "", errors.New("unsupported Authorization scheme")
	}
	return postID, postSecret, nil
}

// authenticate reads the form and authenticates the client; on failure it answers and returns
// errAnswered. Credentials are always checked: limits.auth_failures counts failures only, so a
// client with good credentials is never refused because others failed from its address (a NAT,
// a proxy); a source's failures over the limit are answered 429 instead of 401.
func (s *Server) authenticate(c *gin.Context) (url.Values, issuer.Client, error) {
	form, err := readForm(c)
	if err != nil {
		return nil, issuer.Client{}, err
	}
	id, secret, err := clientCredentials(c, form)
	if err == nil && (id == "" || secret == "") {
		err = errors.New("client authentication is required")
	}
	if err != nil {
		if !s.authFailureLimited(c, oauthErrors) {
			writeError(c, oauthErrors, http.StatusUnauthorized, issuer.CodeInvalidClient, err.Error())
		}
		return nil, issuer.Client{}, errAnswered
	}
	cl, err := s.issuer.Authenticate(id, secret)
	if err != nil {
		if !s.authFailureLimited(c, oauthErrors) {
			s.log.Info("client authentication failed", "event", "auth_failed", "client_id", truncate(id, 64), "remote", c.ClientIP())
			s.writeIssuerError(c, err)
		}
		return nil, issuer.Client{}, errAnswered
	}
	if !s.tokenLimit.allow(cl.ID) {
		s.tooMany(c, s.tokenLimit)
		return nil, issuer.Client{}, errAnswered
	}
	return form, cl, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
