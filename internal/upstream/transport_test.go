package upstream_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/upstream"
)

// rewriter serves every request from realm whatever the URL's scheme and host, and edits the
// discovery document on the way back: a stand-in for a Keycloak at another address, or one
// whose metadata names other endpoints.
type rewriter struct {
	realm *kctest.Realm
	edit  func(doc map[string]any)

	mu   sync.Mutex
	seen []string // every request, as addressed (scheme://host/path)
	cred []string // the requests that carried the client's credentials
}

func (rw *rewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	addr := r.URL.Scheme + "://" + r.URL.Host + r.URL.Path
	rw.mu.Lock()
	rw.seen = append(rw.seen, addr)
	if r.Header.Get("Authorization") != "" {
		rw.cred = append(rw.cred, addr)
	}
	rw.mu.Unlock()
	target, _ := url.Parse(rw.realm.Server.URL)
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host, r2.Host = target.Scheme, target.Host, target.Host
	resp, err := rw.realm.Server.Client().Transport.RoundTrip(r2)
	if err != nil || rw.edit == nil || !strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration") {
		return resp, err
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return nil, err
	}
	rw.edit(doc)
	b, _ := json.Marshal(doc)
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	resp.Header.Del("Content-Length")
	return resp, nil
}

func (rw *rewriter) requests() (seen, cred []string) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return append([]string(nil), rw.seen...), append([]string(nil), rw.cred...)
}

// moveTo rewrites every URL of the discovery document from the realm's address to base.
func moveTo(realm *kctest.Realm, base string, keys ...string) func(map[string]any) {
	return func(doc map[string]any) {
		for k, v := range doc {
			if s, ok := v.(string); ok && (len(keys) == 0 || contains(keys, k)) {
				doc[k] = strings.Replace(s, realm.Server.URL, base, 1)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestUpstream_PlainHTTPOffLoopbackIsRefused: tokengate sends its client secret to Keycloak's
// introspection endpoint and trusts the keys at its jwks_uri. Over plain http to a host other
// than a loopback address, it refuses to (before sending anything) unless InsecureHTTP is set
// (upstream.insecure_http); a loopback http realm (the tests, the demo) keeps working.
func TestUpstream_PlainHTTPOffLoopbackIsRefused(t *testing.T) {
	const remote = "http://kc.example"
	for _, tc := range []struct {
		name     string
		tls      bool
		issuer   func(realm *kctest.Realm) string
		edit     func(realm *kctest.Realm) func(map[string]any)
		insecure bool
		refused  bool
	}{
		{name: "http issuer off loopback", issuer: func(*kctest.Realm) string { return remote + "/realms/demo" },
			edit: func(r *kctest.Realm) func(map[string]any) { return moveTo(r, remote) }, refused: true},
		{name: "http issuer off loopback with insecure_http", issuer: func(*kctest.Realm) string { return remote + "/realms/demo" },
			edit: func(r *kctest.Realm) func(map[string]any) { return moveTo(r, remote) }, insecure: true},
		{name: "http issuer on loopback", issuer: func(r *kctest.Realm) string { return r.Issuer() }},
		{name: "https issuer, http introspection endpoint", tls: true, issuer: func(r *kctest.Realm) string { return r.Issuer() },
			edit: func(r *kctest.Realm) func(map[string]any) {
				return moveTo(r, remote, "introspection_endpoint")
			}, refused: true},
		{name: "https issuer, http jwks_uri", tls: true, issuer: func(r *kctest.Realm) string { return r.Issuer() },
			edit: func(r *kctest.Realm) func(map[string]any) { return moveTo(r, remote, "jwks_uri") }, refused: true},
		{name: "https issuer, https endpoints", tls: true, issuer: func(r *kctest.Realm) string { return r.Issuer() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			realm := kctest.NewUnstarted()
			if tc.tls {
				realm.Server.StartTLS()
			} else {
				realm.Server.Start()
			}
			t.Cleanup(realm.Server.Close)
			rw := &rewriter{realm: realm}
			if tc.edit != nil {
				rw.edit = tc.edit(realm)
			}
			c := upstream.New(upstream.Config{Issuer: tc.issuer(realm), ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret,
				InsecureHTTP: tc.insecure, HTTPClient: &http.Client{Transport: rw, Timeout: 5 * time.Second}})
			_, err := c.Introspect(t.Context(), realm.AccessToken(kctest.Token{}))
			seen, cred := rw.requests()
			if !tc.refused {
				if err != nil {
					t.Fatalf("introspection: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "insecure_http") {
				t.Errorf("introspection: err = %v, want a refusal naming upstream.insecure_http", err)
			}
			for _, u := range seen {
				if strings.HasPrefix(u, "http://") {
					t.Errorf("a request went out over plain http: %s", u)
				}
			}
			if len(cred) > 0 {
				t.Errorf("the client's credentials were sent to %q", cred)
			}
		})
	}
}
