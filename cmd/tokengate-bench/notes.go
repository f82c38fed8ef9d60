package main

import (
	"fmt"
	"strconv"
	"strings"
)

// cumSeconds reads the cumulative time of the function named fn from `go tool pprof -top -cum`
// output (0 when absent).
func cumSeconds(top, fn string) float64 {
	for _, l := range strings.Split(top, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || strings.Join(f[5:], " ") != fn {
			continue
		}
		v := f[3]
		mult := 1.0
		switch {
		case strings.HasSuffix(v, "ms"):
			v, mult = strings.TrimSuffix(v, "ms"), 1e-3
		case strings.HasSuffix(v, "us"), strings.HasSuffix(v, "µs"):
			v, mult = strings.TrimSuffix(strings.TrimSuffix(v, "us"), "µs"), 1e-6
		case strings.HasSuffix(v, "s"):
			v = strings.TrimSuffix(v, "s")
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0
		}
		return x * mult
	}
	return 0
}

// share is the part of the token handler's time spent in fn, from the named profile.
func (r *Results) share(profile, fn string) float64 {
	for _, p := range r.Profiles {
		if p.Name == profile {
			if h := cumSeconds(p.Top, "github.com/tokengate/tokengate/server.(*Server).token"); h > 0 {
				return cumSeconds(p.Top, fn) / h
			}
		}
	}
	return 0
}

const (
	fnVerifyUpstream = "github.com/tokengate/tokengate/upstream.(*Client).VerifyAccessToken"
	fnSign           = "github.com/tokengate/tokengate/keys.(*Manager).Sign"
)

// missedNote explains a missed target from this run's figures and profiles: why, what was tried,
// and what change is proposed. Every number comes from the results.
func (r *Results) missedNote(t Target) string {
	switch t.ID {
	case "2":
		return fmt.Sprintf("Local verification costs %.1f× a bare P-256 signature verification (%s p50), so the service is at the "+
			"crypto floor and nothing in tokengate makes it cheaper (EdDSA is selectable with `keys.algorithm`; not measured here). "+
			"The ratio is set by what an introspection costs: here Keycloak is idle, on the same machine, over loopback (%s p50 at c=1); "+
			"with 32 concurrent callers it is %s and the ratio %.0f×. Tried: nothing else to try on the verifying side.",
			r.Verify.P50us/r.RawVerify.P50us, fmtUs(r.RawVerify.P50us), fmtUs(r.Introspect1.P50us), fmtUs(r.Introspect32.P50us),
			r.Introspect32.P50us/r.Verify.P50us)
	case "3-warm":
		v, s := r.share("exchange-warm", fnVerifyUpstream), r.share("exchange-warm", fnSign)
		return fmt.Sprintf("In the warm exchange's handler, %.0f %% of the CPU is the local RS256 verification of the Keycloak token "+
			"(`upstream.VerifyAccessToken`, go-oidc), repeated on every exchange although the introspection cache already holds this "+
			"exact token (keyed by its SHA-256), and %.0f %% is ES256 signing. Proposed (not made here: `issuer/` and `upstream/` belong "+
			"to other work): keep the verified claims beside the cached introspection answer and skip the re-verification on a hit "+
			"(expiry still checked); removing that share would bring the p50 to about %s (estimate from the profile, not measured).",
			100*v, 100*s, fmtUs(r.ExchangeWarmServer.P50us*(1-v)))
	case "4":
		s := r.share("renewal", fnSign)
		return fmt.Sprintf("A renewal costs %.1f raw signatures of CPU (%.0f vs %.0f per CPU-second). Inside the handler, ES256 signing "+
			"is %.0f %% (`keys.(*Manager).Sign`, go-jose → crypto/ecdsa); the rest is client authentication, form parsing, unsealing "+
			"the refresh token (JWE), two bbolt lookups (session, then subject, each its own read transaction), JSON and gin's middleware. "+
			"The handler takes %s p50 (c=1), %.1f× a raw signature; of the %s of CPU a renewal costs the server, roughly the remaining "+
			"%s is the HTTP/1.1 connection work around the handler (reads, writes, syscalls). Reaching 50 %% "+
			"means everything except the signature must cost no more than one signature (%s). Tried: the gateway and the load "+
			"generator on separate cores, and the comparison per CPU-second (the server core was %.0f %% busy, so the load generator "+
			"was not the limit). Proposed: profile-guided trimming of the non-crypto path (fewer allocations in form parsing and JSON, "+
			"one bbolt read transaction for both lookups); HTTP itself is the larger remaining cost.",
			r.RawSignPerCPUSecond/r.RenewalPerCPUSecond, r.RenewalPerCPUSecond, r.RawSignPerCPUSecond, 100*s,
			fmtUs(r.RenewalServer.P50us), r.RenewalServer.P50us/r.RawSign.P50us, fmtUs(1e6/r.RenewalPerCPUSecond),
			fmtUs(1e6/r.RenewalPerCPUSecond-r.RenewalServer.P50us), fmtUs(1e6/r.RawSignPerCPUSecond), 100*r.RenewalServerBusy)
	case "4d":
		extra := 1e6/r.DelegationPerCPUSecond - 1e6/r.RenewalPerCPUSecond
		return fmt.Sprintf("Besides the subject token's ES256 verification (%s p50 raw, on the load generator's cores), a delegation decodes "+
			"the subject token's claims (once; its JOSE header is matched, not parsed) and its act chain, writes an audit line, authenticates a second kind of client and builds a larger answer; "+
			"a renewal unseals a JWE instead. The %s of extra server CPU is %.1f raw verifications; the in-process comparison without "+
			"HTTP is `BenchmarkDelegateHandler` (make bench-core).", fmtUs(r.RawVerify.P50us), fmtUs(extra), extra/r.RawVerify.P50us)
	case "6-rss":
		last := r.Scale[len(r.Scale)-1]
		return fmt.Sprintf("Anonymous memory stays at %.0f MiB; the other %.0f MiB are clean pages of the mmapped %.0f MiB data file, "+
			"which the kernel can drop under pressure. They are read because `store/bolt`'s `Stats` (the `tokengate_revocation_records` "+
			"gauge, at start and every minute) counts records with `Bucket.Stats().KeyN`, which visits every page. Proposed: keep the "+
			"counts in the meta bucket, updated inside the write transactions, so `Stats` is O(1) and RSS follows only the pages "+
			"lookups touch.", last.RSSAnonMiB, last.RSSFileMiB, float64(last.FileBytes)/(1<<20))
	case "3-cold":
		return fmt.Sprintf("The overhead includes everything the cold exchange does besides waiting for Keycloak: the local RS256 "+
			"verification, decoding the introspection answer, signing, sealing, and the wake-up after the network wait, which a busy "+
			"2-core machine shared with Keycloak lengthens (p50 %s).", fmtUs(r.ExchangeColdOverhead.P50us))
	case "5":
		return fmt.Sprintf("%d renewals were accepted after Keycloak's logout call returned.", r.RevocationStale)
	}
	return ""
}
