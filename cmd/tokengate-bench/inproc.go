package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/tokengate/cmd/internal/app"
	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/loopback"
)

// inproc is the gateway assembled by internal/app, as `tokengate serve` assembles it, in this
// process, so that each request's server-side time and the part of it spent waiting for
// Keycloak's introspection can be measured exactly.
type inproc struct {
	base   string
	secret string
	client *http.Client
	srv    *http.Server
	app    *app.App

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
	secret, secretHash := loopback.Secret()
	cfg := config.Config{
		Issuer: base, DataDir: dir, // bolt, durable, as served
		Upstream: config.Upstream{Issuer: upstreamIssuer, ClientID: introspectID, ClientSecret: introspectSecre,
			LogoutAudiences: []string{bffID}},
		Clients: []config.Client{{ID: gatewayClient, SecretSHA256: secretHash, Audiences: []string{gatewayAudience}}},
	}
	cfg.SetDefaults()
	cfg.Limits = config.Limits{} // the benchmark measures the gateway, not its rate limits
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	gw, err := app.New(ctx, cfg, app.WithLogger(slog.New(slog.DiscardHandler)),
		app.WithUpstreamClient(&http.Client{Timeout: 10 * time.Second, Transport: timedTransport{tr}}))
	if err != nil {
		ln.Close()
		return nil, err
	}
	h := gw.Handler()
	p := &inproc{base: base, secret: secret, app: gw,
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
	_ = p.app.Close()
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
