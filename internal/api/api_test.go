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
	"github.com/hastack/hastack/internal/failover"
	agentsync "github.com/hastack/hastack/internal/sync"
)

type fakeReconciler struct{ triggers []string }

func (f *fakeReconciler) Status(context.Context) agentsync.Status {
	return agentsync.Status{Project: "p", Applied: "abc"}
}
func (f *fakeReconciler) Trigger(reason string)  { f.triggers = append(f.triggers, reason) }
func (f *fakeReconciler) Redeploy(reason string) { f.triggers = append(f.triggers, "redeploy "+reason) }
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

const (
	testListen = "127.0.0.1:9700"
	testToken  = "t0ken"
)

// apiReq is a request as the CLI sends it: to the listen address, with the token.
func apiReq(method, target, token string) *http.Request {
	req := httptest.NewRequest(method, target, nil)
	req.Host = testListen
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

func TestHandler(t *testing.T) {
	const push = `{"ref":"refs/heads/main","after":"0123456789012345678901234567890123456789"}`
	const other = `{"ref":"refs/heads/dev","after":"0123456789012345678901234567890123456789"}`
	authed := Options{APIToken: testToken, Listen: testListen}
	tests := []struct {
		name     string
		opts     Options
		req      *http.Request
		code     int
		triggers int
	}{
		{"status", authed, apiReq("GET", "/api/v1/status", testToken), 200, 0},
		{"healthz needs nothing", Options{}, httptest.NewRequest("GET", "/healthz", nil), 200, 0},
		{"sync", authed, apiReq("POST", "/api/v1/sync", testToken), 202, 1},
		{"sync with a wrong token", authed, apiReq("POST", "/api/v1/sync", "t0kem"), 401, 0},
		{"sync when the agent has no token", Options{Listen: testListen}, apiReq("POST", "/api/v1/sync", ""), 401, 0},
		{"sync is POST only", authed, apiReq("GET", "/api/v1/sync", testToken), 405, 0},
		{"sync with redeploy", authed, apiReq("POST", "/api/v1/sync?redeploy=true", testToken), 202, 1},
		{"sync with a bad redeploy", authed, apiReq("POST", "/api/v1/sync?redeploy=maybe", testToken), 400, 0},
		{"webhook disabled without a secret", Options{}, signed(push, "s"), 404, 0},
		{"webhook with the right signature", Options{WebhookSecret: []byte("s"), Ref: "main"}, signed(push, "s"), 202, 1},
		{"webhook with a wrong signature", Options{WebhookSecret: []byte("s"), Ref: "main"}, signed(push, "x"), 401, 0},
		{"webhook for another branch", Options{WebhookSecret: []byte("s"), Ref: "main"}, signed(other, "s"), 202, 0},
		{"diff", authed, apiReq("GET", "/api/v1/diff", testToken), 200, 0},
		{"diff of a commit id", authed, apiReq("GET", "/api/v1/diff?commit=0123456789abcdef0123456789abcdef01234567", testToken), 200, 0},
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

// Every API route: without the token, or with a Host that is not the listen address, 401 or
// 421, and the reconciler is not asked anything.
func TestEveryAPIRouteIsGuarded(t *testing.T) {
	routes := []struct{ method, path string }{
		{"GET", "/api/v1/status"}, {"POST", "/api/v1/sync"}, {"POST", "/api/v1/sync?redeploy=true"}, {"GET", "/api/v1/diff"},
		{"GET", "/api/v1/diff?commit=../../../../srv/repo/stack"},
	}
	for _, rt := range routes {
		for _, tc := range []struct {
			name, host, auth string
			code             int
		}{
			{"no token", testListen, "", 401},
			{"wrong token", testListen, "Bearer nope", 401},
			{"token without Bearer", testListen, testToken, 401},
			{"basic auth", testListen, "Basic dDBrZW46", 401},
			{"a rebound DNS name", "attacker.example:9700", "Bearer " + testToken, 421},
			{"another address", "10.0.0.1:9700", "Bearer " + testToken, 421},
			{"no host", "", "Bearer " + testToken, 421},
		} {
			f := &countingReconciler{}
			req := httptest.NewRequest(rt.method, rt.path, nil)
			req.Host = tc.host
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			Handler(f, Options{APIToken: testToken, Listen: testListen, Log: slog.Default()}).ServeHTTP(w, req)
			if w.Code != tc.code || f.calls != 0 {
				t.Errorf("%s %s, %s: code %d, reconciler called %d times; want %d and none", rt.method, rt.path, tc.name, w.Code, f.calls, tc.code)
			}
		}
	}
}

type countingReconciler struct{ calls int }

func (f *countingReconciler) Status(context.Context) agentsync.Status {
	f.calls++
	return agentsync.Status{}
}
func (f *countingReconciler) Trigger(string)  { f.calls++ }
func (f *countingReconciler) Redeploy(string) { f.calls++ }
func (f *countingReconciler) Plan(context.Context, string) (agentsync.Revision, agentsync.Plan, error) {
	f.calls++
	return agentsync.Revision{}, agentsync.Plan{}, nil
}

func TestHostAllowed(t *testing.T) {
	for _, tc := range []struct {
		host, listen string
		want         bool
	}{
		{"127.0.0.1:9700", "127.0.0.1:9700", true},
		{"127.0.0.1:19700", "127.0.0.1:9700", true}, // through a port forward
		{"127.0.0.1", "127.0.0.1:9700", true},
		{"localhost:9700", "127.0.0.1:9700", true},
		{"LOCALHOST:9700", "127.0.0.1:9700", true},
		{"[::1]:9700", "[::1]:9700", true},
		{"127.0.0.2:9700", "127.0.0.1:9700", false},
		{"[::1]:9700", "127.0.0.1:9700", false},
		{"evil.example:9700", "127.0.0.1:9700", false},
		{"localhost.evil.example", "127.0.0.1:9700", false},
		{"127.0.0.1.nip.io:9700", "127.0.0.1:9700", false},
		{"", "127.0.0.1:9700", false},
		{"10.0.0.5:9700", "0.0.0.0:9700", true},
		{"10.0.0.5:9700", ":9700", true},
		{"localhost", ":9700", true},
		{"evil.example", "0.0.0.0:9700", false},
		{"localhost:9700", "10.0.0.5:9700", false},
		{"10.0.0.5:9700", "10.0.0.5:9700", true},
		{"127.0.0.1:9700", "localhost:9700", true},
		{"10.0.0.5:9700", "localhost:9700", false},
	} {
		if got := hostAllowed(tc.host, tc.listen); got != tc.want {
			t.Errorf("hostAllowed(%q, %q) = %v, want %v", tc.host, tc.listen, got, tc.want)
		}
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
	h := Handler(&fakeReconciler{}, Options{APIToken: testToken, Listen: testListen, Alerts: func() []alerts.Firing {
		return []alerts.Firing{{Name: "BackupFailed", Since: since, Description: "backup failed: store unreachable"}}
	}})
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, apiReq("GET", "/api/v1/status", testToken))
	var got StatusResponse
	if err := json.Unmarshal(rr.Body.Bytes(), &got); err != nil || len(got.Alerts) != 1 || got.Alerts[0].Name != "BackupFailed" || !got.Alerts[0].Since.Equal(since) {
		t.Fatalf("status %s: %v", rr.Body.String(), err)
	}
	rr = httptest.NewRecorder()
	Handler(&fakeReconciler{}, Options{APIToken: testToken, Listen: testListen}).ServeHTTP(rr, apiReq("GET", "/api/v1/status", testToken))
	if !strings.Contains(rr.Body.String(), `"alerts": []`) {
		t.Fatalf("without alerts the status must say so with an empty list: %s", rr.Body.String())
	}
}

func TestStatusShowsTheDatabaseWatch(t *testing.T) {
	rep := &failover.Report{At: time.Now(), Primary: "db_slave", Servers: []failover.ServerReport{
		{Service: "db_slave", Container: "db_slave", Role: "primary", Up: true},
		{Service: "db_master", Container: "db_master", Role: "replica", Up: true, ReadOnly: true}}}
	rr := httptest.NewRecorder()
	Handler(&fakeReconciler{}, Options{APIToken: testToken, Listen: testListen, Database: func() *failover.Report { return rep }}).
		ServeHTTP(rr, apiReq("GET", "/api/v1/status", testToken))
	var got StatusResponse
	if err := json.Unmarshal(rr.Body.Bytes(), &got); err != nil || got.Database == nil || got.Database.Primary != "db_slave" || len(got.Database.Servers) != 2 {
		t.Fatalf("status %s: %v", rr.Body.String(), err)
	}
	rr = httptest.NewRecorder()
	Handler(&fakeReconciler{}, Options{APIToken: testToken, Listen: testListen}).ServeHTTP(rr, apiReq("GET", "/api/v1/status", testToken))
	if strings.Contains(rr.Body.String(), `"database"`) {
		t.Fatalf("without a watch the status has no database section: %s", rr.Body.String())
	}
}
