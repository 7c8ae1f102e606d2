// Package dockerproxy owns the read-only Docker Engine API proxy that cAdvisor talks to
// instead of the Docker socket: which calls pass (allow.go: GET and HEAD of the few endpoints
// cAdvisor's docker provider calls, in their clean form), what the answers lose on the way
// (containers' environment variables), and the limits of its server (NewServer) and its
// health check (Check). Everything else gets 403 before it reaches the engine.
package dockerproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultUpstream is the engine's socket.
const DefaultUpstream = "unix:///var/run/docker.sock"

// maxInspect bounds the answer of /containers/{id}/json read to strip it; a container's
// inspect is a few KiB.
const maxInspect = 8 << 20

// forwardedHeaders are the only request headers sent on to the engine.
var forwardedHeaders = []string{"Accept", "User-Agent", "Content-Type"}

// Options configure the proxy.
type Options struct {
	// Upstream is the engine's socket: unix:///path or /path. Default DefaultUpstream.
	Upstream string
	// Log gets one line per refused or failed request. Default slog.Default().
	Log *slog.Logger
}

// New returns the proxy's handler.
func New(opts Options) (http.Handler, error) {
	if opts.Upstream == "" {
		opts.Upstream = DefaultUpstream
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	socket, err := socketPath(opts.Upstream)
	if err != nil {
		return nil, err
	}
	p := &proxy{log: opts.Log}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	p.rp = &httputil.ReverseProxy{
		Rewrite: rewrite,
		Transport: &http.Transport{
			// No Proxy: the environment's HTTP_PROXY must not redirect engine calls.
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, "unix", socket)
			},
			MaxIdleConns:          8,
			IdleConnTimeout:       30 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			DisableCompression:    true,
		},
		ModifyResponse: modifyResponse,
		ErrorHandler:   p.failed,
	}
	return p, nil
}

// socketPath returns the path of the socket that upstream names.
func socketPath(upstream string) (string, error) {
	p := upstream
	if rest, ok := strings.CutPrefix(upstream, "unix://"); ok {
		p = rest
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("upstream %q: want the engine's unix socket, e.g. %s", upstream, DefaultUpstream)
	}
	return filepath.Clean(p), nil
}

type proxy struct {
	rp  *httputil.ReverseProxy
	log *slog.Logger
}

type forwardKey struct{}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fwd, err := allow(r.Method, r.RequestURI)
	if err == nil && (r.ContentLength != 0 || len(r.TransferEncoding) > 0) {
		err = refusal("request bodies are not accepted")
	}
	if err != nil {
		p.log.Warn("refused", "method", r.Method, "path", shorten(r.RequestURI), "remote", r.RemoteAddr, "reason", err.Error())
		writeError(w, http.StatusForbidden, err.Error())
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), forwardKey{}, fwd)))
}

// rewrite builds the engine's request from the checked one only: cleaned path, re-encoded
// query, no body, and only the headers in forwardedHeaders.
func rewrite(pr *httputil.ProxyRequest) {
	fwd := pr.In.Context().Value(forwardKey{}).(forward)
	pr.Out.URL = &url.URL{Scheme: "http", Host: "docker", Path: fwd.path, RawQuery: fwd.query}
	pr.Out.Host = "docker"
	h := http.Header{}
	for _, k := range forwardedHeaders {
		if v := pr.In.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	pr.Out.Header = h
	pr.Out.Body = http.NoBody
	pr.Out.ContentLength = 0
	pr.Out.TransferEncoding = nil
	pr.Out.Trailer = nil
}

var (
	errTooLarge = errors.New("engine's answer too large to filter")
	errNotJSON  = errors.New("engine's answer is not a JSON object")
)

// modifyResponse removes Config.Env from a container's inspect answer.
func modifyResponse(resp *http.Response) error {
	fwd := resp.Request.Context().Value(forwardKey{}).(forward)
	if !fwd.endpoint.stripEnv || resp.Request.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
		return nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxInspect+1))
	if err != nil {
		return fmt.Errorf("read engine's answer: %w", err)
	}
	if len(b) > maxInspect {
		return errTooLarge
	}
	out, err := stripEnv(b)
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	resp.Header.Del("Content-Encoding")
	return nil
}

// stripEnv decodes an inspect answer, deletes Config.Env and encodes it again. Numbers keep
// their text (json.Number), so sizes and limits do not lose precision.
func stripEnv(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil || doc == nil {
		return nil, errNotJSON
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errNotJSON // trailing data
	}
	if cfg, ok := doc["Config"].(map[string]any); ok {
		delete(cfg, "Env")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode filtered answer: %w", err)
	}
	return buf.Bytes(), nil
}

// failed answers 502 when the engine cannot be reached or its answer cannot be filtered.
func (p *proxy) failed(w http.ResponseWriter, r *http.Request, err error) {
	msg := "cannot reach the Docker engine"
	switch {
	case errors.Is(err, errTooLarge), errors.Is(err, errNotJSON):
		msg = err.Error()
	case errors.Is(err, context.Canceled):
		msg = "request cancelled"
	}
	p.log.Error("upstream failed", "method", r.Method, "path", shorten(r.RequestURI), "remote", r.RemoteAddr, "err", err)
	writeError(w, http.StatusBadGateway, msg)
}

// writeError answers as the engine does: {"message": "..."}.
func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Message string `json:"message"`
	}{"docker-proxy: " + msg})
}

// shorten bounds what a log line repeats of a client's request target.
func shorten(s string) string {
	const max = 256
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
