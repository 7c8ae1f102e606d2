package sync

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hastack/hastack/internal/compose"
	"github.com/hastack/hastack/internal/docker"
)

// Commit ids of the fake world: full 40-hex, as the reconciler requires.
var (
	c1 = strings.Repeat("c1", 20)
	c2 = strings.Repeat("c2", 20)
	c3 = strings.Repeat("c3", 20)
)

// release is what a fake commit contains.
type release struct {
	services  []compose.Service
	invalid   bool              // compose config fails
	unhealthy map[string]bool   // these services never become healthy
	links     map[string]string // symlinks of its tree: path -> target
	files     map[string]string // files of its tree: path -> content
}

// fakeWorld is a git source, a compose CLI and a Docker engine in one, in memory.
type fakeWorld struct {
	mu         gosync.Mutex
	head       string
	commits    map[string]release
	containers map[string]docker.Container // by service
	ups        [][]string                  // every Up call
	exportGate chan struct{}               // when set, each Export waits for a value
	runs       []string                    // every command run in a container: "container: cmd"
	runErr     map[string]error            // the error of a command, by its first word after the path
	onUp       func(services []string)     // called after each Up, outside the lock
	configs    int                         // Services calls: docker compose config runs
	restarts   []string                    // every service restarted
	builds     [][]string                  // every Build call's services
}

func (w *fakeWorld) Run(ctx context.Context, container string, cmd []string) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	line := container + ": " + strings.Join(cmd, " ")
	w.runs = append(w.runs, line)
	if err := w.runErr[cmd[len(cmd)-1]]; err != nil {
		return "nginx: [emerg] unknown directive", err
	}
	return "", nil
}

func newWorld() *fakeWorld {
	return &fakeWorld{commits: map[string]release{}, containers: map[string]docker.Container{}}
}

func (w *fakeWorld) Fetch(ctx context.Context) (Revision, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.head == "" {
		return Revision{}, errors.New("no commit")
	}
	return Revision{Commit: w.head, Ref: "refs/heads/main"}, nil
}

func (w *fakeWorld) Export(ctx context.Context, commit, dst string) error {
	w.mu.Lock()
	rel, ok := w.commits[commit]
	gate := w.exportGate
	w.mu.Unlock()
	if !ok {
		return errors.New("unknown commit")
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := os.MkdirAll(filepath.Join(dst, "stack", "secrets"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dst, "stack", "secrets", ".gitignore"), []byte("*\n"), 0o644); err != nil {
		return err
	}
	for p, content := range rel.files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, p)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, p), []byte(content), 0o644); err != nil {
			return err
		}
	}
	for p, target := range rel.links {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, p)), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, filepath.Join(dst, p)); err != nil {
			return err
		}
	}
	return nil
}

func (w *fakeWorld) ProjectContainers(ctx context.Context, project string) ([]docker.Container, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []docker.Container
	for _, c := range w.containers {
		out = append(out, c)
	}
	return out, nil
}

// stack opens a release's project; the commit is the directory two levels above its first
// compose file (WorkDir/<commit>/stack/docker-compose.yml).
func (w *fakeWorld) stack(projectDir string, files []string) Stack {
	commit := strings.TrimSuffix(filepath.Base(filepath.Dir(filepath.Dir(files[0]))), ".staging")
	return &fakeStack{w: w, commit: commit, projectDir: projectDir}
}

type fakeStack struct {
	w          *fakeWorld
	commit     string
	projectDir string
}

func (s *fakeStack) rel() release {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return s.w.commits[s.commit]
}

func (s *fakeStack) Validate(ctx context.Context) error {
	if s.rel().invalid {
		return errors.New("services.web1: invalid")
	}
	return nil
}

// Services returns the release's services, with "$PROJECT" in a bind source replaced by the
// project directory, as Compose resolves it.
func (s *fakeStack) Services(ctx context.Context) ([]compose.Service, error) {
	s.w.mu.Lock()
	s.w.configs++
	s.w.mu.Unlock()
	var out []compose.Service
	for _, svc := range s.rel().services {
		svc.BindSources = slices.Clone(svc.BindSources)
		for i, b := range svc.BindSources {
			svc.BindSources[i] = strings.Replace(b, "$PROJECT", s.projectDir, 1)
		}
		out = append(out, svc)
	}
	return out, nil
}
func (s *fakeStack) Build(ctx context.Context, services ...string) error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.builds = append(s.w.builds, services)
	return nil
}

func (s *fakeStack) Restart(ctx context.Context, services ...string) error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.restarts = append(s.w.restarts, services...)
	return nil
}

func (s *fakeStack) Up(ctx context.Context, services ...string) error {
	if err := ctx.Err(); err != nil {
		return err // as the compose CLI, killed by its context
	}
	if hook := s.w.onUp; hook != nil {
		defer hook(services)
	}
	rel := s.rel()
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.ups = append(s.w.ups, services)
	for _, svc := range rel.services {
		if len(services) > 0 && !slices.Contains(services, svc.Name) {
			continue
		}
		health := "healthy"
		if rel.unhealthy[svc.Name] {
			health = "unhealthy"
		}
		s.w.containers[svc.Name] = docker.Container{Service: svc.Name, Name: svc.Name, ConfigHash: svc.ConfigHash, State: "running", Health: health,
			Created: time.Now(), StartedAt: time.Now()}
	}
	return nil
}

type recordedEvent struct {
	name   string
	firing bool
}

type fakeEvents struct {
	mu     gosync.Mutex
	events []recordedEvent
}

func (e *fakeEvents) Event(ctx context.Context, name string, firing bool, labels map[string]string, desc string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, recordedEvent{name, firing})
}

func (e *fakeEvents) has(name string, firing bool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.events {
		if ev.name == name && ev.firing == firing {
			return true
		}
	}
	return false
}

func services(hash string) []compose.Service {
	return []compose.Service{
		{Name: "db", ConfigHash: "db-1"},
		{Name: "nginx", ConfigHash: "nginx-1", DependsOn: []string{"web1", "web2"}},
		{Name: "web1", ConfigHash: "web-" + hash, RollingGroup: "web"},
		{Name: "web2", ConfigHash: "web-" + hash, RollingGroup: "web"},
	}
}

// newTestReconciler is a reconciler of w; live are its live paths (Options.Live), run through
// w's Run.
func newTestReconciler(t *testing.T, w *fakeWorld, ev *fakeEvents, live ...string) (*Reconciler, string) {
	t.Helper()
	dir := t.TempDir()
	opts := Options{
		Project: "test", Subpath: "stack", ComposeFiles: []string{"docker-compose.yml"}, WorkDir: filepath.Join(dir, "releases"),
		Persistent: []string{"secrets", ".env"}, Live: live, HealthTimeout: 2 * time.Second,
		DriftMode: DriftRestore, DriftGrace: 0, History: 10,
	}
	r, err := New(opts, w, w, w.stack, NewStore(dir), ev, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return r, dir
}

func TestDeployThenNoChange(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	ctx := context.Background()

	r.SyncOnce(ctx, "test")
	st := r.snapshot()
	if st.Applied != c1 || st.LastGood != c1 || st.InProgress != "" {
		t.Fatalf("state after deploy: %+v", st)
	}
	// Services outside the rolling group first, then web1, then web2, then nginx, which depends
	// on them.
	want := [][]string{{"db"}, {"web1"}, {"web2"}, {"nginx"}}
	if !reflect.DeepEqual(w.ups, want) {
		t.Fatalf("up calls %v, want %v", w.ups, want)
	}
	r.SyncOnce(ctx, "poll")
	if len(w.ups) != 4 {
		t.Fatalf("a sync without a new commit ran compose up again: %v", w.ups)
	}
	if h := r.snapshot().History; len(h) != 1 || h[0].Outcome != OutcomeDeployed {
		t.Fatalf("history %+v", h)
	}
}

func TestInvalidCommitChangesNothingAndIsNotRetried(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.commits[c2] = release{services: services("2"), invalid: true}
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	ctx := context.Background()
	r.SyncOnce(ctx, "test")
	ups := len(w.ups)

	w.head = c2
	r.SyncOnce(ctx, "poll")
	st := r.snapshot()
	if len(w.ups) != ups {
		t.Fatalf("an invalid commit ran compose up: %v", w.ups[ups:])
	}
	if st.Applied != c1 || st.Bad != c2 || !strings.Contains(st.BadReason, "invalid") {
		t.Fatalf("state %+v: want c1 applied and c2 marked bad", st)
	}
	if !ev.has("DeployFailed", true) {
		t.Error("no DeployFailed event")
	}
	r.SyncOnce(ctx, "poll")
	if n := len(r.snapshot().History); n != 2 {
		t.Fatalf("bad commit retried: %d history entries, want 2", n)
	}

	// A newer commit is deployed and resolves the alert.
	w.commits[c3] = release{services: services("3")}
	w.head = c3
	r.SyncOnce(ctx, "poll")
	if st := r.snapshot(); st.Applied != c3 || st.Bad != "" {
		t.Fatalf("state %+v: want c3 applied, nothing bad", st)
	}
	if !ev.has("DeployFailed", false) {
		t.Error("DeployFailed not resolved")
	}
}

func TestUnhealthyCommitIsRolledBack(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.commits[c2] = release{services: services("2"), unhealthy: map[string]bool{"web1": true}}
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	ctx := context.Background()
	r.SyncOnce(ctx, "test")
	w.ups = nil

	w.head = c2
	r.SyncOnce(ctx, "poll")
	st := r.snapshot()
	if st.Applied != c1 || st.LastGood != c1 || st.Bad != c2 || st.InProgress != "" {
		t.Fatalf("state %+v: want rolled back to c1 with c2 bad", st)
	}
	// Only web1 and web2 changed; web1 failed its gate, so web2 was never touched; then the
	// rollback re-applied c1 to web1 alone.
	if !reflect.DeepEqual(w.ups, [][]string{{"web1"}, {"web1"}}) {
		t.Fatalf("up calls %v: the rolling update must stop at the unhealthy web1", w.ups)
	}
	if w.containers["web1"].ConfigHash != "web-1" || w.containers["web1"].Health != "healthy" {
		t.Fatalf("web1 after rollback: %+v", w.containers["web1"])
	}
	h := st.History[len(st.History)-1]
	if h.Commit != c2 || h.Outcome != OutcomeRolledBack || !strings.Contains(h.Reason, "web1") {
		t.Fatalf("last history entry %+v", h)
	}
	if !ev.has("DeployRolledBack", true) {
		t.Error("no DeployRolledBack event")
	}
	if got := testutil.ToFloat64(r.metrics.rollbacks); got != 1 {
		t.Errorf("rollbacks metric %v, want 1", got)
	}
}

// An unhealthy container fails the deploy when its healthcheck says so, not when the health
// timeout (here an hour) runs out: the rollback starts at once.
func TestUnhealthyContainerFailsTheDeployAtOnce(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.commits[c2] = release{services: services("2"), unhealthy: map[string]bool{"web1": true}}
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	r.opts.HealthTimeout = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r.SyncOnce(ctx, "test")
	w.head = c2
	r.SyncOnce(ctx, "poll")
	st := r.snapshot()
	h := st.History[len(st.History)-1]
	if st.Applied != c1 || h.Outcome != OutcomeRolledBack || !strings.Contains(h.Reason, "web1 running (unhealthy)") || ctx.Err() != nil {
		t.Fatalf("state %+v, last deploy %+v (ctx %v): want rolled back because web1 is unhealthy, before the timeout", st, h, ctx.Err())
	}
}

// A deploy cut short by the agent stopping (its context cancelled mid-rollout) is not the
// commit's fault: nothing is marked bad, no rollback runs, no alert; the next start converges.
func TestDeployInterruptedByShutdownIsNotMarkedBad(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.commits[c2] = release{services: services("2")}
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	r.SyncOnce(context.Background(), "test")
	ctx, cancel := context.WithCancel(context.Background())
	w.onUp = func(services []string) {
		if slices.Contains(services, "web1") {
			cancel() // SIGTERM while web1 rolls
		}
	}
	w.head = c2
	r.SyncOnce(ctx, "poll")
	st := r.snapshot()
	if st.Bad != "" || st.InProgress != c2 || ev.has("DeployFailed", true) || ev.has("DeployRolledBack", true) {
		t.Fatalf("state %+v, events %+v: want c2 still in progress, nothing bad, no alert", st, ev.events)
	}
	w.onUp = nil
	r.SyncOnce(context.Background(), "start")
	if st := r.snapshot(); st.Applied != c2 || st.InProgress != "" || st.Bad != "" {
		t.Fatalf("after the restart: %+v, want c2 applied", st)
	}
}

func TestInterruptedDeployConverges(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.commits[c2] = release{services: services("2")}
	w.head = c1
	r, dir := newTestReconciler(t, w, ev)
	ctx := context.Background()
	r.SyncOnce(ctx, "test")

	// kill -9 during c2's deploy: the state says c2 was in progress, web1 already runs c2.
	st := r.snapshot()
	st.InProgress = c2
	if err := NewStore(dir).Save(st); err != nil {
		t.Fatal(err)
	}
	w.containers["web1"] = docker.Container{Service: "web1", ConfigHash: "web-2", State: "running", Health: "healthy"}
	w.head = c2
	r2, _ := newTestReconciler(t, w, ev)
	r2.store = NewStore(dir)
	if r2.state, _ = r2.store.Load(); r2.state.InProgress != c2 {
		t.Fatal("state not reloaded")
	}
	r2.SyncOnce(ctx, "start")
	if st := r2.snapshot(); st.Applied != c2 || st.InProgress != "" || st.LastGood != c2 {
		t.Fatalf("after restart: %+v, want converged on c2", st)
	}
}

func TestDriftIsRestored(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	ctx := context.Background()
	r.SyncOnce(ctx, "test")
	w.ups = nil

	c := w.containers["web1"]
	c.State, c.Health, c.ExitCode = "exited", "", 0 // docker stop web1
	c.Restart = "unless-stopped"
	w.containers["web1"] = c
	r.CheckDrift(ctx)
	if !reflect.DeepEqual(w.ups, [][]string{{"web1"}}) {
		t.Fatalf("drift restore ran %v, want up web1", w.ups)
	}
	if !ev.has("DriftCorrected", true) {
		t.Error("no DriftCorrected event")
	}
}

// A stack removed whole (docker compose down -v) is not recreated with empty volumes as
// drift: the agent says so, alerts and waits; `agent sync --redeploy` brings it back, and
// the alert resolves.
func TestRemovedStackIsNotRecreatedUntilRedeployed(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	ctx := context.Background()
	r.SyncOnce(ctx, "test")
	w.ups = nil
	w.containers = map[string]docker.Container{} // docker compose down
	r.CheckDrift(ctx)
	// The operator edits .env meanwhile: no deploy of that brings the stack back either.
	if err := os.WriteFile(filepath.Join(r.sharedDir(), ".env"), []byte("HTTP_PORT=8080\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.CheckDrift(ctx)
	select {
	case tr := <-r.trigger:
		r.SyncOnce(ctx, tr)
	default:
	}
	r.SyncOnce(ctx, "poll")
	if len(w.ups) != 0 || !ev.has("StackRemoved", true) || !r.Status(ctx).Removed {
		t.Fatalf("ups %v, StackRemoved fired %v, status removed %v: want nothing recreated, the alert, and the status saying so",
			w.ups, ev.has("StackRemoved", true), r.Status(ctx).Removed)
	}
	r.Redeploy("test")
	r.SyncOnce(ctx, <-r.trigger)
	if len(w.containers) != 4 || r.Status(ctx).Removed || !ev.has("StackRemoved", false) {
		t.Fatalf("after a redeploy: containers %v, removed %v, resolved %v", w.containers, r.Status(ctx).Removed, ev.has("StackRemoved", false))
	}
	if h := r.snapshot().History; len(h) != 2 || h[1].Outcome != OutcomeDeployed || h[1].Commit != c1 {
		t.Fatalf("history %+v: want the redeploy of c1 recorded", h)
	}
	// Once: the next sync does not deploy again.
	r.SyncOnce(ctx, "poll")
	if h := r.snapshot().History; len(h) != 2 {
		t.Fatalf("a redeploy ran twice: %+v", h)
	}
}

// Told to heal (drift.restore_removed), the agent recreates a removed stack like any drift.
func TestRemovedStackIsRestoredWhenConfigured(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	r.opts.RestoreRemoved = true
	ctx := context.Background()
	r.SyncOnce(ctx, "test")
	w.containers = map[string]docker.Container{}
	r.CheckDrift(ctx)
	if len(w.containers) != 4 || !ev.has("StackRemoved", true) {
		t.Fatalf("containers %v, alert %v: want the stack recreated, and the removal reported", w.containers, ev.has("StackRemoved", true))
	}
}

// Idle means idle: a drift check that finds nothing changed runs no docker compose config.
func TestDriftCheckReusesTheAppliedConfiguration(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	ctx := context.Background()
	r.SyncOnce(ctx, "test")
	r.CheckDrift(ctx)
	before := w.configs
	for range 5 {
		r.CheckDrift(ctx)
	}
	if w.configs != before {
		t.Fatalf("5 drift checks with nothing changed ran docker compose config %d times", w.configs-before)
	}
}

func TestDriftWaitsForGracePeriodAndReportModeOnlyReports(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	ctx := context.Background()
	r.SyncOnce(ctx, "test")
	w.ups = nil
	delete(w.containers, "web2") // docker rm -f web2

	r.opts.DriftGrace = time.Hour
	r.CheckDrift(ctx)
	if len(w.ups) != 0 {
		t.Fatalf("restored within the grace period: %v", w.ups)
	}
	if d := r.Status(ctx).Drift; len(d) != 1 || d[0].Service != "web2" || d[0].Reason != ReasonMissing {
		t.Fatalf("status drift %+v, want web2 missing", d)
	}
	r.opts.DriftGrace, r.opts.DriftMode = 0, DriftReport
	r.CheckDrift(ctx)
	if len(w.ups) != 0 {
		t.Fatalf("report mode restored: %v", w.ups)
	}
}

func TestStoreSaveIsAtomicAndRoundTrips(t *testing.T) {
	dir := t.TempDir()
	s := NewStore(dir)
	if st, err := s.Load(); err != nil || st.Applied != "" {
		t.Fatalf("empty store: %+v %v", st, err)
	}
	in := State{Applied: "a", LastGood: "a", Bad: "b"}
	in.Record(Deploy{Commit: "a", Outcome: OutcomeDeployed}, 2)
	in.Record(Deploy{Commit: "b", Outcome: OutcomeFailed}, 2)
	in.Record(Deploy{Commit: "c", Outcome: OutcomeDeployed}, 2)
	if err := s.Save(in); err != nil {
		t.Fatal(err)
	}
	out, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) || len(out.History) != 2 || out.History[0].Commit != "b" {
		t.Fatalf("round trip: %+v", out)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	os.WriteFile(filepath.Join(dir, "state.json"), []byte("{torn"), 0o600)
	if _, err := s.Load(); err == nil || !strings.Contains(err.Error(), "move it away") {
		t.Fatalf("corrupt state: %v", err)
	}
}

func TestPersistentPathsAreShared(t *testing.T) {
	work := t.TempDir()
	shared := filepath.Join(work, "shared")
	for _, rel := range []string{"r1", "r2"} {
		dir := filepath.Join(work, rel, "stack")
		os.MkdirAll(filepath.Join(dir, "secrets"), 0o755)
		os.WriteFile(filepath.Join(dir, "secrets", ".gitignore"), []byte("*\n"), 0o644)
		if err := linkPersistent(dir, shared, []string{"secrets", ".env", "nginx/ssl"}, true); err != nil {
			t.Fatal(err)
		}
		if rel == "r1" {
			os.WriteFile(filepath.Join(dir, "secrets", "root_password"), []byte("x"), 0o600)
		}
	}
	b, err := os.ReadFile(filepath.Join(work, "r2", "stack", "secrets", "root_password"))
	if err != nil || string(b) != "x" {
		t.Fatalf("release 2 does not see release 1's secret: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(work, "r2", "stack", "nginx", "ssl")); err != nil {
		t.Fatalf("nginx/ssl not linked: %v", err)
	}
}

// A deploy holds the database lock around the step that starts a database, and only that step.
func TestDeployHoldsTheDatabaseLockAroundDatabaseSteps(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	var held []string // the up calls made while the lock was held
	locked := false
	r.opts.ExclusiveServices = []string{"db"}
	r.opts.Exclusive = func(context.Context) (func(), error) {
		if locked {
			t.Error("the lock was taken twice")
		}
		locked = true
		return func() { locked = false }, nil
	}
	stack := w.stack
	r.newStack = func(dir string, files []string) Stack {
		return upHook{Stack: stack(dir, files), before: func(services []string) {
			if locked {
				held = append(held, strings.Join(services, ","))
			}
		}}
	}
	r.SyncOnce(context.Background(), "test")
	if !reflect.DeepEqual(held, []string{"db"}) || locked {
		t.Fatalf("up calls under the lock %v (still locked %v), want [db]", held, locked)
	}
}

type upHook struct {
	Stack
	before func([]string)
}

func (u upHook) Up(ctx context.Context, services ...string) error {
	u.before(services)
	return u.Stack.Up(ctx, services...)
}
