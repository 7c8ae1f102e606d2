// Command docker-proxy serves a read-only subset of the Docker Engine API: the calls
// cAdvisor's docker provider makes, with containers' environment variables removed. It holds
// the engine's socket so that cAdvisor does not (see internal/dockerproxy).
//
//	docker-proxy [--listen ADDR] [--upstream unix:///var/run/docker.sock]
//	docker-proxy healthcheck [--listen ADDR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/hastack/hastack/internal/dockerproxy"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // serving failed, or the health check did
	exitUsage = 2 // bad command line
)

const usage = `docker-proxy: a read-only Docker Engine API proxy for cAdvisor

Usage:
  docker-proxy [--listen ADDR] [--upstream URL]   serve (GET/HEAD of /_ping, /version, /info,
                                                  /containers/json, /containers/{id}/json only)
  docker-proxy healthcheck [--listen ADDR]        GET /_ping through the proxy; exit 0 if the engine answers OK

Flags:
`

const defaultListen = ":2375"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "healthcheck" {
		return runHealthcheck(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("docker-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", defaultListen, "address to serve the proxy on")
	upstream := fs.String("upstream", dockerproxy.DefaultUpstream, "the Docker engine's socket")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	log := newLogger(stderr)
	if err := serve(ctx, *listen, *upstream, log); err != nil {
		log.Error("docker-proxy", "err", err)
		return exitError
	}
	return exitOK
}

// parse parses args into fs (named after its command): ok when the command should run; else
// the exit code (--help to stdout: 0; a bad flag or a stray argument: 2).
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q (see --help)\n", fs.Name(), fs.Arg(0))
		return exitUsage, false
	}
	return exitOK, true
}

// serve runs the proxy until ctx ends, then lets running requests finish for a few seconds.
func serve(ctx context.Context, listen, upstream string, log *slog.Logger) error {
	h, err := dockerproxy.New(dockerproxy.Options{Upstream: upstream, Log: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (change --listen)", listen, err)
	}
	srv := dockerproxy.NewServer(h)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "upstream", upstream)
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("docker-proxy healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", defaultListen, "the proxy's listen address (an unspecified host means loopback)")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if err := dockerproxy.Check(ctx, *listen); err != nil {
		fmt.Fprintf(stderr, "docker-proxy healthcheck: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, "OK")
	return exitOK
}

// newLogger logs JSON in a container and text on a terminal.
func newLogger(w io.Writer) *slog.Logger {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}
