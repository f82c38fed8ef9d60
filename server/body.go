package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
)

// limitBody rejects bodies over n bytes with 413 and caps what handlers can read.
func limitBody(n int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > n {
			writeError(c, oauthErrors, http.StatusRequestEntityTooLarge, "invalid_request", "request body too large")
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, n)
		c.Next()
	}
}

// bodyBufs holds read buffers for request bodies (at most MaxBodyBytes each), so reading a
// body allocates only its final string.
var bodyBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody is the one reader of request bodies (limited by limitBody): it returns the whole
// body, or answers in format f — 413 when it is too large, 400 when it cannot be read.
func readBody(c *gin.Context, f errorFormat) (string, bool) {
	buf := bodyBufs.Get().(*bytes.Buffer)
	defer bodyBufs.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(c.Request.Body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(c, f, http.StatusRequestEntityTooLarge, "invalid_request", "request body too large")
		} else {
			writeError(c, f, http.StatusBadRequest, "invalid_request", "could not read the request body")
		}
		return "", false
	}
	return buf.String(), true
}

// readJSON decodes an optional JSON body into v (an empty body leaves v as it is), refusing
// other content types, answering errors in format f. strict (the admin API) also refuses
// unknown fields and trailing data, and says what was wrong.
func readJSON(c *gin.Context, f errorFormat, strict bool, v any) bool {
	body, ok := readBody(c, f)
	if !ok {
		return false
	}
	if strings.TrimSpace(body) == "" {
		return true
	}
	if mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type")); err != nil || mt != "application/json" {
		writeError(c, f, http.StatusUnsupportedMediaType, "invalid_request", "Content-Type must be application/json")
		return false
	}
	if !strict {
		if err := json.Unmarshal([]byte(body), v); err != nil {
			writeError(c, f, http.StatusBadRequest, "invalid_request", "malformed JSON body")
			return false
		}
		return true
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(c, f, http.StatusBadRequest, "invalid_request", "malformed JSON body: "+truncate(err.Error(), 120))
		return false
	}
	if dec.More() {
		writeError(c, f, http.StatusBadRequest, "invalid_request", "malformed JSON body: trailing data")
		return false
	}
	return true
}
