package app

// Keycloak's Shared Signals stream: one receiver per deployment (the elected leader with
// replicas) records the logouts Keycloak signals on it through the issuer.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/store"
	etcdstore "github.com/tokengate/tokengate/internal/store/etcd"
	"github.com/tokengate/tokengate/internal/upstream/signals"
	"github.com/tokengate/tokengate/issuer"
)

// signalsElection names the etcd election whose leader polls Keycloak's stream.
const signalsElection = "shared-signals"

// newReceiver builds the Shared Signals receiver when upstream.shared_signals is enabled (nil
// otherwise). The store keeps its stream id; the issuer records each SET's logout and claims
// its jti in one store transaction.
func newReceiver(cfg *config.Config, st store.Store, is *issuer.Issuer, reg prometheus.Registerer, hc *http.Client,
	tp trace.TracerProvider, now func() time.Time, log *slog.Logger) (*signals.Receiver, error) {
	sc := cfg.Upstream.SharedSignals
	if !sc.Enabled {
		return nil, nil
	}
	var events []string
	for _, e := range sc.Events {
		events = append(events, signals.Events[e])
	}
	r, err := signals.New(signals.Config{
		Issuer: cfg.Upstream.Issuer, ClientID: sc.ClientID, ClientSecret: sc.ClientSecret, Events: events,
		PollInterval: sc.PollInterval.D(), HTTPClient: hc, Now: now, Logger: log, Registerer: reg, TracerProvider: tp,
		AllowedOrigins: sc.AllowedOrigins, InsecureHTTP: cfg.Upstream.InsecureHTTP,
	}, st, is)
	if err != nil {
		return nil, fmt.Errorf("upstream.shared_signals: %w", err)
	}
	log.Info("shared signals: receiver configured", "client_id", sc.ClientID, "events", sc.Events,
		"poll_interval", sc.PollInterval.D().String())
	return r, nil
}

// catchUpWait bounds how long a single tokengate waits, before it serves, for its receiver to
// fetch the logouts that waited in Keycloak's stream while it was down.
const catchUpWait = 3 * time.Second

// catchUp waits until r has drained the stream once (or failed once), at most catchUpWait.
func catchUp(ctx context.Context, r *signals.Receiver, log *slog.Logger) {
	t0 := time.Now()
	t := time.NewTimer(catchUpWait)
	defer t.Stop()
	select {
	case <-r.CaughtUp():
		log.Info("shared signals: caught up before serving", "event", "signals_caught_up",
			"after", time.Since(t0).Round(time.Millisecond).String())
	case <-t.C:
		log.Warn("shared signals: stream not drained before serving; serving anyway", "waited", catchUpWait.String())
	case <-ctx.Done():
	}
}

// runReceiver runs r until ctx ends — with replicas only while this replica leads the
// shared-signals election. stop ends it and waits (call it before the store closes).
func runReceiver(ctx context.Context, r *signals.Receiver, replicated *etcdstore.Store, log *slog.Logger) (stop func()) {
	if r == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if replicated == nil {
			r.Run(ctx)
			return
		}
		whileLeader(ctx, replicated, signalsElection, r.Run, log)
	}()
	return func() { cancel(); wg.Wait() }
}
