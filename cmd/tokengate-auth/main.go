// Command tokengate-auth verifies tokengate's internal tokens for services in any language:
// next to nginx, Traefik or Envoy it answers their auth subrequests (mode: auth), or it stands
// in front of one service as a reverse proxy (mode: proxy). Like a Go service importing the
// verifier package, it follows the service's Shared Signals stream, so a logged-out session's
// tokens are refused within about a second instead of at their exp. See docs/forward-auth.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tokengate/tokengate/internal/forwardauth"
)

const usage = `tokengate-auth: verify tokengate's internal tokens in front of a service in any language.

Usage:
  tokengate-auth serve --config FILE          answer auth subrequests, or proxy (mode: proxy)
  tokengate-auth check-config --config FILE   validate a configuration file and exit
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "tokengate-auth:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("a command is required")
	}
	cmd := args[0]
	if cmd != "serve" && cmd != "check-config" {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *path == "" {
		return fmt.Errorf("%s: --config FILE is required", cmd)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", cmd, fs.Args())
	}
	cfg, err := forwardauth.Load(*path)
	if err != nil {
		return err
	}
	if cmd == "check-config" {
		fmt.Fprintln(stdout, "configuration is valid")
		return nil
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return forwardauth.Run(ctx, cfg, log)
}
