package issuer

import "sync"

// grantCacheSize bounds the unsealed refresh tokens kept in memory (each about 2 KiB).
const grantCacheSize = 16384

// grantCache keeps recently unsealed grants by SHA-256 of the refresh token, so a session's
// repeated renewals decrypt its refresh token once. Only tokens that unsealed successfully are
// cached; a cached grant is still checked (client, expiry, revocation) on every renewal.
type grantCache struct {
	mu sync.RWMutex
	m  map[[32]byte]*grant
}

func newGrantCache() *grantCache { return &grantCache{m: make(map[[32]byte]*grant)} }

func (c *grantCache) get(key [32]byte) *grant {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[key]
}

func (c *grantCache) put(key [32]byte, g *grant) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= grantCacheSize {
		for k := range c.m { // evict an arbitrary entry
			delete(c.m, k)
			break
		}
	}
	c.m[key] = g
}

func refreshKey(token string) [32]byte { return digest(token) }
