// Package api is the agent's HTTP interface: /healthz, /metrics, the status and sync API that
// `agent status|sync|diff` use, and the push webhook. /healthz and /metrics are open; every
// /api/v1/ request needs the bearer token and a Host header naming the listen address; the
// webhook is authenticated by its signature. Its servers time out slow clients (NewServer).
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hastack/hastack/internal/alerts"
	"github.com/hastack/hastack/internal/failover"
	agentsync "github.com/hastack/hastack/internal/sync"
	"github.com/hastack/hastack/internal/webhook"
)

// Reconciler is what the API exposes of the reconcile loop.
type Reconciler interface {
	Status(ctx context.Context) agentsync.Status
	Trigger(reason string)
	Redeploy(reason string)
	Plan(ctx context.Context, commit string) (agentsync.Revision, agentsync.Plan, error)
}

// Options configure the handler.
type Options struct {
	// Ref is the followed ref ("main", "refs/heads/main", a tag); pushes to other refs are
	// acknowledged and ignored.
	Ref string
	// WebhookSecret authenticates webhooks; empty disables the endpoint (404).
	WebhookSecret []byte
	// APIToken is the bearer token every /api/v1/* request must carry; empty refuses them all.
	APIToken string
	// Listen is the address the API is served on: /api/v1/* requests must name it (or
	// "localhost" for a loopback or wildcard address) in their Host header, so a web page
	// whose name rebinds to this host's address cannot reach the API (DNS rebinding).
	Listen   string
	Gatherer prometheus.Gatherer
	Log      *slog.Logger
	// Alerts returns the agent's alerts that fire now, shown in the status; nil: none.
	Alerts func() []alerts.Firing
	// Database returns the database watch's last view; nil (or a nil func): no watch.
	Database func() *failover.Report
}

// StatusResponse is GET /api/v1/status: the reconcile loop's status and the agent's firing
// alerts.
type StatusResponse struct {
	agentsync.Status
	Alerts   []alerts.Firing  `json:"alerts"`
	Database *failover.Report `json:"database,omitempty"`
}

// MetricsHandler serves /metrics and /healthz only: for an address other programs reach (the
// stack's Prometheus through the Docker bridge) without the API and the webhook.
func MetricsHandler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return mux
}

// Handler serves the API.
func Handler(r Reconciler, o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	if o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.Handle("GET /api/v1/status", o.guard(func(w http.ResponseWriter, req *http.Request) {
		resp := StatusResponse{Status: r.Status(req.Context()), Alerts: []alerts.Firing{}}
		if o.Alerts != nil {
			resp.Alerts = o.Alerts()
		}
		if o.Database != nil {
			resp.Database = o.Database()
		}
		writeJSON(w, http.StatusOK, resp)
	}))
	mux.Handle("POST /api/v1/sync", o.guard(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Query().Get("redeploy") {
		case "":
			r.Trigger("api")
		case "true", "1":
			r.Redeploy("api: redeploy")
		default:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "redeploy: want true or 1"})
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "sync triggered"})
	}))
	mux.Handle("GET /api/v1/diff", o.guard(func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), diffTimeout)
		defer cancel()
		rev, plan, err := r.Plan(ctx, req.URL.Query().Get("commit"))
		switch {
		case errors.Is(err, agentsync.ErrInvalidCommit):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error() + ": give a full commit id (git rev-parse COMMIT), or none for the followed ref"})
			return
		case errors.Is(err, agentsync.ErrBusy):
			w.Header().Set("Retry-After", "5")
			writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": err.Error()})
			return
		case err != nil:
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"commit": rev.Commit, "subject": rev.Subject, "plan": plan})
	}))
	mux.HandleFunc("POST /webhook", func(w http.ResponseWriter, req *http.Request) {
		if len(o.WebhookSecret) == 0 {
			http.NotFound(w, req)
			return
		}
		push, err := webhook.Verify(req, o.WebhookSecret)
		switch {
		case errors.Is(err, webhook.ErrUnauthorized):
			o.Log.Warn("webhook refused", "remote", req.RemoteAddr, "err", err)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "signature or token missing or wrong"})
			return
		case errors.Is(err, webhook.ErrIgnored):
			writeJSON(w, http.StatusAccepted, map[string]string{"status": "ignored: not a push"})
			return
		case errors.Is(err, webhook.ErrTooLarge):
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": err.Error()})
			return
		case err != nil:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if !refMatches(push.Ref, o.Ref) {
			writeJSON(w, http.StatusAccepted, map[string]string{"status": "ignored: push to " + push.Ref})
			return
		}
		o.Log.Info("webhook: push", "provider", push.Provider, "ref", push.Ref, "after", push.After)
		r.Trigger("webhook")
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "sync triggered"})
	})
	// The webhook reads at most its own limit; nothing else reads a body at all.
	return http.MaxBytesHandler(mux, webhook.MaxBodyBytes+1)
}

// diffTimeout bounds one diff (a fetch, an export, Compose reading the project).
const diffTimeout = 2 * time.Minute

// guard lets a request reach an /api/v1/ handler only when it names the listen address in
// its Host header and carries the bearer token.
func (o Options) guard(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !hostAllowed(req.Host, o.Listen) {
			writeJSON(w, http.StatusMisdirectedRequest, map[string]string{"error": "the API answers only to its listen address (" + o.Listen + ") or localhost in the Host header"})
			return
		}
		if o.APIToken == "" || !bearerOK(req, o.APIToken) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hastack-agent"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token: the agent's token is in api.token_file, or <state_dir>/api-token by default; run the CLI where it can read it (docker exec hastack-agent agent ...)"})
			return
		}
		h(w, req)
	})
}

// hostAllowed reports whether a request's Host names the listen address: the same IP (any IP
// when listening on all addresses), or localhost when that address is a loopback or wildcard
// one. A DNS name never matches, which is what defeats DNS rebinding.
func hostAllowed(host, listen string) bool {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	lhost, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	lip, _ := netip.ParseAddr(lhost)
	wildcard := lhost == "" || lip.IsUnspecified()
	if strings.EqualFold(name, "localhost") {
		return wildcard || lip.IsLoopback() || strings.EqualFold(lhost, "localhost")
	}
	ip, err := netip.ParseAddr(name)
	if err != nil {
		return false
	}
	if wildcard {
		return true
	}
	if strings.EqualFold(lhost, "localhost") {
		return ip.IsLoopback()
	}
	return ip.Unmap() == lip.Unmap()
}

// refMatches reports whether a pushed ref is the followed one. A pinned commit follows no ref.
func refMatches(pushed, followed string) bool {
	switch {
	case pushed == followed:
		return true
	case strings.HasPrefix(followed, "refs/"):
		return false
	default:
		return pushed == "refs/heads/"+followed || pushed == "refs/tags/"+followed
	}
}

func bearerOK(req *http.Request, token string) bool {
	got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
