// Package api is the agent's HTTP interface: /healthz, /metrics, the status and sync API that
// `agent status|sync|diff` use, and the push webhook.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hastack/hastack/internal/alerts"
	agentsync "github.com/hastack/hastack/internal/sync"
	"github.com/hastack/hastack/internal/webhook"
)

// Reconciler is what the API exposes of the reconcile loop.
type Reconciler interface {
	Status(ctx context.Context) agentsync.Status
	Trigger(reason string)
	Plan(ctx context.Context, commit string) (agentsync.Revision, agentsync.Plan, error)
}

// Options configure the handler.
type Options struct {
	// Ref is the followed ref ("main", "refs/heads/main", a tag); pushes to other refs are
	// acknowledged and ignored.
	Ref string
	// WebhookSecret authenticates webhooks; empty disables the endpoint (404).
	WebhookSecret []byte
	// APIToken, when set, is required as a bearer token by POST /api/v1/sync.
	APIToken string
	Gatherer prometheus.Gatherer
	Log      *slog.Logger
	// Alerts returns the agent's alerts that fire now, shown in the status; nil: none.
	Alerts func() []alerts.Firing
}

// StatusResponse is GET /api/v1/status: the reconcile loop's status and the agent's firing
// alerts.
type StatusResponse struct {
	agentsync.Status
	Alerts []alerts.Firing `json:"alerts"`
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
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, req *http.Request) {
		resp := StatusResponse{Status: r.Status(req.Context()), Alerts: []alerts.Firing{}}
		if o.Alerts != nil {
			resp.Alerts = o.Alerts()
		}
		writeJSON(w, http.StatusOK, resp)
	})
	mux.HandleFunc("POST /api/v1/sync", func(w http.ResponseWriter, req *http.Request) {
		if o.APIToken != "" && !bearerOK(req, o.APIToken) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token (api.token_file)"})
			return
		}
		r.Trigger("api")
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "sync triggered"})
	})
	mux.HandleFunc("GET /api/v1/diff", func(w http.ResponseWriter, req *http.Request) {
		rev, plan, err := r.Plan(req.Context(), req.URL.Query().Get("commit"))
		if err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"commit": rev.Commit, "subject": rev.Subject, "plan": plan})
	})
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
	return mux
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
