// Command tokengate-bench measures tokengate side by side with the per-request introspection it
// replaces, in one run on one machine, against a real Keycloak: introspection baseline, local
// verification, exchange (cold and warm), renewal against raw signing and Keycloak's own refresh
// grant, the revocation window after a Keycloak logout, and the store at scale. It writes JSON,
// a markdown table and a PNG, and (with -publish) rewrites its section of docs/performance.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type options struct {
	quick       bool
	bin         string
	out         string
	publish     bool
	doc         string
	png         string
	keycloakURL string // reuse a running Keycloak (its bff back-channel URL must be gatewayAddr)
	kcPort      int
	gatewayAddr string
	command     string
	render      bool
	only        string
}

// plan is how long and how much each part runs.
type plan struct {
	dur          time.Duration // per throughput measurement
	coldTokens   int           // cold exchanges
	sessions     int           // revocation-window sessions
	scaleSizes   []int         // recorded logouts
	lookups      int           // store lookups per size
	kcWorkers    int           // Keycloak refresh grant concurrency
	renewWorkers int           // renewal concurrency
}

func (o options) plan() plan {
	if o.quick {
		return plan{dur: 2 * time.Second, coldTokens: 40, sessions: 20, scaleSizes: []int{10_000, 100_000},
			lookups: 20_000, kcWorkers: 8, renewWorkers: 16}
	}
	return plan{dur: 10 * time.Second, coldTokens: 400, sessions: 200, scaleSizes: []int{10_000, 100_000, 1_000_000},
		lookups: 200_000, kcWorkers: 8, renewWorkers: 16}
}

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", os.Getenv("BENCH") == "quick", "quick mode (CI): short runs, fewer sessions, scale up to 100k")
	flag.StringVar(&o.bin, "bin", "bin/tokengate", "tokengate binary to measure")
	flag.StringVar(&o.out, "out", "results/bench", "folder for JSON, markdown, profiles")
	flag.BoolVar(&o.publish, "publish", false, "rewrite the -doc section between <!-- bench --> markers and the -png plot")
	flag.StringVar(&o.doc, "doc", "docs/performance.md", "the page to rewrite with -publish")
	flag.StringVar(&o.png, "png", "docs/bench.png", "where -publish puts the plot")
	flag.StringVar(&o.keycloakURL, "keycloak-url", "", "use this running Keycloak instead of starting one (realm demo; bff's back-channel logout URL must point at -gateway)")
	flag.IntVar(&o.kcPort, "keycloak-port", 18380, "port of the Keycloak this tool starts")
	flag.StringVar(&o.gatewayAddr, "gateway", "127.0.0.1:18643", "listen address of the tokengate under test (Keycloak posts back-channel logouts here)")
	flag.StringVar(&o.command, "command", "make bench", "the command to quote in the results")
	flag.BoolVar(&o.render, "render", false, "measure nothing: render markdown, PNG (and with -publish the -doc section) again from the run saved in -out")
	flag.StringVar(&o.only, "only", "", "measure only this part and print its rows (writes -out, never publishes): delegation (with the renewal and raw verification it is compared with)")
	flag.Parse()
	if o.only != "" && (o.only != "delegation" || o.publish || o.render) {
		fmt.Fprintln(os.Stderr, "tokengate-bench: -only takes delegation, without -publish or -render")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "tokengate-bench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o options) error {
	if o.render {
		r, err := loadResults(o.out)
		if err != nil {
			return err
		}
		return r.write(o)
	}
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("%s: %w (run make build)", o.bin, err)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tokengate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	kcURL := o.keycloakURL
	if kcURL == "" {
		if err := portFree(o.gatewayAddr); err != nil {
			return fmt.Errorf("gateway address: %w", err)
		}
		stopKC, url, err := startKeycloak(ctx, o, filepath.Join(work, "keycloak"))
		if stopKC != nil {
			defer stopKC()
		}
		if err != nil {
			return err
		}
		kcURL = url
	}
	if n := runtime.NumCPU(); n > 1 {
		var others []int
		for c := range n {
			if c != serverCPU() {
				others = append(others, c)
			}
		}
		if err := pinSelf(others); err != nil {
			return err
		}
	}
	b := &bench{o: o, p: o.plan(), work: work, kc: newKeycloak(kcURL), res: newResults(o)}
	b.res.Plan.Seconds, b.res.Plan.ColdTokens, b.res.Plan.Sessions = b.p.dur.Seconds(), b.p.coldTokens, b.p.sessions
	b.res.Plan.RenewWorkers, b.res.Plan.KCWorkers = b.p.renewWorkers, b.p.kcWorkers
	if err := b.all(ctx); err != nil {
		return err
	}
	if o.only != "" {
		if err := b.res.save(o.out); err != nil {
			return err
		}
		fmt.Print(b.res.onlyMarkdown())
		return nil
	}
	return b.res.write(o)
}

func portFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// startKeycloak runs scripts/keycloak.sh start with full JIT (grant-heavy benchmark) and the
// back-channel logout URL of the bff client pointing at the gateway under test. The returned
// function stops it; it is non-nil whenever a start was attempted.
func startKeycloak(ctx context.Context, o options, runDir string) (func(), string, error) {
	env := append(os.Environ(),
		fmt.Sprintf("KC_PORT=%d", o.kcPort), "KC_RUN_DIR="+runDir, "KC_JIT=full",
		"TOKENGATE_URL=http://"+o.gatewayAddr)
	stopKC := func() {
		cmd := exec.Command("scripts/keycloak.sh", "stop")
		cmd.Env, cmd.Stdout, cmd.Stderr = env, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			logf("keycloak stop: %v", err)
		}
	}
	logf("starting Keycloak on port %d (KC_JIT=full); back-channel logout → http://%s", o.kcPort, o.gatewayAddr)
	cmd := exec.CommandContext(ctx, "scripts/keycloak.sh", "start")
	cmd.Env, cmd.Stderr = env, os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return stopKC, "", fmt.Errorf("scripts/keycloak.sh start: %w", err)
	}
	url := strings.TrimSpace(string(out))
	if i := strings.LastIndex(url, "\n"); i >= 0 {
		url = url[i+1:]
	}
	if !strings.HasPrefix(url, "http") {
		return stopKC, "", errors.New("scripts/keycloak.sh start printed no URL")
	}
	return stopKC, url, nil
}
