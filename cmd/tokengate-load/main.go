// Command tokengate-load drives a real tokengate process with steady load for soak runs and
// throughput measurements: renewals over keep-alive HTTP, logouts that must be honoured, and
// key rotations, while sampling the process's memory and goroutines.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var o soakOptions
	flag.StringVar(&o.bin, "bin", "bin/tokengate", "tokengate binary to run")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long to run")
	flag.IntVar(&o.sessions, "sessions", 200, "concurrent sessions renewing")
	flag.Float64Var(&o.rate, "rate", 400, "renewals per second in total")
	flag.DurationVar(&o.logoutEvery, "logout-every", time.Second, "one back-channel logout this often")
	flag.IntVar(&o.rotations, "rotations", 2, "key rotations spread over the run (via the admin API)")
	flag.DurationVar(&o.sampleEvery, "sample-every", 5*time.Second, "RSS and goroutine sampling period")
	flag.StringVar(&o.out, "out", "results/soak", "folder for the JSON and markdown results")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := soak(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokengate-load:", err)
		os.Exit(2)
	}
	fmt.Print(res.Markdown())
	if !res.Pass() {
		fmt.Fprintln(os.Stderr, "tokengate-load: soak FAILED (see above)")
		os.Exit(1)
	}
}
