package issuer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/issuer"
)

// TestEviction_InactiveVerdictEvictedRenewalStillRefused: the provider calls a sid-less
// token inactive at a recheck (nothing is recorded in the store: the cached verdict is what
// refuses its grant). When the verdict is evicted from the introspection cache, the next
// renewal must ask the provider again and be refused, not pass because the session's recheck
// is not due.
func TestEviction_InactiveVerdictEvictedRenewalStillRefused(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	noSID := f.realm.Sign(map[string]any{"iss": f.realm.Issuer(), "sub": "ivy", "typ": "Bearer", "azp": "bff",
		"aud": []string{"account", kctest.ClientID}, "iat": now.Unix(), "exp": now.Add(3 * time.Hour).Unix(), "jti": "at-ivy",
		"scope": "openid", "auth_time": now.Unix()})
	r, err := f.exchangeToken(noSID)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(61 * time.Second)
	f.realm.SetClockAhead(4 * time.Hour) // the provider now calls the token inactive
	_, err = f.renew(r.RefreshToken)
	wantCode(t, "renewal of a grant the provider calls inactive", err, issuer.CodeInvalidGrant)
	issuer.EvictIntrospection(f.is, noSID)
	n := f.up.calls.Load()
	_, err = f.renew(r.RefreshToken)
	wantCode(t, "renewal after the inactive verdict was evicted", err, issuer.CodeInvalidGrant)
	if got := f.up.calls.Load() - n; got != 1 {
		t.Errorf("introspections after the eviction: %d, want 1 (ask again)", got)
	}
	_, err = f.exchangeToken(noSID)
	wantCode(t, "exchange after the inactive verdict was evicted", err, issuer.CodeInvalidRequest)
}

// cacheStats returns the issuer's stats for the named cache.
func cacheStats(t *testing.T, is *issuer.Issuer, name string) issuer.CacheStats {
	t.Helper()
	for _, s := range is.CacheStats() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no cache %q in %+v", name, is.CacheStats())
	return issuer.CacheStats{}
}

// wantBounded fails unless the named cache holds at most bound entries and has evicted some.
func wantBounded(t *testing.T, f *fixture, name string, bound int) {
	t.Helper()
	issuer.SettleCaches(f.is)
	if s := cacheStats(t, f.is, name); s.Entries > bound || s.Evictions == 0 {
		t.Errorf("%s: %d entries, %d evictions; want at most %d entries and some evictions", name, s.Entries, s.Evictions, bound)
	}
}

const (
	bound   = 8  // each cache's bound in these tests
	filling = 60 // sessions exchanged: far past it
)

// TestBound_RecheckSchedule: the recheck schedule holds at most its bound; a session whose
// entry was evicted is introspected at its next renewal — ended upstream, it is refused —
// instead of renewing unchecked until the schedule would have come round.
func TestBound_RecheckSchedule(t *testing.T) {
	f := newFixture(t, func(c *setup) { c.Caches.RecheckSchedule = bound })
	type sess struct{ sid, sub, refresh string }
	var all []sess
	for n := range filling {
		s := sess{sid: fmt.Sprintf("sid-r%d", n), sub: fmt.Sprintf("rex%d", n)}
		s.refresh = f.exchange(s.sub, s.sid).RefreshToken
		all = append(all, s)
	}
	wantBounded(t, f, "recheck_schedule", bound)
	evicted := 0
	for _, s := range all {
		f.realm.EndSession(s.sid) // ended upstream; no back-channel logout reaches tokengate
		if issuer.RecheckScheduled(f.is, s.sid, s.sub) {
			continue // within RecheckAfter of its check: renews from the schedule
		}
		evicted++
		n := f.up.calls.Load()
		_, err := f.renew(s.refresh)
		wantCode(t, "renewal of an ended session whose recheck entry was evicted", err, issuer.CodeInvalidGrant)
		if got := f.up.calls.Load() - n; got != 1 {
			t.Errorf("introspections for the evicted session: %d, want 1", got)
		}
	}
	if evicted == 0 {
		t.Fatal("no session's entry was evicted")
	}
}

// TestBound_IntrospectionCache: the introspection cache holds at most its bound; a token whose
// cached "inactive" verdict was evicted is introspected again and still refused, at renewal
// and at exchange.
func TestBound_IntrospectionCache(t *testing.T) {
	f := newFixture(t, func(c *setup) { c.Caches.Introspection = bound })
	now := f.clock.Now()
	type sess struct{ token, refresh string }
	var dead []sess
	for n := range bound {
		tok := f.realm.Sign(map[string]any{"iss": f.realm.Issuer(), "sub": fmt.Sprintf("ida%d", n), "typ": "Bearer",
			"azp": "bff", "aud": []string{"account", kctest.ClientID}, "iat": now.Unix(),
			"exp": now.Add(3 * time.Hour).Unix(), "jti": fmt.Sprintf("at-ida%d", n), "scope": "openid", "auth_time": now.Unix()})
		r, err := f.exchangeToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		dead = append(dead, sess{tok, r.RefreshToken})
	}
	f.clock.Advance(61 * time.Second)
	f.realm.SetClockAhead(4 * time.Hour) // the provider calls these sid-less tokens inactive from now on
	for _, s := range dead {
		_, err := f.renew(s.refresh)
		wantCode(t, "renewal of a token the provider calls inactive", err, issuer.CodeInvalidGrant)
	}
	for n := range filling { // live sessions whose tokens outlast the provider's clock jump
		tok := f.realm.AccessToken(kctest.Token{Subject: fmt.Sprintf("idf%d", n), IssuedAt: f.clock.Now(), Lifetime: 24 * time.Hour})
		if _, err := f.exchangeToken(tok); err != nil {
			t.Fatal(err)
		}
	}
	wantBounded(t, f, "introspection", bound)
	evicted := 0
	for _, s := range dead {
		if issuer.IntrospectionCached(f.is, s.token) {
			continue
		}
		evicted++
		n := f.up.calls.Load()
		_, err := f.renew(s.refresh)
		wantCode(t, "renewal after the inactive verdict was evicted", err, issuer.CodeInvalidGrant)
		if got := f.up.calls.Load() - n; got != 1 {
			t.Errorf("introspections at the renewal after the eviction: %d, want 1", got)
		}
		issuer.EvictIntrospection(f.is, s.token) // evicted again before the exchange
		_, err = f.exchangeToken(s.token)
		wantCode(t, "exchange after the inactive verdict was evicted", err, issuer.CodeInvalidRequest)
	}
	if evicted == 0 {
		t.Fatal("no inactive verdict was evicted")
	}
}

// TestBound_RefreshTokens: the cache of unsealed refresh tokens holds at most its bound; an
// evicted grant is unsealed again and gets every check: a logged-out session stays refused.
func TestBound_RefreshTokens(t *testing.T) {
	f := newFixture(t, func(c *setup) { c.Caches.RefreshTokens = bound })
	ctx := context.Background()
	var refresh []string
	for n := range filling {
		sid := fmt.Sprintf("sid-g%d", n)
		r := f.exchange(fmt.Sprintf("gus%d", n), sid)
		f.mustRenew(r.RefreshToken) // unsealed and cached
		if _, err := f.is.RevokeSession(ctx, sid, "admin:test"); err != nil {
			t.Fatal(err)
		}
		refresh = append(refresh, r.RefreshToken)
	}
	wantBounded(t, f, "refresh_tokens", bound)
	evicted := 0
	for _, rt := range refresh {
		if !issuer.RefreshTokenCached(f.is, rt) {
			evicted++
		}
		_, err := f.renew(rt)
		wantCode(t, "renewal of a logged-out session", err, issuer.CodeInvalidGrant)
	}
	if evicted == 0 {
		t.Fatal("no refresh token was evicted")
	}
}
