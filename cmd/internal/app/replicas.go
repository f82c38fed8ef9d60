package app

// Store selection and what several replicas sharing etcd need: key reloads when another
// replica changed the key document, and the jobs one elected leader runs for all (whileLeader).

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/store/bolt"
	etcdstore "github.com/tokengate/tokengate/internal/store/etcd"
	"github.com/tokengate/tokengate/keys"
)

// keyScheduleElection names the etcd election whose leader runs the key schedule.
const keyScheduleElection = "key-schedule"

// openStore opens the configured backend. replicated is the etcd store when several replicas
// share it, nil for bolt.
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (st store.Store, replicated *etcdstore.Store, err error) {
	if cfg.Store.Backend != config.BackendEtcd {
		b, err := bolt.Open(filepath.Join(cfg.DataDir, "tokengate.db"), bolt.Options{})
		if err != nil {
			return nil, nil, err
		}
		return b, nil, nil
	}
	e := cfg.Store.Etcd
	ec := etcdstore.Config{
		Endpoints: e.Endpoints, Prefix: e.Prefix, Username: e.Username, Password: e.Password,
		DialTimeout: e.DialTimeout.D(), MaxStaleness: cfg.Store.MaxStaleness.D(),
		ElectionTTL: e.ElectionTTL.D(), Logger: log,
	}
	if e.CertFile != "" || e.CAFile != "" {
		if ec.TLS, err = etcdstore.TLSConfig(e.CertFile, e.KeyFile, e.CAFile); err != nil {
			return nil, nil, fmt.Errorf("store.etcd: %w", err)
		}
	}
	es, err := etcdstore.Open(ctx, ec)
	if err != nil {
		return nil, nil, fmt.Errorf("store.etcd: %w", err)
	}
	log.Info("store: etcd", "endpoints", e.Endpoints, "prefix", e.Prefix,
		"max_staleness", cfg.Store.MaxStaleness.D().String())
	return es, es, nil
}

// followKeys reloads the key manager whenever the key document changes in etcd (another
// replica's rotation), retrying until the reload succeeds.
func followKeys(ctx context.Context, es *etcdstore.Store, km *keys.Manager, log *slog.Logger) {
	retry := time.NewTimer(0)
	<-retry.C
	for {
		select {
		case <-ctx.Done():
			return
		case <-es.KeysChanged():
		case <-retry.C:
		}
		before := km.ActiveKeyID()
		if err := km.Reload(ctx); err != nil {
			if ctx.Err() == nil {
				log.Error("keys: reload after a change in etcd failed; retrying", "error", err.Error())
				retry.Reset(time.Second)
			}
			continue
		}
		if after := km.ActiveKeyID(); after != before {
			log.Info("keys: reloaded from etcd", "event", "keys_reloaded", "kid", after, "previous_kid", before)
		}
	}
}

// whileLeader runs run only while this replica is the elected leader of election, so one
// replica does the job for all: the key schedule (keyScheduleElection), polling Keycloak's
// Shared Signals stream (signalsElection). A former run has returned before the next starts.
// Leadership is advisory, so each job must be safe when a late former leader runs it once
// more: Tick re-checks inside one atomic UpdateKeys, so keys never rotate twice; a SET
// acknowledged twice or a logout recorded twice (RecordNewRevocation) changes nothing.
func whileLeader(ctx context.Context, es *etcdstore.Store, election string, run func(context.Context), log *slog.Logger) {
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
		log.Info("this replica leads the election", "election", election)
		lctx, cancel := context.WithCancel(ctx)
		stopLeading = cancel
		wg.Add(1)
		go func() { defer wg.Done(); run(lctx) }()
	}
}
