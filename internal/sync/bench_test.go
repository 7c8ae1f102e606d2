package sync

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hastack/hastack/internal/gitsource"
)

// A no-change sync: fetch the followed ref from a local repository and find the host already on
// its commit. The baseline is the git CLI fetching the same repository into a mirror.
//
//	go test -run '^$' -bench NoChange -benchmem ./internal/sync/

func benchRepo(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	run := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-c", "user.name=b", "-c", "user.email=b@b"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	run("init", "-q", "-b", "main")
	if out, err := exec.Command("cp", "-a", "../../stack", filepath.Join(dir, "stack")).CombinedOutput(); err != nil {
		b.Fatalf("copy stack: %v %s", err, out)
	}
	run("add", "-A")
	run("commit", "-q", "-m", "stack")
	return dir
}

type gitSourceAdapter struct{ s *gitsource.Source }

func (g gitSourceAdapter) Fetch(ctx context.Context) (Revision, error) {
	r, err := g.s.Fetch(ctx)
	return Revision{Commit: r.Commit, Ref: r.Ref}, err
}

func (g gitSourceAdapter) Export(ctx context.Context, commit, dst string) error {
	return g.s.Export(ctx, commit, "", dst)
}

func BenchmarkNoChangeSync(b *testing.B) {
	repo := benchRepo(b)
	src, err := gitsource.New(gitsource.Options{URL: repo, Ref: "main", CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	rev, err := src.Fetch(ctx)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	store := NewStore(dir)
	store.Save(State{Applied: rev.Commit, LastGood: rev.Commit})
	w := newWorld()
	r, err := New(Options{Project: "bench", Subpath: "stack", WorkDir: dir}, gitSourceAdapter{src}, w, w.stack, store,
		&fakeEvents{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := r.sync(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	if len(w.ups) != 0 {
		b.Fatal("a no-change sync ran compose")
	}
}

func BenchmarkNoChangeGitCLIFetch(b *testing.B) {
	repo := benchRepo(b)
	mirror := filepath.Join(b.TempDir(), "mirror.git")
	if out, err := exec.Command("git", "clone", "-q", "--mirror", repo, mirror).CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		cmd := exec.Command("git", "-C", mirror, "fetch", "-q", "--prune", "origin")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}
