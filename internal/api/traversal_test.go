package api

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/compose"
	"github.com/hastack/hastack/internal/docker"
	agentsync "github.com/hastack/hastack/internal/sync"
)

// A real reconciler over a fake git source and compose: what the diff endpoint does to the
// disk when it is handed paths instead of commit ids.

const goodCommit = "0123456789abcdef0123456789abcdef01234567"

type diskSource struct{}

func (diskSource) Fetch(context.Context) (agentsync.Revision, error) {
	return agentsync.Revision{Commit: goodCommit}, nil
}
func (diskSource) Export(_ context.Context, commit, dst string) error {
	return os.MkdirAll(filepath.Join(dst, "stack", "secrets"), 0o755)
}

type noContainers struct{}

func (noContainers) ProjectContainers(context.Context, string) ([]docker.Container, error) {
	return nil, nil
}

type emptyStack struct{}

func (emptyStack) Validate(context.Context) error                      { return nil }
func (emptyStack) Services(context.Context) ([]compose.Service, error) { return nil, nil }
func (emptyStack) Build(context.Context, ...string) error              { return nil }
func (emptyStack) Up(context.Context, ...string) error                 { return nil }
func (emptyStack) Restart(context.Context, ...string) error            { return nil }

type noEvents struct{}

func (noEvents) Event(context.Context, string, bool, map[string]string, string) {}

func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			fi, _ := os.Lstat(p)
			target, _ := os.Readlink(p)
			snap[p] = fi.Mode().String() + target
		}
		return nil
	})
	return snap
}

func TestDiffOfAPathChangesNothingOnDisk(t *testing.T) {
	dir := t.TempDir()
	// The layout scripts/up writes: the repository's stack/ is the shared directory, the
	// work dir is <state>/releases.
	repoStack := filepath.Join(dir, "repo", "stack")
	work := filepath.Join(dir, "state", "releases")
	for _, d := range []string{filepath.Join(repoStack, "secrets", "db"), filepath.Join(repoStack, "nginx", "ssl"), work} {
		os.MkdirAll(d, 0o700)
	}
	os.WriteFile(filepath.Join(repoStack, "secrets", "db", "root_password"), []byte("s3cret"), 0o600)
	os.WriteFile(filepath.Join(repoStack, ".env"), []byte("HTTP_PORT=80\n"), 0o600)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rec, err := agentsync.New(agentsync.Options{
		Project: "p", Subpath: "stack", ComposeFiles: []string{"docker-compose.yml"}, WorkDir: work,
		SharedDir: repoStack, Persistent: []string{"secrets", "nginx/ssl", ".env"},
	}, diskSource{}, noContainers{}, func(string, []string) agentsync.Stack { return emptyStack{} },
		agentsync.NewStore(filepath.Join(dir, "state")), noEvents{}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(rec, Options{APIToken: testToken, Listen: testListen, Log: log})
	before := snapshot(t, dir)
	for _, commit := range []string{
		"../../repo", "../../repo/", "../../repo/.", "./../../repo", "..", "../..",
		filepath.Join(dir, "repo"), "/etc", "/", goodCommit + "/../../../repo",
		"..%2F..%2Frepo", "%2e%2e/%2e%2e/repo", "%252e%252e%252f%252e%252e%252frepo",
		goodCommit[:7], goodCommit[:12], goodCommit + "0", strings.ToUpper(goodCommit),
		"main", "refs/heads/main", "HEAD~1", "current", "shared", "\x00",
	} {
		for _, q := range []string{url.QueryEscape(commit), commit} {
			req := apiReq("GET", "/api/v1/diff", testToken)
			req.URL.RawQuery = "commit=" + q
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code < 400 || w.Code >= 500 {
				t.Errorf("diff of %q: %d, want 4xx: %s", q, w.Code, w.Body)
			}
		}
		// Without the token: 401 before anything is looked at.
		req := apiReq("GET", "/api/v1/diff?commit="+url.QueryEscape(commit), "")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("diff of %q without the token: %d, want 401", commit, w.Code)
		}
	}
	after := snapshot(t, dir)
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s changed: %q -> %q", p, v, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
	// And the one valid form still works, leaving nothing behind either.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, apiReq("GET", "/api/v1/diff?commit="+goodCommit, testToken))
	if w.Code != http.StatusOK {
		t.Fatalf("diff of a commit id: %d %s", w.Code, w.Body)
	}
	if left, _ := filepath.Glob(filepath.Join(work, "*")); len(left) != 0 {
		t.Fatalf("a diff left %v in the work dir", left)
	}
}
