package gitsource

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitEnv makes the git CLI ignore the machine's configuration and sign
// commits with a fixed identity.
func gitEnv(t *testing.T) []string {
	t.Helper()
	return append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+os.DevNull,
		"GIT_AUTHOR_NAME=Test Author",
		"GIT_AUTHOR_EMAIL=author@example.test",
		"GIT_COMMITTER_NAME=Test Committer",
		"GIT_COMMITTER_EMAIL=committer@example.test",
		"GIT_TERMINAL_PROMPT=0",
	)
}

// runGit runs the git CLI in dir and returns its trimmed output.
func runGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always"}, args...)...)
	cmd.Dir = dir
	cmd.Env = gitEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// fileSpec describes one file of a commit: content, and either an
// executable bit or a symlink target (content ignored then).
type fileSpec struct {
	content string
	exec    bool
	link    string
	remove  bool
}

// commitFiles writes files into the work tree at dir, commits them and
// returns the commit id.
func commitFiles(t *testing.T, dir, msg string, files map[string]fileSpec) string {
	t.Helper()
	for name, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if f.remove {
			runGit(t, dir, "rm", "-q", "-r", name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(p)
		if f.link != "" {
			if err := os.Symlink(f.link, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		mode := os.FileMode(0o644)
		if f.exec {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(f.content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	runGit(t, dir, "add", "-A")
	runGit(t, dir, "commit", "-q", "--allow-empty", "-m", msg)
	return runGit(t, dir, "rev-parse", "HEAD")
}

// fixture is a work repository pushed to a bare repository.
type fixture struct {
	work, bare string
	c1         string // first commit on main; tag v1.0 (annotated) and light (lightweight)
	c2         string // second commit on main, changes stack/compose.yaml
	c3         string // commit on branch feature, child of c1
	c4         string // third commit on main, changes only README.md
}

// newFixture builds the repositories in a temporary directory.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{work: filepath.Join(root, "work"), bare: filepath.Join(root, "repos", "app.git")}
	if err := os.MkdirAll(f.work, 0o755); err != nil {
		t.Fatal(err)
	}
	runGit(t, f.work, "init", "-q")
	f.c1 = commitFiles(t, f.work, "first commit\n\nwith a body", map[string]fileSpec{
		"README.md":              {content: "hello\n"},
		"stack/compose.yaml":     {content: "services: {}\n"},
		"stack/run.sh":           {content: "#!/bin/sh\necho hi\n", exec: true},
		"stack/current":          {link: "compose.yaml"},
		"stack/conf/nginx.conf":  {content: "events {}\n"},
		"stack/conf/up":          {link: "../run.sh"},
		"alert-rules/rules.yaml": {content: "groups: []\n"},
	})
	runGit(t, f.work, "tag", "-a", "-m", "release 1.0", "v1.0")
	runGit(t, f.work, "tag", "light")
	f.c2 = commitFiles(t, f.work, "second commit", map[string]fileSpec{
		"stack/compose.yaml": {content: "services: {web: {}}\n"},
	})
	f.c4 = commitFiles(t, f.work, "readme only", map[string]fileSpec{
		"README.md": {content: "hello again\n"},
	})
	runGit(t, f.work, "checkout", "-q", "-b", "feature", f.c1)
	f.c3 = commitFiles(t, f.work, "feature work", map[string]fileSpec{
		"stack/feature.txt": {content: "feature\n"},
	})
	runGit(t, f.work, "checkout", "-q", "main")

	if err := os.MkdirAll(filepath.Dir(f.bare), 0o755); err != nil {
		t.Fatal(err)
	}
	runGit(t, root, "init", "-q", "--bare", f.bare)
	runGit(t, f.work, "remote", "add", "origin", f.bare)
	runGit(t, f.work, "push", "-q", "origin", "main", "feature", "--tags")
	return f
}

// push pushes refspecs from the work tree to the bare repository.
func (f *fixture) push(t *testing.T, args ...string) {
	t.Helper()
	runGit(t, f.work, append([]string{"push", "-q", "origin"}, args...)...)
}

// fileURL is the bare repository's file:// URL.
func (f *fixture) fileURL() string { return "file://" + f.bare }

// newSource makes a Source with a fresh cache directory.
func newSource(t *testing.T, url, ref string) *Source {
	t.Helper()
	s, err := New(Options{URL: url, Ref: ref, CacheDir: filepath.Join(t.TempDir(), "cache")})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}
