package dockerproxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Server limits. cAdvisor's client gives every call 10 s; the engine answers these calls in
// milliseconds, /info in at most a few seconds.
const (
	headerTimeout  = 5 * time.Second
	readTimeout    = 10 * time.Second // no bodies: the headers are the whole request
	writeTimeout   = 60 * time.Second
	idleTimeout    = 120 * time.Second // cAdvisor keeps its connections between housekeeping rounds
	maxHeaderBytes = 16 << 10
)

// NewServer returns an HTTP server for h that times out slow and idle clients and bounds
// request headers. (internal/api's NewServer is the agent's: its write timeout follows the
// agent's longest handler, and importing it would link the agent into this binary.)
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: headerTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// "OPTIONS *" reaches the handler (and is refused) instead of net/http's own answer.
		DisableGeneralOptionsHandler: true,
	}
}

// Check asks the proxy listening on listen (":2375", "0.0.0.0:2375", "host:port") for
// GET /_ping and returns nil when the engine answered OK through it. An unspecified host means
// this machine's loopback. It is the container's health check: the image has no curl.
func Check(ctx context.Context, listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("check %s: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	target := "http://" + net.JoinHostPort(host, port) + "/_ping"
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("check %s: %w", target, err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("check %s: %w", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "OK" {
		return fmt.Errorf("check %s: %s %q", target, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
