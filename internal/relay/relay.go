// Package relay forwards verified, recorded back-channel logout tokens to other receivers
// (a Keycloak client has one back-channel logout URL; tokengate holds it and relays).
//
// Each target has its own bounded queue and worker, so a slow or dead receiver delays only
// itself. A delivery is retried with exponential backoff on network errors, 5xx, 408 and 429;
// other 4xx answers are final. When a target's queue is full the token is dropped, counted and
// logged: relaying is best effort on top of tokengate's own durable record, never a reason to
// refuse or delay Keycloak's logout call.
package relay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Relay. Zero values get the defaults noted.
type Config struct {
	// Targets are the URLs each logout token is POSTed to (form field logout_token).
	Targets []string
	// QueueSize bounds the tokens waiting per target (default 1024).
	QueueSize int
	// MaxAttempts bounds the deliveries of one token to one target (default 8).
	MaxAttempts int
	// InitialBackoff is the wait after the first failure, doubled after each (default 200ms).
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between attempts (default 30s).
	MaxBackoff time.Duration
	// Timeout bounds one delivery attempt (default 5s).
	Timeout time.Duration
	// HTTPClient sends the requests (a client without timeout of its own by default).
	HTTPClient *http.Client
	// Logger receives one line per final outcome (slog.Default when nil).
	Logger *slog.Logger
}

// Stats counts outcomes since the relay started, over all targets.
type Stats struct {
	Delivered uint64 // answered 2xx
	Failed    uint64 // given up after MaxAttempts or a final 4xx
	Dropped   uint64 // not queued: the target's queue was full
	Retries   uint64 // attempts after the first
}

// Relay forwards logout tokens. Create it with New, start it with Run, feed it with Forward.
type Relay struct {
	cfg     Config
	targets []*target
	log     *slog.Logger

	delivered, failed, dropped, retries atomic.Uint64
}

type target struct {
	url   string
	queue chan string
}

// New validates cfg and returns a relay that does nothing until Run is called.
func New(cfg Config) (*Relay, error) {
	if len(cfg.Targets) == 0 {
		return nil, errors.New("relay: no targets")
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Relay{cfg: cfg, log: cfg.Logger}
	for _, u := range cfg.Targets {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("relay: target %q is not an absolute http(s) URL", u)
		}
		r.targets = append(r.targets, &target{url: u, queue: make(chan string, cfg.QueueSize)})
	}
	return r, nil
}

// Forward queues raw for every target without blocking. It reports whether every target
// accepted it; a full queue drops the token for that target (counted and logged).
func (r *Relay) Forward(raw string) bool {
	all := true
	for _, t := range r.targets {
		select {
		case t.queue <- raw:
		default:
			all = false
			r.dropped.Add(1)
			r.log.Warn("logout relay queue full: token dropped", "event", "logout_relay_dropped",
				"target", t.url, "logout_token", tokenHash(raw))
		}
	}
	return all
}

// Run delivers queued tokens until ctx ends; then it returns once every worker has stopped.
// Tokens still queued at that point are not delivered.
func (r *Relay) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, t := range r.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.work(ctx, t)
		}()
	}
	wg.Wait()
}

// Stats returns the outcome counters.
func (r *Relay) Stats() Stats {
	return Stats{
		Delivered: r.delivered.Load(), Failed: r.failed.Load(),
		Dropped: r.dropped.Load(), Retries: r.retries.Load(),
	}
}

func (r *Relay) work(ctx context.Context, t *target) {
	for {
		select {
		case <-ctx.Done():
			return
		case raw := <-t.queue:
			r.deliver(ctx, t.url, raw)
		}
	}
}

// deliver posts raw to u until it is accepted, refused for good, attempts run out or ctx ends.
func (r *Relay) deliver(ctx context.Context, u, raw string) {
	backoff := r.cfg.InitialBackoff
	var last error
	for attempt := 1; attempt <= r.cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			r.retries.Add(1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, r.cfg.MaxBackoff)
		}
		retry, err := r.post(ctx, u, raw)
		if err == nil {
			r.delivered.Add(1)
			r.log.Info("logout relayed", "event", "logout_relayed", "target", u, "attempts", attempt,
				"logout_token", tokenHash(raw))
			return
		}
		last = err
		if ctx.Err() != nil {
			return
		}
		if !retry {
			break
		}
	}
	r.failed.Add(1)
	r.log.Warn("logout relay gave up", "event", "logout_relay_failed", "target", u,
		"error", last.Error(), "logout_token", tokenHash(raw))
}

// post makes one attempt; retry says whether another attempt may succeed.
func (r *Relay) post(ctx context.Context, u, raw string) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	body := url.Values{"logout_token": {raw}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
		return true, fmt.Errorf("HTTP %d", resp.StatusCode)
	default:
		return false, fmt.Errorf("HTTP %d (not retried)", resp.StatusCode)
	}
}

// tokenHash is a short, non-reversible fingerprint of a token for logs.
func tokenHash(raw string) string {
	h := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(h[:6])
}
