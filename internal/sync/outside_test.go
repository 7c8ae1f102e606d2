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

// outsideRelease: web1 and web2 read secrets/web, the database secrets/db, nginx reloads
// nginx/ssl in place.
func outsideRelease() release {
	svcs := services("1")
	for i := range svcs {
		switch svcs[i].Name {
		case "web1", "web2":
			svcs[i].BindSources = []string{"$PROJECT/secrets/web"}
		case "db":
			svcs[i].BindSources = []string{"$PROJECT/secrets/db"}
		case "nginx":
			svcs[i].BindSources = []string{"$PROJECT/nginx/ssl"}
			svcs[i].ReloadTest = []string{"/entrypoint.sh", "test"}
			svcs[i].Reload = []string{"/entrypoint.sh", "reload"}
		}
	}
	return release{services: svcs}
}

func writeShared(t *testing.T, r *Reconciler, p, content string) {
	t.Helper()
	full := filepath.Join(r.sharedDir(), p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// pending returns the trigger a check asked for, if any.
func pending(r *Reconciler) string {
	select {
	case t := <-r.trigger:
		return t
	default:
		return ""
	}
}

// A change to the files outside git is applied like a deploy: the services that read a
// changed directory restart (the database does not: it reads its secrets only when it
// initialises), nginx reloads its certificate in place, the history says so; nothing else is
// touched, and an unchanged check starts nothing.
func TestOutsideChangeIsAppliedHealthGated(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = outsideRelease()
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	r.opts.Persistent = []string{"secrets", "nginx/ssl", ".env"}
	r.opts.ExclusiveServices = []string{"db"}
	ctx := context.Background()
	r.SyncOnce(ctx, "test")
	r.CheckDrift(ctx)
	if got := pending(r); got != "" {
		t.Fatalf("nothing changed outside git, yet the check asked for %q", got)
	}
	w.ups = nil

	writeShared(t, r, "secrets/web/db_app_password", "new")
	writeShared(t, r, "secrets/db/root_password", "new")
	writeShared(t, r, "nginx/ssl/nginx.crt", "cert")
	r.CheckDrift(ctx)
	trigger := pending(r)
	if !strings.HasPrefix(trigger, "outside: ") {
		t.Fatalf("the check asked for %q, want a deploy of the outside change", trigger)
	}
	r.SyncOnce(ctx, trigger)
	st := r.snapshot()
	last := st.History[len(st.History)-1]
	slices.Sort(w.restarts)
	if last.Trigger != "outside" || last.Outcome != OutcomeDeployed || !slices.Equal(w.restarts, []string{"web1", "web2"}) ||
		!slices.Equal(last.Reloaded, []string{"nginx"}) || len(w.ups) != 0 {
		t.Fatalf("deploy %+v, restarts %v, ups %v: want web1 and web2 restarted, nginx reloaded, nothing recreated", last, w.restarts, w.ups)
	}
	if want := []string{"nginx/ssl/nginx.crt", "secrets/db", "secrets/web"}; !slices.Equal(last.Outside, want) {
		t.Fatalf("outside %v, want %v", last.Outside, want)
	}
	r.CheckDrift(ctx)
	if got := pending(r); got != "" {
		t.Fatalf("an applied change asked again: %q", got)
	}
}

// A change outside git that fails (the new certificate fails nginx's check) marks no commit
// bad and rolls nothing back; it alerts, is not retried until the files change again, and the
// fixed files resolve the alert.
func TestFailedOutsideChangeWaitsForTheNextChange(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = outsideRelease()
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	r.opts.Persistent = []string{"secrets", "nginx/ssl", ".env"}
	ctx := context.Background()
	r.SyncOnce(ctx, "test")

	w.runErr = map[string]error{"test": errors.New("exit status 1")}
	writeShared(t, r, "nginx/ssl/nginx.crt", "broken")
	r.CheckDrift(ctx)
	r.SyncOnce(ctx, pending(r))
	st := r.snapshot()
	last := st.History[len(st.History)-1]
	if st.Bad != "" || st.Applied != c1 || last.Outcome != OutcomeFailed || !ev.has("DeployFailed", true) || !strings.Contains(last.Reason, "check") {
		t.Fatalf("state %+v, last %+v: want a failed outside change, no commit bad, DeployFailed", st, last)
	}
	r.CheckDrift(ctx)
	if got := pending(r); got != "" {
		t.Fatalf("a failed change was retried with the same files: %q", got)
	}
	w.runErr = nil
	writeShared(t, r, "nginx/ssl/nginx.crt", "fixed!")
	r.CheckDrift(ctx)
	r.SyncOnce(ctx, pending(r))
	if last := r.snapshot().History; last[len(last)-1].Outcome != OutcomeDeployed || !ev.has("DeployFailed", false) {
		t.Fatalf("history %+v, resolved %v: want the fixed files applied and the alert resolved", last[len(last)-1], ev.has("DeployFailed", false))
	}
}

// A deploy builds the images of the services it recreates, and no other: a web change builds
// web1 and web2, a redeploy that recreates nothing builds nothing.
func TestDeployBuildsOnlyWhatItRecreates(t *testing.T) {
	withBuilds := func(hash string) release {
		svcs := services(hash)
		for i := range svcs {
			if svcs[i].Name != "db" {
				svcs[i].BuildContext = "/ctx/" + svcs[i].Name
			}
		}
		return release{services: svcs}
	}
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = withBuilds("1")
	w.commits[c2] = withBuilds("2")
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	ctx := context.Background()
	r.SyncOnce(ctx, "test")
	w.builds = nil
	w.head = c2
	r.SyncOnce(ctx, "poll")
	if len(w.builds) != 1 || !slices.Equal(w.builds[0], []string{"web1", "web2"}) {
		t.Fatalf("builds %v, want [[web1 web2]]", w.builds)
	}
	w.builds = nil
	r.Redeploy("test")
	r.SyncOnce(ctx, <-r.trigger)
	if len(w.builds) != 0 {
		t.Fatalf("a redeploy that recreates nothing built %v", w.builds)
	}
}

// A change outside git is applied on the commit that runs even while the source is at a commit
// that failed (it used to wait, with drift checks stopped, for a newer commit).
func TestOutsideChangeIsAppliedWhileTheSourceIsAtABadCommit(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = outsideRelease()
	w.commits[c2] = release{services: services("2"), invalid: true}
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	ctx := context.Background()
	r.SyncOnce(ctx, "test")
	w.head = c2
	r.SyncOnce(ctx, "poll")
	if r.snapshot().Bad != c2 {
		t.Fatal("c2 not marked bad")
	}
	writeShared(t, r, "secrets/web/db_app_password", "new")
	r.CheckDrift(ctx)
	r.SyncOnce(ctx, pending(r))
	st := r.snapshot()
	last := st.History[len(st.History)-1]
	if last.Trigger != "outside" || last.Commit != c1 || last.Outcome != OutcomeDeployed || st.Bad != c2 {
		t.Fatalf("last %+v, state %+v: want the outside change applied on c1, c2 still bad", last, st)
	}
}

// secrets-init, run again by every `compose up` of a service that depends on it, rewrites a
// secret with the same content and makes and removes a temporary file beside it: no change.
// A new content is one.
func TestOutsideDigestsFollowContentNotTouches(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	r, _ := newTestReconciler(t, w, ev)
	writeShared(t, r, "secrets/web/db_app_password", "pw")
	before := r.outsideDigests()
	dir := filepath.Join(r.sharedDir(), "secrets", "web")
	tmp := filepath.Join(dir, "db_app_password.XXXX")
	os.WriteFile(tmp, []byte("pw"), 0o600)
	os.Rename(tmp, filepath.Join(dir, "db_app_password")) // the same content, a new file
	os.WriteFile(tmp, []byte("x"), 0o600)
	os.Remove(tmp) // the directory touched
	if changed := changedOutside(before, r.outsideDigests()); len(changed) != 0 {
		t.Fatalf("a rewrite with the same content counted as a change: %v", changed)
	}
	writeShared(t, r, "secrets/web/db_app_password", "new")
	if changed := changedOutside(before, r.outsideDigests()); !slices.Equal(changed, []string{"secrets/web"}) {
		t.Fatalf("changed %v, want [secrets/web]", changed)
	}
}
