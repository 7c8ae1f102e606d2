// Command lbbench measures HTTP(S) paths side by side in one run and prints a table: requests/s,
// p50, p99 and failed requests of each path, and its throughput as a ratio of the first (the
// baseline). scripts/bench runs it on the stack's network against nginx and one backend
// directly, and again while a backend stops and starts.
//
//	lbbench -c 50 -d 20s direct=http://web1/ nginx=https://nginx/
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hastack/hastack/internal/loadgen"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("lbbench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: lbbench [flags] NAME=URL [NAME=URL...]\n\nThe first NAME=URL is the baseline of the ratio column.")
		fs.PrintDefaults()
	}
	concurrency := fs.Int("c", 50, "concurrent clients per path")
	duration := fs.Duration("d", 20*time.Second, "duration per path")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured load before each path")
	header := fs.String("server-header", "X-Served-By", "response header naming the backend")
	noHeader := fs.Bool("no-header", false, "leave out the table's header line (rows of one table from several runs)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	client := &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // the stack's certificate is self-signed
			MaxIdleConnsPerHost: *concurrency,
		},
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	if !*noHeader {
		fmt.Fprintln(tw, "path\trequests\treq/s\tp50 ms\tp99 ms\tslowest ms\tfailed\tvs baseline\tserved by\t")
	}
	var baseline float64
	for i, arg := range fs.Args() {
		name, url, ok := strings.Cut(arg, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "lbbench: %q: want NAME=URL\n", arg)
			return 2
		}
		fmt.Fprintf(os.Stderr, "lbbench: %s: %d clients, %v (+%v warm-up) against %s\n", name, *concurrency, *duration, *warmup, url)
		if *warmup > 0 {
			if _, err := loadgen.Run(ctx, loadgen.Options{URL: url, Concurrency: *concurrency, Duration: *warmup, Client: client}); err != nil {
				fmt.Fprintln(os.Stderr, "lbbench:", err)
				return 1
			}
		}
		res, err := loadgen.Run(ctx, loadgen.Options{URL: url, Concurrency: *concurrency, Duration: *duration,
			Client: client, ServerHeader: *header})
		if err != nil {
			fmt.Fprintln(os.Stderr, "lbbench:", err)
			return 1
		}
		rps := res.RequestsPerSecond()
		if i == 0 {
			baseline = rps
		}
		ratio := "-"
		if baseline > 0 {
			ratio = fmt.Sprintf("%.2f", rps/baseline)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%d\t%s\t%s\t\n", name, res.Requests, rps,
			ms(res.Percentile(0.50)), ms(res.Percentile(0.99)), ms(res.Percentile(1)), len(res.Failures), ratio, served(res.Served))
		for j, f := range res.Failures {
			if j == 5 {
				fmt.Fprintf(os.Stderr, "lbbench: %s: ... %d more failures\n", name, len(res.Failures)-5)
				break
			}
			fmt.Fprintf(os.Stderr, "lbbench: %s: failure at %s: %s\n", name, f.At.Format("15:04:05.000"), f.Err)
		}
	}
	tw.Flush()
	return 0
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func served(m map[string]int) string {
	var parts []string
	for _, k := range []string{"Webserver1", "Webserver2"} {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}
