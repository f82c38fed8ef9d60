package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
)

// TestWriteError_EachAPIKeepsItsShape: the one writer spells each API's errors as before the
// three writers were merged: members, their order, and the headers of 401 and 503.
func TestWriteError_EachAPIKeepsItsShape(t *testing.T) {
	cases := []struct {
		name       string
		f          errorFormat
		status     int
		code, desc string
		body       string
		header     map[string]string
	}{
		{"oauth 401", oauthErrors, 401, "invalid_client", "client authentication failed",
			`{"error":"invalid_client","error_description":"client authentication failed"}`,
			map[string]string{"WWW-Authenticate": `Basic realm="tokengate", error="invalid_client"`, "Pragma": "no-cache", "Retry-After": ""}},
		{"oauth 503 without description", oauthErrors, 503, "temporarily_unavailable", "",
			`{"error":"temporarily_unavailable"}`, map[string]string{"Retry-After": "1", "WWW-Authenticate": ""}},
		{"admin 401", adminErrors, 401, "unauthorized", "a bearer admin token is required",
			`{"error":"unauthorized","error_description":"a bearer admin token is required"}`,
			map[string]string{"WWW-Authenticate": `Bearer realm="tokengate-admin"`, "Pragma": ""}},
		{"admin 503", adminErrors, 503, "unavailable", "", `{"error":"unavailable","error_description":""}`,
			map[string]string{"Retry-After": ""}},
		{"ssf 401", ssfErrors, 401, "authentication_failed", `a "quoted" word`,
			`{"err":"authentication_failed","description":"a \"quoted\" word"}`,
			map[string]string{"WWW-Authenticate": `Bearer realm="tokengate-ssf", error="invalid_token"`, "Pragma": ""}},
		{"ssf 503", ssfErrors, 503, "temporarily_unavailable", "x", `{"err":"temporarily_unavailable","description":"x"}`,
			map[string]string{"Retry-After": "1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(w)
			c.Request = httptest.NewRequest(http.MethodGet, "/", nil)
			writeError(c, tc.f, tc.status, tc.code, tc.desc)
			if w.Code != tc.status || w.Body.String() != tc.body || !c.IsAborted() {
				t.Errorf("got %d %s (aborted %v), want %d %s", w.Code, w.Body.String(), c.IsAborted(), tc.status, tc.body)
			}
			if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
				t.Errorf("headers %v", w.Header())
			}
			for k, v := range tc.header {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}
