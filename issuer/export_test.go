package issuer

// EvictIntrospection drops the introspection cache's entry for the upstream token, as the
// cache's bound would: tests prove an eviction never turns a refusal into an acceptance.
func EvictIntrospection(i *Issuer, upstreamToken string) {
	i.cache.entries.forget(digest(upstreamToken))
}

// IntrospectionCached reports whether the introspection cache holds an answer for the token.
func IntrospectionCached(i *Issuer, upstreamToken string) bool {
	_, ok := i.cache.peek(digest(upstreamToken))
	return ok
}

// RecheckScheduled reports whether the recheck schedule holds an entry for the session.
func RecheckScheduled(i *Issuer, sid, sub string) bool {
	_, ok := i.rechecks.get(sessionKey(sid, sub), i.cfg.Now())
	return ok
}

// RefreshTokenCached reports whether the unsealed refresh token is cached.
func RefreshTokenCached(i *Issuer, refreshToken string) bool {
	_, ok := i.grants.get(digest(refreshToken), i.cfg.Now())
	return ok
}

// SettleCaches runs the caches' pending maintenance, evictions included.
func SettleCaches(i *Issuer) {
	i.rechecks.settle()
	i.cache.entries.settle()
	i.grants.settle()
}
