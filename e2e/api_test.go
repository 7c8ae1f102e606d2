//go:build e2e

package e2e

import (
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// apiGet sends GET path to the agent with token (none when empty) and Host, and returns the
// status code.
func (a *agentProc) apiGet(t *testing.T, path, token, host string) int {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+a.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// diskState lists every path under dir with its mode, link target and size.
func diskState(dir string) map[string]string {
	snap := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		target, _ := os.Readlink(p)
		snap[p] = fi.Mode().String() + " " + target
		if fi.Mode().IsRegular() {
			snap[p] += fmt.Sprint(" ", fi.Size())
		}
		return nil
	})
	return snap
}

// checkAPIRefusesPaths is the live hole of issue 9: a diff of a path instead of a commit id
// deleted the shared stack's secrets. Against the running agent: every variant is refused
// with 4xx, nothing without the token gets past 401, and nothing changes on disk.
func checkAPIRefusesPaths(t *testing.T, a *agentProc) {
	dir := filepath.Dir(a.cfg)
	token, err := os.ReadFile(filepath.Join(dir, "state", "api-token"))
	if err != nil {
		t.Fatalf("the agent made no API token in its state directory: %v", err)
	}
	tok := strings.TrimSpace(string(token))
	shared := filepath.Join(dir, "releases", "shared")
	os.MkdirAll(filepath.Join(shared, "secrets", "db"), 0o700)
	os.WriteFile(filepath.Join(shared, "secrets", "db", "root_password"), []byte("keep me"), 0o600)
	// A directory laid out like the repository scripts/up follows (<repo>/stack/secrets): the
	// old diff handler, given a relative path to it, replaced its secrets with symlinks.
	victim := filepath.Join(dir, "victim")
	os.MkdirAll(filepath.Join(victim, "stack", "secrets", "db"), 0o700)
	os.WriteFile(filepath.Join(victim, "stack", "secrets", "db", "root_password"), []byte("keep me"), 0o600)
	os.WriteFile(filepath.Join(victim, "stack", ".env"), []byte("HTTP_PORT=80\n"), 0o600)
	before := diskState(dir)
	for _, commit := range []string{
		"../victim", "../../" + filepath.Base(dir) + "/victim", "..%2Fvictim", victim,
		"shared", "./shared", "../releases/shared", "..", "../..", "../../" + filepath.Base(dir),
		shared, "/etc", "%2e%2e%2fshared", "..%2F..", "main", "refs/heads/main", "HEAD", "abc1234",
		strings.Repeat("0", 39), strings.Repeat("A", 40),
	} {
		q := "/api/v1/diff?commit=" + url.QueryEscape(commit)
		if code := a.apiGet(t, q, "", ""); code != http.StatusUnauthorized {
			t.Errorf("diff of %q without the token: %d, want 401", commit, code)
		}
		if code := a.apiGet(t, q, tok, ""); code < 400 || code >= 500 {
			t.Errorf("diff of %q with the token: %d, want 4xx", commit, code)
		}
	}
	for _, path := range []string{"/api/v1/status", "/api/v1/diff"} {
		if code := a.apiGet(t, path, "", ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %d, want 401", path, code)
		}
		if code := a.apiGet(t, path, tok, "rebound.example:"+strings.Split(a.addr, ":")[1]); code != http.StatusMisdirectedRequest {
			t.Errorf("GET %s with a rebound DNS name as Host: %d, want 421", path, code)
		}
	}
	after := diskState(dir)
	for p, v := range before {
		if p == filepath.Join(dir, "agent.log") {
			continue
		}
		if after[p] != v {
			t.Errorf("%s changed: %q -> %q", p, v, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
	for _, secret := range []string{filepath.Join(shared, "secrets", "db", "root_password"), filepath.Join(victim, "stack", "secrets", "db", "root_password")} {
		if b, err := os.ReadFile(secret); err != nil || string(b) != "keep me" {
			t.Fatalf("%s is gone: %q %v", secret, b, err)
		}
	}
}
