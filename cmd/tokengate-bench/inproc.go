package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/keys"
	"github.com/tokengate/tokengate/server"
	"github.com/tokengate/tokengate/store/bolt"
	"github.com/tokengate/tokengate/upstream"
)

// inproc is the gateway's own packages (store, keys, upstream, issuer, server) composed as
// `tokengate serve` composes them, in this process, so that each request's server-side time and
// the part of it spent waiting for Keycloak's introspection can be measured exactly.
type inproc struct {
	base   string
	secret string
	client *http.Client
	srv    *http.Server
	st     *bolt.Store

	mu      sync.Mutex
	timings []reqTiming
}

// reqTiming is one request as the server saw it.
type reqTiming struct {
	total, introspect time.Duration
}

type timingKey struct{}

// timingSlot travels in the request context down to the upstream HTTP client.
type timingSlot struct {
	mu         sync.Mutex
	introspect time.Duration
}

// timedTransport adds the round-trip time of introspection calls to the request's slot.
type timedTransport struct{ base http.RoundTripper }

func (t timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t0 := time.Now()
	resp, err := t.base.RoundTrip(r)
	if slot, ok := r.Context().Value(timingKey{}).(*timingSlot); ok && strings.HasSuffix(r.URL.Path, "/token/introspect") {
		if err == nil {
			// The body is read by the caller; count the time to headers plus a full read.
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			resp.Body = io.NopCloser(strings.NewReader(string(body)))
			if rerr != nil {
				err = rerr
			}
		}
		slot.mu.Lock()
		slot.introspect += time.Since(t0)
		slot.mu.Unlock()
	}
	return resp, err
}

func startInproc(ctx context.Context, upstreamIssuer, dir string) (*inproc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	base := "http://" + ln.Addr().String()
	st, err := bolt.Open(filepath.Join(dir, "tokengate.db"), bolt.Options{}) // durable, as served
	if err != nil {
		ln.Close()
		return nil, err
	}
	fail := func(err error) (*inproc, error) { ln.Close(); st.Close(); return nil, err }
	km, err := keys.Open(ctx, st, keys.Config{})
	if err != nil {
		return fail(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	up := upstream.New(upstream.Config{Issuer: upstreamIssuer, ClientID: introspectID, ClientSecret: introspectSecre,
		HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: timedTransport{tr}}})
	secret, _ := loopback.Secret()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	is, err := issuer.New(issuer.Config{
		Issuer: base, TTL: 30 * time.Second, RecheckAfter: time.Minute, MaxUpstreamLifetime: time.Hour,
		LogoutAudiences: []string{bffID}, UpstreamClientID: introspectID, Logger: log,
		Clients: []issuer.Client{{ID: gatewayClient, SecretSHA256: sha256.Sum256([]byte(secret)), Audiences: []string{gatewayAudience}}},
	}, st, km, up)
	if err != nil {
		return fail(err)
	}
	pub, err := server.New(server.Config{Issuer: base, JWKSMaxAge: 5 * time.Minute, Logger: log}, is, km)
	if err != nil {
		return fail(err)
	}
	h := pub.Handler()
	p := &inproc{base: base, secret: secret, st: st,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slot := &timingSlot{}
		r = r.WithContext(context.WithValue(r.Context(), timingKey{}, slot))
		t0 := time.Now()
		h.ServeHTTP(w, r)
		d := time.Since(t0)
		slot.mu.Lock()
		t := reqTiming{total: d, introspect: slot.introspect}
		slot.mu.Unlock()
		p.mu.Lock()
		p.timings = append(p.timings, t)
		p.mu.Unlock()
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// take returns and forgets the timings recorded so far.
func (p *inproc) take() []reqTiming {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.timings
	p.timings = nil
	return t
}

func (p *inproc) close() {
	_ = p.srv.Close()
	p.client.CloseIdleConnections()
	_ = p.st.Close()
}

func (p *inproc) exchange(ctx context.Context, tok string) (answer, error) {
	a, err := postToken(ctx, p.client, p.base, p.secret, exchangeForm(tok))
	if err == nil && a.status != 200 {
		err = fmt.Errorf("exchange: HTTP %d %s %s", a.status, a.Error, a.Description)
	}
	return a, err
}

func (p *inproc) renew(ctx context.Context, rt string) error {
	a, err := postToken(ctx, p.client, p.base, p.secret, renewForm(rt))
	if err == nil && a.status != 200 {
		err = errors.New("renew: HTTP " + fmt.Sprint(a.status) + " " + a.Error)
	}
	return err
}
