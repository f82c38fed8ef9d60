package issuer

// grantCacheSize bounds the unsealed refresh tokens kept in memory (each about 2 KiB).
const grantCacheSize = 16384

// newGrantCache keeps recently unsealed grants by SHA-256 of the refresh token until their
// upstream token expires, so a session's repeated renewals decrypt its refresh token once. Only
// tokens that unsealed successfully are cached; a cached grant is still checked (client,
// expiry, revocation) on every renewal.
func newGrantCache() *expiringMap[[32]byte, *grant] {
	return newExpiringMap[[32]byte, *grant](grantCacheSize)
}

func refreshKey(token string) [32]byte { return digest(token) }
