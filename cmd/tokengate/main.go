// Command tokengate runs the gateway and its operator tools.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/issuer"
)

const usage = `tokengate: trade Keycloak access tokens for short-lived internal tokens that die at logout.

Usage:
  tokengate serve --config FILE     run the gateway
  tokengate check-config --config FILE
                                    validate a configuration file and exit
  tokengate hash-secret [--stdin]   print a new client secret and its SHA-256 for the config
                                    (--stdin: hash a secret read from standard input instead)
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "tokengate:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("a command is required")
	}
	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("config", "", "configuration file (YAML)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *path == "" {
			return errors.New("serve: --config FILE is required")
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("serve: unexpected arguments %q", fs.Args())
		}
		cfg, err := config.Load(*path)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stderr)
	case "check-config":
		fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("config", "", "configuration file (YAML)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *path == "" {
			return errors.New("check-config: --config FILE is required")
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("check-config: unexpected arguments %q", fs.Args())
		}
		cfg, err := config.Load(*path)
		if err != nil {
			return err
		}
		if _, err := cfg.KEK(os.Getenv); err != nil { // serve reads it at start: the same checks
			return err
		}
		for _, w := range cfg.Warnings() {
			fmt.Fprintln(stderr, "warning:", w)
		}
		fmt.Fprintln(stdout, "configuration is valid")
		return nil
	case "hash-secret":
		fs := flag.NewFlagSet("hash-secret", flag.ContinueOnError)
		fs.SetOutput(stderr)
		fromStdin := fs.Bool("stdin", false, "hash the secret given on standard input")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("hash-secret: unexpected arguments %q", fs.Args())
		}
		return hashSecret(stdin, stdout, *fromStdin)
	case "keys", "sessions", "subjects":
		return adminCommand(ctx, args[0], args[1:], stdout, stderr)
	case "gen-kek":
		if len(args) > 1 {
			return fmt.Errorf("gen-kek: unexpected arguments %q", args[1:])
		}
		return genKEK(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage+"\n"+adminUsage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func hashSecret(stdin io.Reader, stdout io.Writer, fromStdin bool) error {
	var secret string
	if fromStdin {
		b, err := io.ReadAll(io.LimitReader(stdin, 4096))
		if err != nil {
			return fmt.Errorf("hash-secret: read: %w", err)
		}
		secret = strings.TrimRight(string(b), "\r\n")
		if len(secret) < issuer.MinSecretLength {
			return fmt.Errorf("hash-secret: the secret is %d characters; at least %d are required", len(secret), issuer.MinSecretLength)
		}
	} else {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		secret = base64.RawURLEncoding.EncodeToString(b)
		fmt.Fprintf(stdout, "secret:        %s\n", secret)
	}
	h := sha256.Sum256([]byte(secret))
	fmt.Fprintf(stdout, "secret_sha256: %s\n", hex.EncodeToString(h[:]))
	return nil
}
