// Command tokengate-load drives a real tokengate process with steady load for soak runs and
// throughput measurements: renewals over keep-alive HTTP, logouts that must be honoured, and
// key rotations, while sampling the process's memory and goroutines. With -memory it measures
// resident memory per live session instead.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
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
	memSizes := flag.String("memory", "", "measure RSS per live session instead of soaking: comma-separated session counts (e.g. 100000,1000000)")
	memWorkers := flag.Int("memory-workers", 2*runtime.NumCPU(), "concurrent sessions being created in -memory mode")
	publish := flag.String("publish", "", "with -memory: the page whose <!-- bench-memory --> block is rewritten")
	command := flag.String("command", "go run ./cmd/tokengate-load -memory …", "with -memory: the command quoted in the published block")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *memSizes != "" {
		var sizes []int
		for _, f := range strings.Split(*memSizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				fmt.Fprintln(os.Stderr, "tokengate-load: -memory wants positive session counts, got", f)
				os.Exit(2)
			}
			sizes = append(sizes, n)
		}
		res, err := memory(ctx, o.bin, sizes, *memWorkers)
		if err == nil {
			res.Command = *command
			err = res.save(o.out, *publish)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "tokengate-load:", err)
			os.Exit(2)
		}
		fmt.Print(res.Markdown())
		return
	}
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
