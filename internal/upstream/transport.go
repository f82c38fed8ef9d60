package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// ErrInsecureTransport is returned for a URL tokengate refuses to use: plain http to a host
// that is not a loopback address while upstream.insecure_http is off, or not http(s) at all.
var ErrInsecureTransport = errors.New("insecure transport")

// CheckTransport reports whether tokengate may call raw, a URL of Keycloak's (the issuer or an
// endpoint its metadata names): https always; plain http only when insecureHTTP is set
// (upstream.insecure_http) or the host is a loopback IP address (127.0.0.0/8, ::1), whose
// traffic never leaves the machine. Any other scheme is refused.
func CheckTransport(raw string, insecureHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: %q is not an absolute URL", ErrInsecureTransport, raw)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if insecureHTTP || IsLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%w: %s is plain http to %s, which is not a loopback address: use https, or set upstream.insecure_http: true",
			ErrInsecureTransport, u.Redacted(), u.Hostname())
	}
	return fmt.Errorf("%w: %s is neither https nor http", ErrInsecureTransport, u.Redacted())
}

// IsLoopback reports whether host (a URL's Hostname) is a loopback IP address. Names, even
// "localhost", are not: what they resolve to is not the URL's to say.
func IsLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// noDowngrade is an http.Client CheckRedirect that refuses a redirect CheckTransport refuses
// (https to plain http off loopback), and more than 10 redirects as the default does.
func noDowngrade(insecureHTTP bool) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return CheckTransport(req.URL.String(), insecureHTTP)
	}
}
