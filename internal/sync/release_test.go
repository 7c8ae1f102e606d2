package sync

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/docker"
	"github.com/hastack/hastack/internal/pathguard"
)

// treeSnapshot lists every path under dir with its kind, size and link target: what "nothing
// changed on disk" is compared with.
func treeSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		v := fi.Mode().String()
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			v += " -> " + target
		} else if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			v += " " + string(b)
		}
		snap[p] = v
		return nil
	})
	return snap
}

func sameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s: %s changed: %q -> %q", what, p, v, after[p])
		}
	}
	for p, v := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s appeared: %q", what, p, v)
		}
	}
}

// sharedStack is a layout like the one scripts/up writes: the shared directory is the
// repository's own stack/, holding the generated secrets, beside the agent's work dir.
func sharedStack(t *testing.T, w *fakeWorld, ev *fakeEvents) (*Reconciler, string) {
	t.Helper()
	r, dir := newTestReconciler(t, w, ev)
	r.opts.SharedDir = filepath.Join(dir, "repo", "stack")
	os.MkdirAll(filepath.Join(r.opts.SharedDir, "secrets", "db"), 0o700)
	os.WriteFile(filepath.Join(r.opts.SharedDir, "secrets", "db", "root_password"), []byte("s3cret"), 0o600)
	os.WriteFile(filepath.Join(r.opts.SharedDir, ".env"), []byte("HTTP_PORT=80\n"), 0o600)
	return r, dir
}

func TestPlanRefusesWhatIsNotACommitID(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.head = c1
	r, dir := sharedStack(t, w, ev)
	r.SyncOnce(context.Background(), "test")
	before := treeSnapshot(t, dir)
	// Relative paths from the work dir to the shared stack and to the repository, as an
	// attacker would send them, and every other shape that is not a full commit id.
	for _, commit := range []string{
		"..", "../..", "../repo", "../repo/stack", "../../" + filepath.Base(dir) + "/repo",
		"./" + c1, c1 + "/..", c1 + "/../../repo", "%2e%2e", "..%2f..",
		"/etc", dir + "/repo", filepath.Join(dir, "repo", "stack"),
		c1[:7], c1[:39], c1 + "c", strings.ToUpper(c1), "main", "refs/heads/main", "HEAD", "current",
		"c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c\x00", " " + c1[1:],
	} {
		_, _, err := r.Plan(context.Background(), commit)
		if !errors.Is(err, ErrInvalidCommit) {
			t.Errorf("Plan(%q) = %v, want ErrInvalidCommit", commit, err)
		}
	}
	sameTree(t, "refused diffs", before, treeSnapshot(t, dir))
}

func TestPlanWritesNothingOutsideItsTemporaryTree(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.commits[c2] = release{services: services("2")}
	w.head = c1
	r, dir := sharedStack(t, w, ev)
	os.MkdirAll(r.opts.WorkDir, 0o755) // the agent's own: a diff makes its temporary tree there
	// Before any deploy (no current/) and after one.
	for _, deployed := range []bool{false, true} {
		if deployed {
			r.SyncOnce(context.Background(), "test")
		}
		before := treeSnapshot(t, dir)
		_, plan, err := r.Plan(context.Background(), c2)
		if err != nil {
			t.Fatal(err)
		}
		if plan.Empty() {
			t.Fatalf("deployed=%v: a diff to a new web version changes nothing: %+v", deployed, plan)
		}
		sameTree(t, "a diff", before, treeSnapshot(t, dir))
	}
}

func TestPlanIsBounded(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.head = c1
	w.exportGate = make(chan struct{})
	r, _ := newTestReconciler(t, w, ev)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, MaxDiffs)
	for range MaxDiffs {
		go func() { _, _, err := r.Plan(ctx, c1); done <- err }()
	}
	// Each running diff holds its slot while its export waits: one more is refused at once.
	deadline := time.Now().Add(5 * time.Second)
	for len(r.diffs) < MaxDiffs && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, err := r.Plan(ctx, c1); !errors.Is(err, ErrBusy) {
		t.Fatalf("diff %d while %d run: %v, want ErrBusy", MaxDiffs+1, MaxDiffs, err)
	}
	close(w.exportGate)
	for range MaxDiffs {
		if err := <-done; err != nil {
			t.Fatalf("a bounded diff failed: %v", err)
		}
	}
	if _, _, err := r.Plan(ctx, c1); err != nil {
		t.Fatalf("diff after the others finished: %v", err)
	}
}

func TestReleasesRefuseLinksOutOfTheirTree(t *testing.T) {
	for name, links := range map[string]map[string]string{
		// The commit's nginx/ is a link to the shared dir's parent: linking nginx/ssl would
		// remove and replace a path outside the release.
		"parent of a persistent path is a link": {"stack/nginx": "../.."},
		// Fine alone, but once secrets/ is linked to the shared dir, secrets/.. is its parent.
		"climbs out of a persistent path": {"stack/up": "secrets/../.."},
		"two links reach out":             {"stack/a/b": "..", "stack/a/c": "b/../../.."},
	} {
		t.Run(name, func(t *testing.T) {
			w, ev := newWorld(), &fakeEvents{}
			w.commits[c1] = release{services: services("1"), links: links}
			w.head = c1
			r, dir := sharedStack(t, w, ev)
			r.opts.Persistent = []string{"secrets", ".env", "nginx/ssl"}
			shared := treeSnapshot(t, filepath.Join(dir, "repo"))
			_, _, err := r.Plan(context.Background(), c1)
			if !errors.Is(err, pathguard.ErrEscapes) {
				t.Fatalf("diff: %v, want ErrEscapes", err)
			}
			r.SyncOnce(context.Background(), "test")
			if st := r.snapshot(); st.Applied != "" || st.Bad != c1 {
				t.Fatalf("deploy of a commit with escaping links: %+v", st)
			}
			sameTree(t, "the shared stack", shared, treeSnapshot(t, filepath.Join(dir, "repo")))
			if left, _ := filepath.Glob(filepath.Join(r.opts.WorkDir, "*")); len(left) != 0 {
				t.Fatalf("refused releases left %v", left)
			}
		})
	}
}

// Releases the state does not name are pruned down to the KeepReleases most recent, except
// those containers may still mount; an interrupted release's staging directory is swept at
// start; nothing else in WorkDir is touched.
func TestReleasesArePrunedAndLeftoversSwept(t *testing.T) {
	commit := func(i int) string { return strings.Repeat(strconv.FormatInt(int64(i), 16), 40) }
	base := time.Now().Add(-time.Hour)
	setup := func(t *testing.T) (*Reconciler, *fakeWorld, string) {
		w, ev := newWorld(), &fakeEvents{}
		r, _ := newTestReconciler(t, w, ev)
		work := r.opts.WorkDir
		for i := range 7 {
			dir := filepath.Join(work, commit(i))
			if err := os.MkdirAll(filepath.Join(dir, "stack"), 0o755); err != nil {
				t.Fatal(err)
			}
			at := base.Add(time.Duration(i) * time.Minute)
			os.Chtimes(dir, at, at)
		}
		for _, keep := range []string{"shared/secrets", "live/nginx/conf", "not-a-release"} {
			os.MkdirAll(filepath.Join(work, keep), 0o755)
		}
		os.MkdirAll(filepath.Join(work, commit(9)+".staging", "stack"), 0o755)
		return r, w, work
	}
	left := func(work string) []string {
		var out []string
		entries, _ := os.ReadDir(work)
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	ctx := context.Background()

	t.Run("by count", func(t *testing.T) {
		r, _, work := setup(t)
		// Applied and last good are the two oldest; of the others the three newest stay.
		r.pruneReleases(ctx, State{Applied: commit(0), LastGood: commit(1)})
		want := []string{commit(0), commit(1), commit(4), commit(5), commit(6), commit(9) + ".staging", "live", "not-a-release", "shared"}
		if got := left(work); !slices.Equal(got, want) {
			t.Fatalf("left %q\nwant %q", got, want)
		}
		r.removeDiffLeftovers()
		if exists(filepath.Join(work, commit(9)+".staging")) || !exists(filepath.Join(work, "not-a-release")) {
			t.Fatal("the staging leftover was kept, or something else was removed")
		}
	})
	t.Run("what a running container mounts is kept", func(t *testing.T) {
		r, w, work := setup(t)
		// grafana was created between releases 2 and 3: it mounts release 2's directories.
		w.containers["grafana"] = docker.Container{Service: "grafana", Name: "grafana", State: "running", Created: base.Add(150 * time.Second)}
		r.pruneReleases(ctx, State{Applied: commit(0), LastGood: commit(1)})
		for _, i := range []int{2, 3, 4, 5, 6} {
			if !exists(filepath.Join(work, commit(i))) {
				t.Errorf("release %d was pruned although a running container may mount it: left %q", i, left(work))
			}
		}
	})
}
