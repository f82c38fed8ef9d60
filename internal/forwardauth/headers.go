package forwardauth

import (
	"net/http"
	"slices"
	"strings"

	"github.com/tokengate/tokengate/verifier"
)

// identity is the one table of identity headers: IdentityHeaders, the values set on an
// accepted request and the header hygiene below all derive from it, so that a header added
// here is set, listed for proxy configurations and protected at once.
var identity = []struct {
	header string
	value  func(*verifier.Token) string
}{
	{HeaderSubject, func(t *verifier.Token) string { return t.Subject }},
	{HeaderSession, func(t *verifier.Token) string { return t.SessionID }},
	{HeaderClient, func(t *verifier.Token) string { return t.ClientID }},
	{HeaderScope, func(t *verifier.Token) string { return t.Scope }},
	{HeaderRoles, func(t *verifier.Token) string { return strings.Join(t.Roles, ",") }},
	{HeaderUsername, func(t *verifier.Token) string { return t.PreferredUsername }},
	{HeaderActor, func(t *verifier.Token) string { return strings.Join(t.Actors(), ",") }},
}

// IdentityHeaders lists the identity headers, for proxy configurations (Traefik's
// authResponseHeaders, Envoy's allowed_upstream_headers, nginx's auth_request_set).
var IdentityHeaders = func() []string {
	h := make([]string, len(identity))
	for i, id := range identity {
		h[i] = id.header
	}
	return h
}()

// forwardingHeaders are the request headers proxy mode's httputil.ReverseProxy writes itself
// (SetXForwarded), after dropping the client's fields of exactly these names.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// proxyHeaders is every request header proxy mode sets on the forwarded request.
var proxyHeaders = slices.Concat(IdentityHeaders, forwardingHeaders)

// headerKey is a header name as CGI-style servers file it (Python's WSGI environ, PHP's
// $_SERVER, Rack, CGI itself: HTTP_X_TOKENGATE_ROLES): without case, '_' and '-' alike.
// Such servers also join the values of every field that maps to one key with commas.
func headerKey(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

var (
	// proxyKeys are the headerKeys of proxyHeaders.
	proxyKeys = func() map[string]bool {
		m := map[string]bool{}
		for _, h := range proxyHeaders {
			m[headerKey(h)] = true
		}
		return m
	}()
	// identityPrefixKey is the headerKey of HeaderPrefix: the namespace of identity headers,
	// today's and those a later version adds.
	identityPrefixKey = headerKey(HeaderPrefix)
)

// ownedByProxy reports whether an upstream that reads header names the CGI way would take a
// client header called name for one that proxy mode sets: one of proxyHeaders, or any name
// under X-Tokengate-, in any case and spelled with '_' or '-'.
func ownedByProxy(name string) bool {
	k := headerKey(name)
	return proxyKeys[k] || strings.HasPrefix(k, identityPrefixKey)
}

// stripOwned removes from h every header ownedByProxy, and reports how many names it removed.
func stripOwned(h http.Header) int {
	n := 0
	for k := range h {
		if ownedByProxy(k) {
			delete(h, k)
			n++
		}
	}
	return n
}

// smuggledIdentity returns the first (in sorted order) name in h that contains '_' and reads,
// with '_' as '-', as a header under X-Tokengate-. In auth mode the proxy sets the identity
// headers on the request it forwards, replacing the client's fields of the same name in any
// case, but it forwards a field spelled with '_' untouched beside them, and a CGI-style
// service reads both as one.
func smuggledIdentity(h http.Header) (string, bool) {
	var found []string
	for k := range h {
		if strings.Contains(k, "_") && strings.HasPrefix(headerKey(k), identityPrefixKey) {
			found = append(found, k)
		}
	}
	if len(found) == 0 {
		return "", false
	}
	return slices.Min(found), true
}

// authorizationFields counts the request's Authorization fields, under any spelling of the
// name's case. More than one is ambiguous: the token verified is the first, and an upstream
// may read another (or all of them, comma-joined).
func authorizationFields(h http.Header) int {
	n := 0
	for k, vs := range h {
		if strings.EqualFold(k, "Authorization") {
			n += len(vs)
		}
	}
	return n
}

// quoteName shortens a client-chosen header name for an error description or a log line.
func quoteName(name string) string {
	const maxName = 64
	if len(name) > maxName {
		name = name[:maxName] + "…"
	}
	return `"` + name + `"`
}

func setIdentity(h http.Header, tok *verifier.Token) {
	for _, id := range identity {
		if v := id.value(tok); v != "" {
			h.Set(id.header, v)
		}
	}
}
