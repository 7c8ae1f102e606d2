// Command lb-health probes the load balancer's backends and keeps the marker files nginx reads
// to leave a failed backend out of rotation without a reload (see internal/lbhealth).
//
//	lb-health --dir /var/lib/hastack-lb --backend web1=http://10.231.80.11/healthz.php --backend web2=...
//	lb-health check [URL]   the container's healthcheck: GET URL (default http://127.0.0.1:9797/healthz)
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/lbhealth"
)

type backendFlags []lbhealth.Backend

func (b *backendFlags) String() string { return fmt.Sprint(*b) }
func (b *backendFlags) Set(s string) error {
	for _, one := range strings.Fields(s) {
		be, err := lbhealth.ParseBackend(one)
		if err != nil {
			return err
		}
		*b = append(*b, be)
	}
	return nil
}

// check is the healthcheck: exit 0 when the checker answers 200 (it has probed every backend).
func check(url string) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lb-health check:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "lb-health check:", resp.Status)
		return 1
	}
	return 0
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check" {
		url := "http://127.0.0.1:9797/healthz"
		if len(os.Args) > 2 {
			url = os.Args[2]
		}
		os.Exit(check(url))
	}
	var backends backendFlags
	fs := flag.NewFlagSet("lb-health", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: lb-health --dir DIR --backend NAME=URL [--backend NAME=URL ...] [flags]")
		fmt.Fprintln(fs.Output(), "       lb-health check [URL]   (healthcheck: GET URL, default http://127.0.0.1:9797/healthz)")
		fmt.Fprintln(fs.Output(), "Probes each backend's URL (GET, 200 = healthy) and keeps DIR/NAME.down for those out of rotation.")
		fs.PrintDefaults()
	}
	dir := fs.String("dir", "/var/lib/hastack-lb", "directory of the marker files, shared with nginx")
	fs.Var(&backends, "backend", "NAME=URL to probe (repeatable; several separated by spaces also work)")
	interval := fs.Duration("interval", 500*time.Millisecond, "time between two probes of a backend")
	timeout := fs.Duration("timeout", time.Second, "bound of one probe, answer included")
	rise := fs.Int("rise", 2, "consecutive good probes to come back into rotation")
	fall := fs.Int("fall", 1, "consecutive failed probes to leave rotation, the last refused or answered wrongly")
	slowFall := fs.Int("slow-fall", 2, "consecutive failed probes to leave rotation, the last without an answer within --timeout")
	listen := fs.String("listen", "127.0.0.1:9797", "address of /healthz and /status (JSON); empty: none")
	fs.Parse(os.Args[1:])

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c, err := lbhealth.New(*dir, backends, lbhealth.Options{Interval: *interval, Timeout: *timeout, Rise: *rise, Fall: *fall, SlowFall: *slowFall, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "lb-health:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *listen != "" {
		srv := &http.Server{Addr: *listen, Handler: c, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 8 << 10}
		go func() {
			if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
				log.Error("serve status", "err", err)
				stop()
			}
		}()
		defer srv.Close()
	}
	log.Info("probing", "backends", len(backends), "interval", *interval, "timeout", *timeout, "dir", *dir)
	if err := c.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "lb-health:", err)
		os.Exit(1)
	}
}
