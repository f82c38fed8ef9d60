package main

// Keycloak's Shared Signals stream: one receiver per deployment (the elected leader with
// replicas) records the logouts Keycloak signals on it through the issuer.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/config"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/store"
	etcdstore "github.com/tokengate/tokengate/store/etcd"
	"github.com/tokengate/tokengate/upstream/signals"
)

// signalsElection names the etcd election whose leader polls Keycloak's stream.
const signalsElection = "shared-signals"

// startSignals starts the receiver when upstream.shared_signals is enabled. raw is the backend
// (it keeps the stream id), st the store the issuer uses. stop ends it and waits (call it
// before the store closes).
func startSignals(ctx context.Context, cfg *config.Config, raw store.Store, st store.Store, replicated *etcdstore.Store,
	is *issuer.Issuer, reg prometheus.Registerer, log *slog.Logger) (stop func(), err error) {
	sc := cfg.Upstream.SharedSignals
	if !sc.Enabled {
		return func() {}, nil
	}
	state, ok := raw.(store.ReceiverState)
	if !ok {
		return nil, fmt.Errorf("upstream.shared_signals: the %s store cannot keep the stream id", cfg.Store.Backend)
	}
	var events []string
	for _, e := range sc.Events {
		events = append(events, signals.Events[e])
	}
	rcv, err := signals.New(signals.Config{
		Issuer: cfg.Upstream.Issuer, ClientID: sc.ClientID, ClientSecret: sc.ClientSecret, Events: events,
		PollInterval: sc.PollInterval.D(), MaxAge: 0, HTTPClient: &http.Client{Timeout: cfg.Upstream.Timeout.D()},
		Logger: log, Registerer: reg,
	}, state, st, is)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if replicated == nil {
			rcv.Run(ctx)
			return
		}
		followWhileLeader(ctx, replicated, signalsElection, rcv.Run, log)
	}()
	log.Info("shared signals: receiver started", "client_id", sc.ClientID, "events", sc.Events,
		"poll_interval", sc.PollInterval.D().String(), "replicated", replicated != nil)
	return func() { cancel(); wg.Wait() }, nil
}

// followWhileLeader runs run only while this replica is the elected leader of election, so
// one replica polls for all. Leadership is advisory: a late former leader polling once more is
// safe, since a SET acknowledged twice or a logout recorded twice (RecordNewRevocation) changes
// nothing.
func followWhileLeader(ctx context.Context, es *etcdstore.Store, election string, run func(context.Context), log *slog.Logger) {
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s/%d", host, os.Getpid())
	var (
		wg          sync.WaitGroup
		stopLeading context.CancelFunc = func() {}
	)
	defer func() { stopLeading(); wg.Wait() }()
	for leader := range es.Elect(ctx, election, id) {
		stopLeading()
		wg.Wait()
		if !leader {
			stopLeading = func() {}
			continue
		}
		log.Info("shared signals: this replica polls Keycloak's stream", "election", election)
		lctx, cancel := context.WithCancel(ctx)
		stopLeading = cancel
		wg.Add(1)
		go func() { defer wg.Done(); run(lctx) }()
	}
}
