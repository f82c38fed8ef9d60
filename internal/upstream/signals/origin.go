package signals

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokengate/tokengate/internal/upstream"
)

// origins are the origins the receiver calls: the issuer's and Config.AllowedOrigins. The
// receiver's client secret goes to the token endpoint, its bearer token to the configuration,
// verification and poll endpoints, and the keys at jwks_uri decide which SETs are Keycloak's:
// an endpoint the transmitter names elsewhere is refused, and so is a redirect elsewhere.
type origins struct {
	issuer       string
	allowed      map[string]bool
	insecureHTTP bool
}

func newOrigins(issuer string, allowed []string, insecureHTTP bool) (*origins, error) {
	if err := upstream.CheckTransport(issuer, insecureHTTP); err != nil {
		return nil, fmt.Errorf("signals: issuer: %w", err)
	}
	iu, _ := url.Parse(issuer) // CheckTransport parsed it
	o := &origins{issuer: originOf(iu), allowed: map[string]bool{}, insecureHTTP: insecureHTTP}
	o.allowed[o.issuer] = true
	for _, a := range allowed {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(u.Host, "*") {
			return nil, fmt.Errorf("signals: allowed origin %q is not an origin (scheme://host[:port])", a)
		}
		if err := upstream.CheckTransport(a, insecureHTTP); err != nil {
			return nil, fmt.Errorf("signals: allowed origin: %w", err)
		}
		o.allowed[originOf(u)] = true
	}
	return o, nil
}

// originOf is u's scheme://host:port, lower case, with the scheme's default port made explicit.
func originOf(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[scheme]
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// check refuses raw, named what in the error, unless it is an http(s) URL the transport rule
// allows, without user info, on the issuer's origin or an allowed one.
func (o *origins) check(what, raw string) error {
	if err := upstream.CheckTransport(raw, o.insecureHTTP); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	u, _ := url.Parse(raw)
	if u.User != nil {
		return fmt.Errorf("%s %s carries user info; refused", what, u.Redacted())
	}
	if !o.allowed[originOf(u)] {
		return fmt.Errorf("%s %s is not on the issuer's origin %s nor in upstream.shared_signals.allowed_origins; refused",
			what, u.Redacted(), o.issuer)
	}
	return nil
}

// checkRedirect is the receiver's http.Client CheckRedirect: a redirect is followed only to a
// URL check accepts (and at most 10 times).
func (o *origins) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return o.check("redirect to", req.URL.String())
}
