package config

import (
	"slices"
	"strings"
)

// DefaultMaxDelegationDepth is a delegating client's longest actor chain when
// max_delegation_depth is left out: bff → orders → payments → ledger.
const DefaultMaxDelegationDepth = 3

// MaxDelegationDepth is the largest max_delegation_depth accepted.
const MaxDelegationDepth = 10

// ServiceAudienceOf returns the audience that names client c as a service: the aud a token
// must carry for c to delegate it (service_audience, or the client id when left out).
func (c Client) ServiceAudienceOf() string {
	if c.ServiceAudience != "" {
		return c.ServiceAudience
	}
	return c.ID
}

// setDelegationDefaults gives every delegating client its default chain depth.
func (c *Client) setDelegationDefaults() {
	if len(c.DelegateTo) > 0 && c.MaxDelegationDepth == 0 {
		c.MaxDelegationDepth = DefaultMaxDelegationDepth
	}
}

// validateDelegation checks a client's delegation keys (f names the client, e.g. clients[0]).
func (c Client) validateDelegation(f string, bad func(field, format string, a ...any)) {
	if c.DelegateTo != nil && len(c.DelegateTo) == 0 {
		bad(f+".delegate_to", "is empty: leave it out for a client that does not delegate, "+
			"or list the services it may call on the user's behalf")
	}
	for n, a := range c.DelegateTo {
		if strings.TrimSpace(a) == "" || a != strings.TrimSpace(a) {
			bad(f+".delegate_to", "has an empty or blank-padded audience %q", a)
		} else if slices.Index(c.DelegateTo, a) != n {
			bad(f+".delegate_to", "lists %q twice", a)
		}
	}
	if c.ServiceAudience != "" && c.ServiceAudience != strings.TrimSpace(c.ServiceAudience) {
		bad(f+".service_audience", "%q is blank-padded", c.ServiceAudience)
	}
	if len(c.DelegateTo) == 0 {
		if c.MaxDelegationDepth != 0 {
			bad(f+".max_delegation_depth", "has no effect without delegate_to: remove it, or add delegate_to")
		}
		if c.ServiceAudience != "" {
			bad(f+".service_audience", "has no effect without delegate_to: remove it, or add delegate_to")
		}
		return
	}
	if c.MaxDelegationDepth < 1 || c.MaxDelegationDepth > MaxDelegationDepth {
		bad(f+".max_delegation_depth", "must be between 1 and %d actors (left out: %d), got %d",
			MaxDelegationDepth, DefaultMaxDelegationDepth, c.MaxDelegationDepth)
	}
	if slices.Contains(c.DelegateTo, c.ServiceAudienceOf()) {
		bad(f+".delegate_to", "lists %q, the client's own service audience (service_audience, default the id): "+
			"a service calls itself without a token exchange", c.ServiceAudienceOf())
	}
}

// checkAudiences reports a client with nothing to ask tokens for: a BFF needs audiences, a
// service that only delegates needs delegate_to.
func (c Client) checkAudiences(f string, bad func(field, format string, a ...any)) {
	if len(c.Audiences) == 0 && len(c.DelegateTo) == 0 {
		bad(f+".audiences", "needs at least one audience (the services a BFF may get tokens for), "+
			"or delegate_to for a service that only delegates (docs/delegation.md)")
	}
}
