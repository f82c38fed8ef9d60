package main

import (
	"context"
	"io"
	"os/signal"
	"syscall"

	"github.com/tokengate/tokengate/cmd/internal/app"
	"github.com/tokengate/tokengate/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// serve runs the gateway until SIGINT or SIGTERM, then drains requests and closes the store.
func serve(ctx context.Context, cfg *config.Config, logOut io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := app.NewLogger(cfg.LogLevel, logOut)
	a, err := app.New(ctx, *cfg, append([]app.Option{app.WithLogger(log), app.WithVersion(version)}, testOptions(log)...)...)
	if err != nil {
		return err
	}
	defer func() {
		if err := a.Close(); err != nil {
			log.Error("closing store", "error", err.Error())
		}
	}()
	return a.Run(ctx)
}
