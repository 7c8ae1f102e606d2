package gitsource

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fetched returns a Source for the fixture's main branch, already fetched.
func fetched(t *testing.T, f *fixture) *Source {
	t.Helper()
	s := newSource(t, f.fileURL(), "main")
	if _, err := s.Fetch(context.Background()); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return s
}

// wantEntry is what one exported path must be.
type wantEntry struct {
	mode    os.FileMode // type bits and permissions
	content string      // for regular files
	link    string      // for symlinks
}

func TestExport(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := fetched(t, f)
	stack := map[string]wantEntry{
		"compose.yaml":    {mode: 0o644, content: "services: {}\n"},
		"run.sh":          {mode: 0o755, content: "#!/bin/sh\necho hi\n"},
		"current":         {mode: os.ModeSymlink, link: "compose.yaml"},
		"conf":            {mode: os.ModeDir | 0o755},
		"conf/nginx.conf": {mode: 0o644, content: "events {}\n"},
		"conf/up":         {mode: os.ModeSymlink, link: "../run.sh"},
	}
	whole := map[string]wantEntry{
		"README.md":              {mode: 0o644, content: "hello\n"},
		"stack":                  {mode: os.ModeDir | 0o755},
		"alert-rules":            {mode: os.ModeDir | 0o755},
		"alert-rules/rules.yaml": {mode: 0o644, content: "groups: []\n"},
	}
	for k, v := range stack {
		whole["stack/"+k] = v
	}
	tests := []struct {
		name    string
		subpath string
		want    map[string]wantEntry
	}{
		{"subpath", "stack", stack},
		{"subpath with slash", "stack/", stack},
		{"subpath with dot", "./stack", stack},
		{"whole tree (empty)", "", whole},
		{"whole tree (dot)", ".", whole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "deploy", "out")
			if err := s.Export(context.Background(), f.c1, tt.subpath, dst); err != nil {
				t.Fatalf("Export: %v", err)
			}
			checkTree(t, dst, tt.want)
			if info, err := os.Stat(dst); err != nil || info.Mode().Perm() != 0o755 {
				t.Fatalf("dst mode = %v, %v; want 0755", info.Mode(), err)
			}
			leftovers, _ := filepath.Glob(dst + ".tmp-*")
			if len(leftovers) != 0 {
				t.Fatalf("temporary directories left: %v", leftovers)
			}
		})
	}
}

// checkTree compares the directory dst with want, both ways.
func checkTree(t *testing.T, dst string, want map[string]wantEntry) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.Walk(dst, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == dst {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		rel = filepath.ToSlash(rel)
		seen[rel] = true
		w, ok := want[rel]
		if !ok {
			t.Errorf("unexpected %s", rel)
			return nil
		}
		switch {
		case w.mode&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if info.Mode()&os.ModeSymlink == 0 || err != nil || target != w.link {
				t.Errorf("%s: mode %v target %q (%v); want symlink to %q", rel, info.Mode(), target, err, w.link)
			}
		case w.mode.IsDir():
			if info.Mode() != w.mode {
				t.Errorf("%s: mode %v, want %v", rel, info.Mode(), w.mode)
			}
		default:
			b, err := os.ReadFile(p)
			if info.Mode() != w.mode || err != nil || string(b) != w.content {
				t.Errorf("%s: mode %v content %q (%v); want %v %q", rel, info.Mode(), b, err, w.mode, w.content)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel := range want {
		if !seen[rel] {
			t.Errorf("missing %s", rel)
		}
	}
}

func TestExportErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	bad := commitFiles(t, f.work, "unsafe links", map[string]fileSpec{
		"stack/escape":   {link: "../../etc/passwd"},
		"other/absolute": {link: "/etc/passwd"},
		// Each stays inside by a lexical check (a/b: two levels down, then as many up), but
		// a/b is the root again: followed through it, the ".."s climb to the host's /etc.
		"chain/a/b": {link: ".."},
		"chain/etc": {link: strings.Repeat("a/b/", 16) + strings.Repeat("../", 32) + "etc"},
	})
	f.push(t, "main")
	s := fetched(t, f)
	existing := t.TempDir()

	tests := []struct {
		name     string
		commit   string
		subpath  string
		dst      string
		wantErr  error
		wantText string
	}{
		{name: "subpath missing", commit: f.c1, subpath: "nope", wantErr: ErrNotFound, wantText: "subpath nope not found in commit " + f.c1[:7]},
		{name: "subpath is a file", commit: f.c1, subpath: "README.md", wantText: "is a file, not a directory"},
		{name: "subpath leaves repository", commit: f.c1, subpath: "../x", wantText: "must not contain .."},
		{name: "absolute subpath", commit: f.c1, subpath: "/stack", wantText: "must be relative"},
		{name: "dst exists", commit: f.c1, subpath: "stack", dst: existing, wantText: "already exists"},
		{name: "symlink escapes subpath", commit: f.c1, subpath: "stack/conf", wantErr: ErrUnsafeTree, wantText: "symlink up -> ../run.sh"},
		{name: "symlink escapes tree", commit: bad, subpath: "stack", wantErr: ErrUnsafeTree, wantText: "symlink escape -> ../../etc/passwd"},
		{name: "absolute symlink", commit: bad, subpath: "other", wantErr: ErrUnsafeTree, wantText: "absolute -> /etc/passwd"},
		{name: "two symlinks that each look inside", commit: bad, subpath: "chain", wantErr: ErrUnsafeTree, wantText: "symlink etc -> a/b/a/b/"},
		{name: "unknown commit", commit: strings.Repeat("2", 40), subpath: "stack", wantErr: ErrNotFound, wantText: "fetch first"},
		{name: "not a hash", commit: "main", subpath: "stack", wantText: "not a full 40-hex commit id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := tt.dst
			if dst == "" {
				dst = filepath.Join(t.TempDir(), "out")
			}
			err := s.Export(ctx, tt.commit, tt.subpath, dst)
			if err == nil || !strings.Contains(err.Error(), tt.wantText) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Export() = %v, want %v containing %q", err, tt.wantErr, tt.wantText)
			}
			if tt.dst == "" {
				if _, err := os.Lstat(dst); !os.IsNotExist(err) {
					t.Fatalf("failed Export left %s (%v)", dst, err)
				}
			}
			if leftovers, _ := filepath.Glob(dst + ".tmp-*"); len(leftovers) != 0 {
				t.Fatalf("temporary directories left: %v", leftovers)
			}
		})
	}
}

func TestExportBeforeFetch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := newSource(t, f.fileURL(), "main")
	err := s.Export(context.Background(), f.c1, "stack", filepath.Join(t.TempDir(), "out"))
	if err == nil || !strings.Contains(err.Error(), "call Fetch first") {
		t.Fatalf("Export before Fetch = %v, want 'call Fetch first'", err)
	}
}

func TestExportCanceled(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := fetched(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst := filepath.Join(t.TempDir(), "out")
	if err := s.Export(ctx, f.c1, "stack", dst); !errors.Is(err, context.Canceled) {
		t.Fatalf("Export(canceled) = %v, want context.Canceled", err)
	}
	if _, err := os.Lstat(dst); !os.IsNotExist(err) {
		t.Fatalf("canceled Export left %s", dst)
	}
}

func TestFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	s := fetched(t, f)
	tests := []struct {
		name    string
		commit  string
		subpath string
		want    map[string]string
	}{
		{"stack at c1", f.c1, "stack", map[string]string{
			"compose.yaml": "services: {}\n", "run.sh": "#!/bin/sh\necho hi\n", "current": "compose.yaml",
			"conf/nginx.conf": "events {}\n", "conf/up": "../run.sh",
		}},
		{"alert rules", f.c2, "alert-rules", map[string]string{"rules.yaml": "groups: []\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Files(ctx, tt.commit, tt.subpath)
			if err != nil {
				t.Fatalf("Files: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Files() has %d entries, want %d: %v", len(got), len(tt.want), got)
			}
			for k, v := range tt.want {
				if string(got[k]) != v {
					t.Errorf("Files()[%s] = %q, want %q", k, got[k], v)
				}
			}
		})
	}
	if _, err := s.Files(ctx, f.c1, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Files(missing) = %v, want ErrNotFound", err)
	}
}

func TestTreeHash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	s := fetched(t, f)
	hash := func(commit, sub string) string {
		t.Helper()
		h, err := s.TreeHash(ctx, commit, sub)
		if err != nil {
			t.Fatalf("TreeHash(%s, %s): %v", commit[:7], sub, err)
		}
		return h
	}
	if hash(f.c2, "stack") != hash(f.c4, "stack/") {
		t.Fatal("a commit that changes only README.md changed the stack's tree hash")
	}
	if hash(f.c1, "stack") == hash(f.c2, "stack") {
		t.Fatal("a commit that changes stack/compose.yaml kept the stack's tree hash")
	}
	if want := runGit(t, f.bare, "rev-parse", f.c1+":stack"); hash(f.c1, "stack") != want {
		t.Fatalf("TreeHash() differs from git rev-parse %s", want)
	}
}
