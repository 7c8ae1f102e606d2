package gitsource

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitHTTPServer serves the repositories under root over git's smart HTTP
// protocol (git http-backend as CGI) on loopback, behind basic auth that
// wants user "git" and the given token.
func gitHTTPServer(t *testing.T, root, token string) *httptest.Server {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("the git CLI is needed to serve smart HTTP: %v", err)
	}
	backend := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			"REMOTE_USER=git",
			"GIT_CONFIG_NOSYSTEM=1",
		},
		Stderr: io.Discard, // http-backend's complaints about missing repositories
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != "git" || subtle.ConstantTimeCompare([]byte(pass), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestFetchSmartHTTP(t *testing.T) {
	t.Parallel()
	const token = "tok-7f3a9c-very-secret"
	f := newFixture(t)
	srv := gitHTTPServer(t, filepath.Dir(f.bare), token)
	url := srv.URL + "/" + filepath.Base(f.bare)

	tests := []struct {
		name     string
		token    string
		ref      string
		want     string
		wantText string // for errors
	}{
		{name: "right token", token: token, ref: "main", want: f.c4},
		{name: "right token, tag", token: token, ref: "v1.0", want: f.c1},
		{name: "wrong token", token: "not-the-token", ref: "main", wantText: "authentication failed for " + url + ": check the token (source.token_file)"},
		{name: "token that contains the right one", token: token + "x", ref: "main", wantText: "check the token (source.token_file)"},
		{name: "no token", token: "", ref: "main", wantText: "set the token (source.token_file)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Options{URL: url, Ref: tt.ref, Token: tt.token, CacheDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			rev, err := s.Fetch(context.Background())
			if tt.wantText != "" {
				t.Logf("error: %v", err)
				if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), tt.wantText) {
					t.Fatalf("Fetch() = %v, want ErrAuth saying %q", err, tt.wantText)
				}
				if tt.token != "" && strings.Contains(err.Error(), tt.token) {
					t.Fatalf("error %q shows the token", err)
				}
				return
			}
			if err != nil || rev.Commit != tt.want {
				t.Fatalf("Fetch() = %+v, %v; want %s", rev, err, tt.want)
			}
			// Export works from a mirror fetched over HTTP.
			dst := filepath.Join(t.TempDir(), "out")
			if err := s.Export(context.Background(), rev.Commit, "stack", dst); err != nil {
				t.Fatalf("Export: %v", err)
			}
		})
	}

	t.Run("missing repository", func(t *testing.T) {
		s, err := New(Options{URL: srv.URL + "/nothing.git", Token: token, CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Fetch(context.Background())
		if !errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), token) {
			t.Fatalf("Fetch(missing repo) = %v, want ErrNotFound without the token", err)
		}
	})
}
