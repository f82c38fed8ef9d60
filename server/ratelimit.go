package server

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/tokengate/tokengate/issuer"
)

// Limit is a token bucket: Rate events per second on average, bursts of Burst. A zero Rate
// means no limit.
type Limit struct {
	Rate  float64
	Burst int
}

// Limits configures the rate limits of the public endpoints.
type Limits struct {
	// Token limits /token and /revoke per authenticated client.
	Token Limit
	// Logout limits refused /backchannel-logout calls per source address; a valid logout
	// token is never refused by it.
	Logout Limit
	// AuthFailures limits failed client authentications per source address; once spent, the
	// source's failures are answered 429. Credentials are checked first: good ones are never
	// refused by it.
	AuthFailures Limit
}

// maxLimiterKeys bounds the limiter table; idle entries are swept first. When the table is
// full of active keys, a new key is not limited (it fails open): failing the other way would let
// whoever fills the table from many addresses lock every new source out, including a BFF's good
// credentials behind AuthFailures. The per-client Token limit never fills it (clients are
// configured); only the per-source limits can, and only from 100,000 sources active at once.
const maxLimiterKeys = 100_000

// keyedLimiter holds one token bucket per key (client id or address).
type keyedLimiter struct {
	name  string
	limit Limit

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newKeyedLimiter(name string, l Limit) *keyedLimiter {
	if l.Rate <= 0 {
		return nil
	}
	if l.Burst < 1 {
		l.Burst = int(math.Max(1, math.Ceil(l.Rate)))
	}
	return &keyedLimiter{name: name, limit: l, buckets: map[string]*bucket{}}
}

func (k *keyedLimiter) get(key string) *rate.Limiter {
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if now.Sub(k.swept) > time.Minute || len(k.buckets) >= maxLimiterKeys {
		k.swept = now
		idle := time.Duration(float64(k.limit.Burst)/k.limit.Rate*float64(time.Second)) + time.Minute
		for key, b := range k.buckets {
			if now.Sub(b.used) > idle { // refilled long ago: forgetting it changes nothing
				delete(k.buckets, key)
			}
		}
	}
	b, ok := k.buckets[key]
	if !ok {
		if len(k.buckets) >= maxLimiterKeys {
			return nil // table full of active keys: do not grow without bound
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(k.limit.Rate), k.limit.Burst)}
		k.buckets[key] = b
	}
	b.used = now
	return b.lim
}

// allow takes one event for key; a nil limiter allows everything.
func (k *keyedLimiter) allow(key string) bool {
	if k == nil {
		return true
	}
	l := k.get(key)
	return l == nil || l.Allow()
}

// spent reports whether key has no event left, without taking one.
func (k *keyedLimiter) spent(key string) bool {
	if k == nil {
		return false
	}
	l := k.get(key)
	return l != nil && l.Tokens() < 1
}

// retryAfter is the whole seconds until one event is available again.
func (k *keyedLimiter) retryAfter() string {
	return strconv.Itoa(int(math.Ceil(1 / k.limit.Rate)))
}

// tooMany answers 429 with Retry-After in the OAuth error shape.
func (s *Server) tooMany(c *gin.Context, k *keyedLimiter) {
	s.cfg.Metrics.Limited(k.name)
	c.Header("Retry-After", k.retryAfter())
	writeError(c, oauthErrors, http.StatusTooManyRequests, issuer.CodeTemporarilyUnavailable, "rate limit exceeded; retry later")
	c.Abort()
}

// authFailureLimited counts one failed authentication against the caller's source address.
// Once the source's limits.auth_failures budget is spent it answers 429 with Retry-After in
// format f and reports true; otherwise the caller answers the failure itself (401). Only
// failures reach it: a caller whose credentials are good is never refused by this limit.
func (s *Server) authFailureLimited(c *gin.Context, f errorFormat) bool {
	if s.authFailLimit.allow(c.ClientIP()) {
		return false
	}
	s.cfg.Metrics.Limited(s.authFailLimit.name)
	c.Header("Retry-After", s.authFailLimit.retryAfter())
	writeError(c, f, http.StatusTooManyRequests, issuer.CodeTemporarilyUnavailable,
		"too many failed authentications from this source; retry later")
	return true
}
