// Package ginverifier is verifier's middleware for gin: services on gin import it, services on
// net/http import verifier alone and never pull gin.
//
//	router.Use(ginverifier.Middleware(v))
//	router.GET("/orders", func(c *gin.Context) {
//		tok, _ := ginverifier.Token(c) // or verifier.TokenFromContext(c.Request.Context())
//	})
package ginverifier

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tokengate/tokengate/verifier"
)

// TokenKey is the gin context key under which Middleware stores the *verifier.Token.
const TokenKey = "tokengate.token"

// Token returns the token Middleware verified for this request.
func Token(c *gin.Context) (*verifier.Token, bool) {
	v, ok := c.Get(TokenKey)
	t, _ := v.(*verifier.Token)
	return t, ok && t != nil
}

// Middleware is v.Middleware for gin: a refused request gets the same RFC 6750 answer and is
// aborted; an accepted one continues with the token under TokenKey and in the request's
// context (verifier.TokenFromContext).
func Middleware(v *verifier.Verifier) gin.HandlerFunc {
	return func(c *gin.Context) {
		passed := false
		v.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			passed = true
			tok, _ := verifier.TokenFromContext(r.Context())
			c.Set(TokenKey, tok)
			c.Request = r
			c.Next()
		})).ServeHTTP(c.Writer, c.Request)
		if !passed {
			c.Abort()
		}
	}
}
