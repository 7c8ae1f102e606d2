package gitsource

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/setting"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		opts      Options
		wantField string // "" means valid
		wantText  string
	}{
		{"https with token", Options{URL: "https://git.example/org/repo.git", Token: "t0k", CacheDir: "/c"}, "", ""},
		{"local path", Options{URL: "/srv/repo.git", CacheDir: "/c"}, "", ""},
		{"relative local path", Options{URL: "./repo", CacheDir: "/c"}, "source.url", "absolute path"},
		{"git+ssh url", Options{URL: "git+ssh://git@host/r.git", SSHKeyFile: "k", KnownHostsFile: "kh", CacheDir: "/c"}, "", ""},
		{"https without host", Options{URL: "https:///r", CacheDir: "/c"}, "source.url", "no host"},
		{"file url without path", Options{URL: "file://", CacheDir: "/c"}, "source.url", "needs a path"},
		{"file url", Options{URL: "file:///srv/repo.git", Ref: "v1.2", CacheDir: "/c"}, "", ""},
		{"ssh url", Options{URL: "ssh://git@host:2222/r.git", SSHKeyFile: "k", KnownHostsFile: "kh", CacheDir: "/c"}, "", ""},
		{"scp-like", Options{URL: "git@host:org/r.git", SSHKeyFile: "k", KnownHostsFile: "kh", CacheDir: "/c"}, "", ""},
		{"pinned commit", Options{URL: "/r", Ref: strings.Repeat("ab", 20), CacheDir: "/c"}, "", ""},
		{"full ref", Options{URL: "/r", Ref: "refs/tags/v1", CacheDir: "/c"}, "", ""},
		{"missing url", Options{CacheDir: "/c"}, "source.url", "required"},
		{"bad scheme", Options{URL: "ftp://host/r", CacheDir: "/c"}, "source.url", "not supported"},
		{"password in url", Options{URL: "https://u:secret@host/r", CacheDir: "/c"}, "source.url", "source.token_file"},
		{"password in ssh url", Options{URL: "ssh://u:secret@host/r", SSHKeyFile: "k", KnownHostsFile: "kh", CacheDir: "/c"}, "source.url", "must not hold a password"},
		{"ssh without known_hosts", Options{URL: "ssh://git@host/r", SSHKeyFile: "k", CacheDir: "/c"}, "source.known_hosts_file", "required for ssh URLs"},
		{"scp-like without known_hosts", Options{URL: "git@host:r", SSHKeyFile: "k", CacheDir: "/c"}, "source.known_hosts_file", "required for ssh URLs"},
		{"ssh without key", Options{URL: "ssh://git@host/r", KnownHostsFile: "kh", CacheDir: "/c"}, "source.ssh_key_file", "required"},
		{"ssh with token", Options{URL: "ssh://git@host/r", Token: "x", SSHKeyFile: "k", KnownHostsFile: "kh", CacheDir: "/c"}, "source.token_file", "https"},
		{"https with ssh key", Options{URL: "https://host/r", SSHKeyFile: "k", CacheDir: "/c"}, "source.ssh_key_file", "ssh URLs"},
		{"local with token", Options{URL: "/r", Token: "x", CacheDir: "/c"}, "source.token_file", "local"},
		{"bad ref", Options{URL: "/r", Ref: "a..b", CacheDir: "/c"}, "source.ref", "not a valid"},
		{"ref with space", Options{URL: "/r", Ref: "my branch", CacheDir: "/c"}, "source.ref", "not a valid"},
		{"option-like ref", Options{URL: "/r", Ref: "-x", CacheDir: "/c"}, "source.ref", "not a valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *setting.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v, want *FieldError", err)
			}
			if fe.Field != tt.wantField || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("Validate() = %q (field %s), want field %s and text %q", err, fe.Field, tt.wantField, tt.wantText)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error %q shows the password", err)
			}
			if _, err := New(tt.opts); !errors.As(err, &fe) {
				t.Fatalf("New() = %v, want the *FieldError", err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	s, err := New(Options{URL: "https://host/org/app.git", Token: "tok", CacheDir: "/cache"})
	if err != nil {
		t.Fatal(err)
	}
	if s.opts.Ref != "main" || s.opts.Username != "git" {
		t.Fatalf("defaults: ref %q user %q, want main and git", s.opts.Ref, s.opts.Username)
	}
	if dir := s.MirrorDir(); !strings.HasPrefix(dir, "/cache/app-") || !strings.HasSuffix(dir, ".git") {
		t.Fatalf("MirrorDir() = %s, want /cache/app-<hash>.git", dir)
	}
	other, _ := New(Options{URL: "https://other/org/app.git", CacheDir: "/cache"})
	if other.MirrorDir() == s.MirrorDir() {
		t.Fatalf("two URLs share the mirror %s", s.MirrorDir())
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	s, err := New(Options{URL: "https://host/r", Token: "s3cr3t-token", CacheDir: "/c"})
	if err != nil {
		t.Fatal(err)
	}
	base := errors.New("GET https://git:s3cr3t-token@host/r failed")
	got := s.redact(base)
	if strings.Contains(got.Error(), "s3cr3t-token") || !errors.Is(got, base) {
		t.Fatalf("redact() = %q; want the token gone and the cause kept", got)
	}
	if got := redactURL("https://user:pw@host/r", ""); strings.Contains(got, "pw") {
		t.Fatalf("redactURL() = %q, shows the password", got)
	}
}

func TestFetchLocal(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name       string
		ref        string
		wantCommit string
		wantRef    string
		wantErr    error
		wantText   string
	}{
		{name: "default branch", ref: "", wantCommit: f.c4, wantRef: "refs/heads/main"},
		{name: "branch", ref: "feature", wantCommit: f.c3, wantRef: "refs/heads/feature"},
		{name: "full branch ref", ref: "refs/heads/main", wantCommit: f.c4, wantRef: "refs/heads/main"},
		{name: "annotated tag", ref: "v1.0", wantCommit: f.c1, wantRef: "refs/tags/v1.0"},
		{name: "lightweight tag", ref: "refs/tags/light", wantCommit: f.c1, wantRef: "refs/tags/light"},
		{name: "pinned commit", ref: f.c2, wantCommit: f.c2, wantRef: f.c2},
		{name: "unknown ref", ref: "nope", wantErr: ErrNotFound, wantText: "ref nope not found in"},
		{name: "unknown commit", ref: strings.Repeat("0", 39) + "1", wantErr: ErrNotFound, wantText: "push it to a branch or tag"},
	}
	urls := map[string]string{"file URL": f.fileURL(), "local path": f.bare}
	for urlName, url := range urls {
		for _, tt := range tests {
			t.Run(urlName+"/"+tt.name, func(t *testing.T) {
				ctx := context.Background()
				s := newSource(t, url, tt.ref)
				rev, err := s.Fetch(ctx)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantText) {
						t.Fatalf("Fetch() error = %v, want %v containing %q", err, tt.wantErr, tt.wantText)
					}
					return
				}
				if err != nil {
					t.Fatalf("Fetch(): %v", err)
				}
				if rev.Commit != tt.wantCommit || rev.Ref != tt.wantRef {
					t.Fatalf("Fetch() = %s %s, want %s %s", rev.Commit, rev.Ref, tt.wantCommit, tt.wantRef)
				}
				if rev.Author != "Test Author <author@example.test>" || rev.Time.IsZero() || rev.Subject == "" || strings.Contains(rev.Subject, "\n") {
					t.Fatalf("Fetch() revision details = %+v", rev)
				}
				// A second fetch of an unchanged repository is fine too.
				if again, err := s.Fetch(ctx); err != nil || again != rev {
					t.Fatalf("second Fetch() = %+v, %v; want %+v", again, err, rev)
				}
			})
		}
	}
}

func TestFetchUnknownRefListsRefs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, err := newSource(t, f.fileURL(), "nope").Fetch(context.Background())
	for _, want := range []string{"set source.ref", "branches: feature, main", "tags: light, v1.0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Fetch() error = %v, want it to contain %q", err, want)
		}
	}
}

func TestFetchFollowsChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	main := newSource(t, f.fileURL(), "main")
	cache := filepath.Dir(main.MirrorDir())
	feature, err := New(Options{URL: f.fileURL(), Ref: "feature", CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	tag, err := New(Options{URL: f.fileURL(), Ref: "v1.0", CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	mustFetch := func(s *Source, want string) {
		t.Helper()
		rev, err := s.Fetch(ctx)
		if err != nil {
			t.Fatalf("Fetch(%s): %v", s.opts.Ref, err)
		}
		if rev.Commit != want {
			t.Fatalf("Fetch(%s) = %s, want %s", s.opts.Ref, rev.Commit, want)
		}
	}
	mustFetch(main, f.c4)
	mustFetch(feature, f.c3)

	// A new commit on main appears on the next fetch.
	c5 := commitFiles(t, f.work, "fifth", map[string]fileSpec{"stack/new.txt": {content: "new\n"}})
	f.push(t, "main")
	mustFetch(main, c5)

	// A force-pushed branch is followed, even though history was rewritten.
	runGit(t, f.work, "checkout", "-q", "feature")
	runGit(t, f.work, "reset", "-q", "--hard", f.c1)
	rewritten := commitFiles(t, f.work, "rewritten feature", map[string]fileSpec{"stack/other.txt": {content: "x\n"}})
	runGit(t, f.work, "checkout", "-q", "main")
	f.push(t, "--force", "feature")
	mustFetch(feature, rewritten)
	if ok, err := feature.IsAncestor(ctx, f.c3, rewritten); err != nil || ok {
		t.Fatalf("IsAncestor(old feature, rewritten) = %v, %v; want false", ok, err)
	}

	// A moved tag is followed too.
	runGit(t, f.work, "tag", "-f", "-a", "-m", "moved", "v1.0", f.c2)
	f.push(t, "--force", "refs/tags/v1.0")
	mustFetch(tag, f.c2)

	// A deleted branch is pruned from the mirror.
	f.push(t, "--delete", "feature")
	if _, err := feature.Fetch(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Fetch(deleted branch) = %v, want ErrNotFound", err)
	}
}

func TestFetchPinnedCommitByHash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	// A commit that no branch or tag reaches, only a pull-request ref.
	runGit(t, f.work, "checkout", "-q", "-b", "pr", f.c1)
	hidden := commitFiles(t, f.work, "pull request", map[string]fileSpec{"stack/pr.txt": {content: "pr\n"}})
	runGit(t, f.work, "checkout", "-q", "main")
	f.push(t, "pr:refs/pull/1/head")

	if _, err := newSource(t, f.fileURL(), hidden).Fetch(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Fetch(hidden commit, server refuses) = %v, want ErrNotFound", err)
	}
	runGit(t, f.bare, "config", "uploadpack.allowReachableSHA1InWant", "true")
	s := newSource(t, f.fileURL(), hidden)
	rev, err := s.Fetch(ctx)
	if err != nil || rev.Commit != hidden || rev.Ref != hidden {
		t.Fatalf("Fetch(hidden commit, server allows) = %+v, %v; want %s", rev, err, hidden)
	}
	files, err := s.Files(ctx, hidden, "stack")
	if err != nil || string(files["pr.txt"]) != "pr\n" {
		t.Fatalf("Files(hidden) = %v, %v", files, err)
	}
	// Later fetches (prune included) keep it.
	if rev, err := s.Fetch(ctx); err != nil || rev.Commit != hidden {
		t.Fatalf("second Fetch(hidden) = %+v, %v", rev, err)
	}
}

func TestFetchErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	empty := filepath.Join(t.TempDir(), "empty.git")
	runGit(t, t.TempDir(), "init", "-q", "--bare", empty)
	runGit(t, f.work, "tag", "main", f.c1) // a tag named like the branch
	f.push(t, "refs/tags/main")

	tests := []struct {
		name     string
		url, ref string
		wantErr  error
		wantText string
	}{
		{"missing repository", filepath.Join(t.TempDir(), "nothing.git"), "main", ErrNotFound, "check source.url"},
		{"empty repository", empty, "main", nil, "the repository is empty"},
		{"ambiguous ref", f.bare, "main", nil, "set source.ref to refs/heads/main or refs/tags/main"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newSource(t, tt.url, tt.ref).Fetch(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantText) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Fetch() = %v, want %v containing %q", err, tt.wantErr, tt.wantText)
			}
		})
	}
}

func TestFetchCanceled(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newSource(t, f.fileURL(), "main").Fetch(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch(canceled) = %v, want context.Canceled", err)
	}
}

func TestMirrorRecoversFromLeftovers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := newSource(t, f.fileURL(), "main")
	// The remains of an interrupted first run: a directory that is no repository.
	if err := os.MkdirAll(filepath.Join(s.MirrorDir(), "junk"), 0o755); err != nil {
		t.Fatal(err)
	}
	if rev, err := s.Fetch(context.Background()); err != nil || rev.Commit != f.c4 {
		t.Fatalf("Fetch() = %+v, %v", rev, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(s.MirrorDir()))
	if len(entries) != 1 {
		t.Fatalf("cache holds %d entries, want only the mirror", len(entries))
	}
}

func TestIsAncestor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	s := newSource(t, f.fileURL(), "main")
	if _, err := s.IsAncestor(ctx, f.c1, f.c2); err == nil || !strings.Contains(err.Error(), "call Fetch first") {
		t.Fatalf("IsAncestor before Fetch = %v, want 'call Fetch first'", err)
	}
	if _, err := s.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		anc, desc   string
		want        bool
		wantErr     error
		wantErrText string
	}{
		{name: "parent", anc: f.c1, desc: f.c2, want: true},
		{name: "grandparent", anc: f.c1, desc: f.c4, want: true},
		{name: "same commit", anc: f.c2, desc: f.c2, want: true},
		{name: "child is not ancestor", anc: f.c2, desc: f.c1, want: false},
		{name: "other branch", anc: f.c3, desc: f.c4, want: false},
		{name: "missing commit", anc: strings.Repeat("1", 40), desc: f.c4, wantErr: ErrNotFound},
		{name: "short hash", anc: f.c1[:7], desc: f.c4, wantErrText: "not a full 40-hex commit id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.IsAncestor(ctx, tt.anc, tt.desc)
			if tt.wantErr != nil || tt.wantErrText != "" {
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.wantErrText) {
					t.Fatalf("IsAncestor() error = %v, want %v %q", err, tt.wantErr, tt.wantErrText)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("IsAncestor() = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestSourceLockHonorsContext(t *testing.T) {
	t.Parallel()
	s := newSource(t, "/nowhere", "main")
	release, err := s.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Fetch(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch while busy = %v, want DeadlineExceeded", err)
	}
}
