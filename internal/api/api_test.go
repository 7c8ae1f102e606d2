package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/alerts"
	agentsync "github.com/hastack/hastack/internal/sync"
)

type fakeReconciler struct{ triggers []string }

func (f *fakeReconciler) Status(context.Context) agentsync.Status {
	return agentsync.Status{Project: "p", Applied: "abc"}
}
func (f *fakeReconciler) Trigger(reason string) { f.triggers = append(f.triggers, reason) }
func (f *fakeReconciler) Plan(ctx context.Context, commit string) (agentsync.Revision, agentsync.Plan, error) {
	return agentsync.Revision{Commit: "c"}, agentsync.Plan{Changes: []agentsync.Change{{Service: "web1", Reason: "files"}}}, nil
}

func signed(body, secret string) *http.Request {
	req := httptest.NewRequest("POST", "/webhook", strings.NewReader(body))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	return req
}

func TestHandler(t *testing.T) {
	const push = `{"ref":"refs/heads/main","after":"0123456789012345678901234567890123456789"}`
	const other = `{"ref":"refs/heads/dev","after":"0123456789012345678901234567890123456789"}`
	tests := []struct {
		name     string
		opts     Options
		req      *http.Request
		code     int
		triggers int
	}{
		{"status", Options{}, httptest.NewRequest("GET", "/api/v1/status", nil), 200, 0},
		{"healthz", Options{}, httptest.NewRequest("GET", "/healthz", nil), 200, 0},
		{"sync without token configured", Options{}, httptest.NewRequest("POST", "/api/v1/sync", nil), 202, 1},
		{"sync with a wrong token", Options{APIToken: "t"}, httptest.NewRequest("POST", "/api/v1/sync", nil), 401, 0},
		{"sync is POST only", Options{}, httptest.NewRequest("GET", "/api/v1/sync", nil), 405, 0},
		{"webhook disabled without a secret", Options{}, signed(push, "s"), 404, 0},
		{"webhook with the right signature", Options{WebhookSecret: []byte("s"), Ref: "main"}, signed(push, "s"), 202, 1},
		{"webhook with a wrong signature", Options{WebhookSecret: []byte("s"), Ref: "main"}, signed(push, "x"), 401, 0},
		{"webhook for another branch", Options{WebhookSecret: []byte("s"), Ref: "main"}, signed(other, "s"), 202, 0},
		{"diff", Options{}, httptest.NewRequest("GET", "/api/v1/diff", nil), 200, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeReconciler{}
			tt.opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
			w := httptest.NewRecorder()
			Handler(f, tt.opts).ServeHTTP(w, tt.req)
			if w.Code != tt.code || len(f.triggers) != tt.triggers {
				t.Fatalf("code %d triggers %d, want %d %d: %s", w.Code, len(f.triggers), tt.code, tt.triggers, w.Body)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	f := &fakeReconciler{}
	req := httptest.NewRequest("POST", "/api/v1/sync", nil)
	req.Header.Set("Authorization", "Bearer t0ken")
	w := httptest.NewRecorder()
	Handler(f, Options{APIToken: "t0ken", Log: slog.Default()}).ServeHTTP(w, req)
	if w.Code != 202 || len(f.triggers) != 1 {
		t.Fatalf("code %d triggers %v", w.Code, f.triggers)
	}
}

func TestRefMatches(t *testing.T) {
	for _, tt := range []struct {
		pushed, followed string
		want             bool
	}{
		{"refs/heads/main", "main", true},
		{"refs/tags/v1", "v1", true},
		{"refs/heads/main", "refs/heads/main", true},
		{"refs/heads/dev", "main", false},
		{"refs/heads/main", "0123456789012345678901234567890123456789", false},
	} {
		if got := refMatches(tt.pushed, tt.followed); got != tt.want {
			t.Errorf("refMatches(%q, %q) = %v", tt.pushed, tt.followed, got)
		}
	}
}

func TestStatusShowsFiringAlerts(t *testing.T) {
	since := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	h := Handler(&fakeReconciler{}, Options{Alerts: func() []alerts.Firing {
		return []alerts.Firing{{Name: "BackupFailed", Since: since, Description: "backup failed: store unreachable"}}
	}})
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest("GET", "/api/v1/status", nil))
	var got StatusResponse
	if err := json.Unmarshal(rr.Body.Bytes(), &got); err != nil || len(got.Alerts) != 1 || got.Alerts[0].Name != "BackupFailed" || !got.Alerts[0].Since.Equal(since) {
		t.Fatalf("status %s: %v", rr.Body.String(), err)
	}
	rr = httptest.NewRecorder()
	Handler(&fakeReconciler{}, Options{}).ServeHTTP(rr, httptest.NewRequest("GET", "/api/v1/status", nil))
	if !strings.Contains(rr.Body.String(), `"alerts": []`) {
		t.Fatalf("without alerts the status must say so with an empty list: %s", rr.Body.String())
	}
}
