package issuer

import (
	"context"
	"slices"
	"time"

	"github.com/tokengate/tokengate/internal/upstream"
)

// mapperHintEvery bounds how often the log names the missing audience mapper.
const mapperHintEvery = time.Minute

// checkSubject decides, before the provider is asked, whether c may exchange the locally
// verified subject token at: it must be meant for tokengate (aud contains UpstreamClientID,
// unless SkipAudienceCheck) and issued to one of c's upstream clients (azp). A refusal changes
// nothing and is written to the audit log.
func (i *Issuer) checkSubject(ctx context.Context, c Client, at upstream.AccessToken, token string) error {
	if !i.cfg.SkipAudienceCheck && !slices.Contains(at.Audience, i.cfg.UpstreamClientID) {
		i.log.InfoContext(ctx, "exchange refused", "event", "exchange_refused", "client_id", c.ID,
			"reason", "audience", "aud", at.Audience, "azp", at.AuthorizedParty, "subject_token", TokenHash(token))
		return invalidRequest("subject_token is not meant for tokengate: its aud does not contain "+
			quote(i.cfg.UpstreamClientID)+" (the upstream client "+quote(at.AuthorizedParty)+
			" needs an audience mapper adding "+quote(i.cfg.UpstreamClientID)+")", nil)
	}
	if at.AuthorizedParty != "" && !c.mayExchange(at.AuthorizedParty) {
		return i.refuseUpstreamClient(ctx, c, at.AuthorizedParty, token)
	}
	return nil
}

// checkIntrospected applies the caller binding to the introspection answer's client_id, for
// a token whose azp was absent (or differs, which a well-behaved provider never answers).
func (i *Issuer) checkIntrospected(ctx context.Context, c Client, at upstream.AccessToken, client, token string) error {
	if client == "" {
		client = at.AuthorizedParty
	}
	if client == "" || !c.mayExchange(client) {
		return i.refuseUpstreamClient(ctx, c, client, token)
	}
	return nil
}

func (i *Issuer) refuseUpstreamClient(ctx context.Context, c Client, upstreamClient, token string) error {
	i.log.InfoContext(ctx, "exchange refused", "event", "exchange_refused", "client_id", c.ID,
		"reason", "upstream_client", "azp", upstreamClient, "subject_token", TokenHash(token))
	if upstreamClient == "" {
		return invalidRequest("subject_token names no upstream client (azp) that this client may exchange tokens of", nil)
	}
	return invalidRequest("subject_token was issued to upstream client "+quote(upstreamClient)+
		", whose tokens this client may not exchange", nil)
}

// mayExchange reports whether c may exchange tokens the provider issued to upstreamClient.
func (c Client) mayExchange(upstreamClient string) bool {
	if len(c.UpstreamClients) == 0 {
		return upstreamClient == c.ID
	}
	return slices.Contains(c.UpstreamClients, upstreamClient)
}

// inactive is the refusal of a token the provider calls inactive. When the token verified
// locally, has not expired and lacks UpstreamClientID in aud (possible only with
// SkipAudienceCheck), the likely cause is the provider's introspection audience rule
// (Keycloak 26.6 and later, CVE-2026-37979): the description names it, and a WARN, at most
// once per mapperHintEvery, names the fix.
func (i *Issuer) inactive(ctx context.Context, c Client, at upstream.AccessToken, token string) error {
	now := i.cfg.Now()
	if id := i.cfg.UpstreamClientID; id != "" && !slices.Contains(at.Audience, id) && now.Before(at.Expiry) {
		i.log.InfoContext(ctx, "exchange refused", "event", "exchange_refused", "client_id", c.ID,
			"reason", "inactive_audience", "aud", at.Audience, "azp", at.AuthorizedParty, "subject_token", TokenHash(token))
		i.hintMapper(ctx, at.AuthorizedParty, now)
		return invalidRequest("subject_token is not active at the upstream provider, which introspects only tokens whose aud contains "+
			quote(id)+" (Keycloak 26.6.2 and later, and 26.4.12): the upstream client "+quote(at.AuthorizedParty)+
			" needs an audience mapper adding "+quote(id), nil)
	}
	i.log.InfoContext(ctx, "exchange refused", "event", "exchange_refused", "client_id", c.ID,
		"reason", "inactive", "subject_token", TokenHash(token))
	return invalidRequest("subject_token is not active", nil)
}

// hintMapper logs, at most once per mapperHintEvery, how to add the audience mapper.
func (i *Issuer) hintMapper(ctx context.Context, upstreamClient string, now time.Time) {
	i.hintMu.Lock()
	due := i.lastHinted.IsZero() || now.Sub(i.lastHinted) >= mapperHintEvery
	if due {
		i.lastHinted = now
	}
	i.hintMu.Unlock()
	if !due {
		return
	}
	i.log.WarnContext(ctx, "the upstream provider refuses to introspect tokens not meant for tokengate: "+
		"add an audience mapper to the upstream client (Keycloak: mapper type oidc-audience-mapper, "+
		"included.client.audience="+i.cfg.UpstreamClientID+", access token claim on; see docs/keycloak.md), "+
		"then keep upstream.require_audience true",
		"event", "audience_mapper_missing", "upstream_client", upstreamClient, "introspecting_client", i.cfg.UpstreamClientID)
}
