package sync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// nginxRelease is a commit whose nginx reloads nginx/conf in place.
func nginxRelease(conf string) release {
	svcs := services("1")
	for i := range svcs {
		if svcs[i].Name == "nginx" {
			svcs[i].BindSources = []string{"$PROJECT/nginx/conf"}
			svcs[i].ReloadTest = []string{"/entrypoint.sh", "test"}
			svcs[i].Reload = []string{"/entrypoint.sh", "reload"}
		}
	}
	return release{services: svcs, files: map[string]string{"stack/nginx/conf/nginx.conf": conf}}
}

func TestLivePathIsReloadedInPlaceAndABrokenOneChangesNothing(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = nginxRelease("v1")
	w.commits[c2] = nginxRelease("v2")
	w.commits[c3] = nginxRelease("broken")
	w.head = c1
	r, dir := newTestReconciler(t, w, ev, "nginx/conf")
	ctx := context.Background()
	live := filepath.Join(dir, "releases", "live", "nginx", "conf", "nginx.conf")
	liveIs := func(want string) {
		t.Helper()
		if b, err := os.ReadFile(live); err != nil || string(b) != want {
			t.Fatalf("live nginx.conf %q (%v), want %q", b, err, want)
		}
	}

	r.SyncOnce(ctx, "test")
	liveIs("v1")
	if len(w.runs) != 0 {
		t.Fatalf("nothing ran yet, so nothing to reload: %q", w.runs)
	}
	// What Compose mounts, through the release's path, is the live directory.
	if b, err := os.ReadFile(filepath.Join(dir, "releases", "current", "stack", "nginx", "conf", "nginx.conf")); err != nil || string(b) != "v1" {
		t.Fatalf("the release's nginx/conf does not lead to the live directory: %q %v", b, err)
	}

	w.ups = nil
	w.head = c2
	r.SyncOnce(ctx, "poll")
	liveIs("v2")
	if want := []string{"nginx: /entrypoint.sh test", "nginx: /entrypoint.sh reload"}; !slices.Equal(w.runs, want) {
		t.Fatalf("runs %q, want %q", w.runs, want)
	}
	st := r.snapshot()
	last := st.History[len(st.History)-1]
	if st.Applied != c2 || last.Outcome != OutcomeDeployed || !slices.Equal(last.Reloaded, []string{"nginx"}) || len(w.ups) != 0 {
		t.Fatalf("state %+v, last deploy %+v, ups %v: want c2 deployed by a reload of nginx alone", st, last, w.ups)
	}

	// A configuration that fails the check: the old files are back, nothing reloaded or
	// recreated, the deploy failed and says why.
	w.runs, w.ups = nil, nil
	w.runErr = map[string]error{"test": errors.New("exit status 1")}
	w.head = c3
	r.SyncOnce(ctx, "poll")
	liveIs("v2")
	if slices.ContainsFunc(w.runs, func(s string) bool { return strings.HasSuffix(s, "reload") }) || len(w.ups) != 0 {
		t.Fatalf("a configuration that failed its check was applied: runs %q ups %v", w.runs, w.ups)
	}
	st = r.snapshot()
	last = st.History[len(st.History)-1]
	if st.Applied != c2 || st.Bad != c3 || !strings.Contains(last.Reason, "check") || !strings.Contains(last.Reason, "unknown directive") {
		t.Fatalf("state %+v, last deploy %+v", st, last)
	}
	if !ev.has("DeployFailed", true) {
		t.Error("no DeployFailed event")
	}
}

func TestWriteLiveReplacesExactly(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "old.conf"), []byte("x"), 0o644)
	files := map[string]liveFile{"nginx.conf": {data: []byte("a"), mode: 0o640}, "sub/b.conf": {data: []byte("b"), mode: 0o644}}
	if err := writeLive(dir, files); err != nil {
		t.Fatal(err)
	}
	got, err := readLive(dir)
	if err != nil || !sameLive(got, files) {
		t.Fatalf("readLive = %v, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "old.conf")); !os.IsNotExist(err) {
		t.Fatal("a file the new set lacks was kept")
	}
	// A path from outside cannot leave the directory.
	if err := writeLive(dir, map[string]liveFile{"../escape": {data: []byte("x"), mode: 0o644}}); err == nil {
		t.Fatal("writeLive wrote outside its directory")
	}
}

// A deploy interrupted after it wrote the files (the agent killed before the reload) finds
// them the same but not applied: it checks and reloads them.
func TestLiveFilesWrittenButNotReloadedAreReloaded(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = nginxRelease("v1")
	w.commits[c2] = nginxRelease("v2")
	w.head = c1
	r, dir := newTestReconciler(t, w, ev, "nginx/conf")
	ctx := context.Background()
	r.SyncOnce(ctx, "test")
	live := filepath.Join(dir, "releases", "live", "nginx", "conf")
	if err := writeLive(live, map[string]liveFile{"nginx.conf": {data: []byte("v2"), mode: 0o644}}); err != nil {
		t.Fatal(err)
	}
	w.head = c2
	r.SyncOnce(ctx, "poll")
	if want := []string{"nginx: /entrypoint.sh test", "nginx: /entrypoint.sh reload"}; !slices.Equal(w.runs, want) {
		t.Fatalf("runs %q, want %q: files written by an interrupted deploy were never applied", w.runs, want)
	}
}

// A service the deploy recreates is not reloaded: its old container (maybe of an old image,
// without the check) is replaced by one that starts with the new files.
func TestLiveChangeOfARecreatedServiceIsNotReloaded(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = nginxRelease("v1")
	rel := nginxRelease("v2")
	for i := range rel.services {
		if rel.services[i].Name == "nginx" {
			rel.services[i].ConfigHash = "nginx-2"
		}
	}
	w.commits[c2] = rel
	w.head = c1
	r, dir := newTestReconciler(t, w, ev, "nginx/conf")
	ctx := context.Background()
	r.SyncOnce(ctx, "test")
	w.head = c2
	r.SyncOnce(ctx, "poll")
	if len(w.runs) != 0 || r.snapshot().Applied != c2 {
		t.Fatalf("runs %q, applied %.12s: want nginx recreated with the new files, not reloaded", w.runs, r.snapshot().Applied)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "releases", "live", "nginx", "conf", "nginx.conf")); string(b) != "v2" {
		t.Fatalf("live nginx.conf %q, want v2", b)
	}
}

// A commit from before nginx/conf became live (its nginx mounts a file of it and has no reload
// label; its image may COPY it) keeps its own copy in place, so its build and its mount work as
// they did then: nginx is recreated, nothing reloaded. Coming back to a live commit links the
// path again and applies it.
func TestCommitFromBeforeALivePathKeepsItsOwnCopy(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = nginxRelease("v1")
	old := release{services: services("0"), files: map[string]string{"stack/nginx/conf/nginx.conf": "old"}}
	for i := range old.services {
		if old.services[i].Name == "nginx" {
			old.services[i].BindSources = []string{"$PROJECT/nginx/conf/nginx.conf"}
			old.services[i].ConfigHash = "nginx-0"
		}
	}
	w.commits[c2] = old
	w.commits[c3] = nginxRelease("v3")
	w.head = c1
	r, dir := newTestReconciler(t, w, ev, "nginx/conf")
	ctx := context.Background()
	r.SyncOnce(ctx, "test")

	w.head = c2
	r.SyncOnce(ctx, "poll")
	inRelease := filepath.Join(dir, "releases", c2, "stack", "nginx", "conf")
	if fi, err := os.Lstat(inRelease); err != nil || !fi.IsDir() {
		t.Fatalf("the old commit's nginx/conf is not its own directory: %v %v", fi, err)
	}
	if b, err := os.ReadFile(filepath.Join(inRelease, "nginx.conf")); err != nil || string(b) != "old" {
		t.Fatalf("old commit's nginx.conf %q %v", b, err)
	}
	if st := r.snapshot(); st.Applied != c2 || len(w.runs) != 0 || w.containers["nginx"].ConfigHash != "nginx-0" {
		t.Fatalf("applied %.12s, runs %q, nginx %+v: want c2 deployed by recreating nginx", st.Applied, w.runs, w.containers["nginx"])
	}
	live := filepath.Join(dir, "releases", "live", "nginx", "conf", "nginx.conf")
	if b, _ := os.ReadFile(live); string(b) != "v1" {
		t.Fatalf("the old commit wrote the live directory: %q", b)
	}

	w.head = c3
	r.SyncOnce(ctx, "poll")
	if b, _ := os.ReadFile(live); string(b) != "v3" || r.snapshot().Applied != c3 {
		t.Fatalf("live nginx.conf %q, applied %.12s: want v3 applied", b, r.snapshot().Applied)
	}
}
