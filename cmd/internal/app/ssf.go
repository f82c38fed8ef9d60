package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/ssf"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/keys"
)

// newTransmitter makes the Shared Signals transmitter on the store's event log (which the
// issuer appends to with every recorded revocation). st should be the backend itself, so that
// the transmitter sees its optional ssf.EventsNotifier.
func newTransmitter(ctx context.Context, cfg *config.Config, st store.Store, km *keys.Manager,
	reg prometheus.Registerer, now func() time.Time, log *slog.Logger) (*ssf.Transmitter, error) {
	var streams []ssf.StreamConfig
	for _, s := range cfg.SSF.Streams {
		streams = append(streams, ssf.StreamConfig{ID: s.ID, Audience: s.Audience, Description: s.Description,
			SecretSHA256: s.SecretHash()})
	}
	var receivers []ssf.ReceiverConfig
	for _, r := range cfg.SSF.Receivers {
		receivers = append(receivers, ssf.ReceiverConfig{ID: r.ID, Audience: r.Audience, SecretSHA256: r.SecretHash()})
	}
	return ssf.New(ctx, ssf.Config{
		Issuer: cfg.Issuer, PollTimeout: cfg.SSF.PollTimeout.D(), Retention: cfg.SSF.Retention.D(),
		Streams: streams, Receivers: receivers, InactivityTimeout: cfg.SSF.InactivityTimeout.D(),
		Registerer: reg, Logger: log, Now: now,
	}, st, km)
}

// runTransmitter runs tx until ctx ends or the returned stop is called; stop returns once the
// last acknowledgements are written (call it before the store closes).
func runTransmitter(ctx context.Context, tx *ssf.Transmitter) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tx.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}
