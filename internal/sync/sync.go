// Package sync keeps the host's Docker in the state a git commit describes: it fetches the
// source, exports the commit as a release directory, plans which services change, applies the
// plan with Compose (rolling groups one member at a time), waits until every service is healthy,
// and rolls back to the last good commit when any of that fails. It also notices containers
// changed by hand (drift) and restores them after a grace period.
package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/hastack/hastack/internal/compose"
	"github.com/hastack/hastack/internal/docker"
)

// Revision is a commit the source resolved.
type Revision struct {
	Commit  string
	Ref     string
	Subject string
}

// Source is the git side: what commit the followed ref points to, and its files.
type Source interface {
	Fetch(ctx context.Context) (Revision, error)
	// Export writes the whole tree of commit into dst, which does not exist yet.
	Export(ctx context.Context, commit, dst string) error
}

// Stack is one release's compose project.
type Stack interface {
	Validate(ctx context.Context) error
	Services(ctx context.Context) ([]compose.Service, error)
	Build(ctx context.Context, services ...string) error
	Up(ctx context.Context, services ...string) error
	Restart(ctx context.Context, services ...string) error
}

// Engine reads the project's containers.
type Engine interface {
	ProjectContainers(ctx context.Context, project string) ([]docker.Container, error)
}

// Events receives what the agent must tell people about (deploy failed, rolled back, drift
// corrected): package alerts logs, counts and delivers them.
type Events interface {
	Event(ctx context.Context, name string, firing bool, labels map[string]string, description string)
}

// DriftMode says what the agent does with a container changed by hand.
type DriftMode string

// Drift modes.
const (
	DriftRestore DriftMode = "restore"
	DriftReport  DriftMode = "report"
	DriftOff     DriftMode = "off"
)

// Options configure a Reconciler.
type Options struct {
	Project      string
	Subpath      string   // the compose project's directory inside the repository, e.g. "stack"
	ComposeFiles []string // relative to Subpath
	// WorkDir holds one exported tree per commit, WorkDir/<commit>, and WorkDir/current, a
	// symlink to the applied one. Compose runs with WorkDir/current/<Subpath> as its project
	// directory, so the paths it resolves (bind mounts, build contexts) and therefore its
	// configuration hashes stay the same from one commit to the next.
	WorkDir    string
	Persistent []string // paths under Subpath kept across releases (secrets/, .env, ...)
	// EnvFile is the env file Compose reads besides the stack's (compose.env_file), if any.
	EnvFile string
	// RestoreRemoved: a drift check that finds no container of the project recreates the
	// whole stack (with DriftRestore); by default it alerts and waits.
	RestoreRemoved bool
	// Live are directories under Subpath that services reload in place (live.go).
	Live          []string
	SharedDir     string        // where the persistent paths live; "" means WorkDir/shared
	HealthTimeout time.Duration // how long a deploy waits for every service to be healthy
	PollInterval  time.Duration // 0: no polling
	DriftMode     DriftMode
	DriftGrace    time.Duration
	DriftInterval time.Duration
	History       int
	// Exclusive, when set, is taken around changes to the ExclusiveServices (the databases),
	// from `compose up` until they are ready: the database watch does not take a deploy's
	// restart of a server for its death.
	Exclusive         func(ctx context.Context) (unlock func(), err error)
	ExclusiveServices []string
}

// ExclusiveWait bounds how long a deploy keeps the database watch waiting for a database
// server it started to become ready.
const ExclusiveWait = time.Minute

// exclusiveOf returns the services among services that are ExclusiveServices.
func (r *Reconciler) exclusiveOf(services []string) []string {
	if r.opts.Exclusive == nil {
		return nil
	}
	var out []string
	for _, s := range services {
		if slices.Contains(r.opts.ExclusiveServices, s) {
			out = append(out, s)
		}
	}
	return out
}

// up runs `compose up` for services. When they include ExclusiveServices (the databases), it
// holds Options.Exclusive from before `compose up` until those are ready, at most
// ExclusiveWait: the database watch waits while they start, and a server that does not become
// ready (quarantined, say) does not keep it from failing over a primary that dies meanwhile.
func (r *Reconciler) up(ctx context.Context, stack Stack, services []string) error {
	dbs := r.exclusiveOf(services)
	if len(dbs) == 0 {
		return stack.Up(ctx, services...)
	}
	unlock, err := r.opts.Exclusive(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := stack.Up(ctx, services...); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, ExclusiveWait)
	defer cancel()
	_ = r.waitReady(wctx, dbs) // not ready in time: the deploy's own wait judges it
	return nil
}

// Reconciler runs deploys and drift correction. Its methods are safe for concurrent use.
type Reconciler struct {
	opts     Options
	src      Source
	engine   Engine
	runner   Runner // engine's Run, for the live paths' reloads
	newStack func(projectDir string, files []string) Stack
	store    *Store
	events   Events
	metrics  *Metrics
	log      *slog.Logger

	trigger  chan string
	redeploy atomic.Bool // the next sync deploys even the applied commit (Redeploy)
	// outsidePending: the next sync applies a change to the files outside git (outside.go).
	outsidePending atomic.Bool
	diffs          chan struct{} // one token per diff running, MaxDiffs at most
	// apply serialises everything that changes containers: deploys and drift corrections.
	apply gosync.Mutex

	mu       gosync.Mutex // guards the fields below
	state    State
	status   Status
	progress *Progress     // of the deploy in progress, if any
	services servicesCache // the applied release's services, for drift checks
	// deployStarted is when the deploy in progress started: waitReady fails at once only for
	// containers started since (one this deploy did not touch may be briefly unhealthy).
	deployStarted time.Time
	// outsideTried is the digest key of the outside files whose change failed to apply: not
	// tried again until they change again.
	outsideTried string
	driftSince   map[string]time.Time
}

// Status is what `agent status` shows.
type Status struct {
	Project    string `json:"project"`
	Ref        string `json:"ref,omitempty"`
	Remote     string `json:"remote_commit,omitempty"`
	Applied    string `json:"applied_commit,omitempty"`
	LastGood   string `json:"last_good_commit,omitempty"`
	Bad        string `json:"bad_commit,omitempty"`
	BadReason  string `json:"bad_reason,omitempty"`
	InProgress string `json:"in_progress,omitempty"`
	// Removed: no container of the project is left, and the agent waits (drift.go).
	Removed    bool          `json:"removed,omitempty"`
	Progress   *Progress     `json:"progress,omitempty"` // what the deploy in progress does now
	LastSync   time.Time     `json:"last_sync"`
	LastResult string        `json:"last_result,omitempty"`
	LastError  string        `json:"last_error,omitempty"`
	Services   []ServiceInfo `json:"services"`
	Drift      []Change      `json:"drift"`
	History    []Deploy      `json:"history"`
}

// ServiceInfo is one service's container state.
type ServiceInfo struct {
	Service   string `json:"service"`
	Container string `json:"container"`
	State     string `json:"state"`
	Ready     bool   `json:"ready"`
}

// New makes a Reconciler. newStack opens a compose project: its (stable) project directory and
// the absolute paths of its compose files.
func New(opts Options, src Source, engine Engine, newStack func(projectDir string, files []string) Stack, store *Store, events Events, metrics *Metrics, log *slog.Logger) (*Reconciler, error) {
	st, err := store.Load()
	if err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	r := &Reconciler{
		opts: opts, src: src, engine: engine, newStack: newStack, store: store,
		events: events, metrics: metrics, log: log,
		trigger: make(chan string, 1), diffs: make(chan struct{}, MaxDiffs), state: st, driftSince: map[string]time.Time{},
	}
	if rn, ok := engine.(Runner); ok {
		r.runner = rn
	} else if len(opts.Live) > 0 {
		return nil, fmt.Errorf("live paths %v need an engine that runs commands in containers", opts.Live)
	}
	r.removeDiffLeftovers()
	pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	r.pruneReleases(pctx, st)
	cancel()
	r.status.Project = opts.Project
	if st.Applied != "" {
		// What the host runs is known from the start, not only after the next deploy.
		metrics.deployedCommit(st.Applied)
	}
	return r, nil
}

// Trigger asks for a sync as soon as possible; triggers that arrive while one is pending merge.
func (r *Reconciler) Trigger(reason string) {
	select {
	case r.trigger <- reason:
	default:
	}
}

// isRemoved tells whether the stack was removed and the agent waits (not told to heal it).
func (r *Reconciler) isRemoved() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status.Removed && !r.opts.RestoreRemoved
}

// Redeploy asks for a sync that deploys the source's commit even if it is the applied one:
// every service is brought back to it (a removed stack recreated, a stopped one started). When
// the source is at a commit that failed, the last good one is deployed instead.
func (r *Reconciler) Redeploy(reason string) {
	r.redeploy.Store(true)
	r.Trigger(reason)
}

// Run syncs at start, then on every trigger and poll tick, and checks for drift, until ctx
// ends. A deploy in progress when ctx ends is finished or abandoned by its own context: the
// saved state lets the next start converge.
func (r *Reconciler) Run(ctx context.Context) error {
	var poll <-chan time.Time
	if r.opts.PollInterval > 0 {
		t := time.NewTicker(r.opts.PollInterval)
		defer t.Stop()
		poll = t.C
	}
	var driftTick <-chan time.Time
	// The drift check also notices a removed stack and files changed outside git: it runs
	// whatever the drift mode (which governs only what it does about drifted services).
	if r.opts.DriftInterval > 0 {
		t := time.NewTicker(r.opts.DriftInterval)
		defer t.Stop()
		driftTick = t.C
	}
	r.SyncOnce(ctx, "start")
	for {
		select {
		case <-ctx.Done():
			return nil
		case reason := <-r.trigger:
			r.SyncOnce(ctx, reason)
		case <-poll:
			r.SyncOnce(ctx, "poll")
		case <-driftTick:
			r.CheckDrift(ctx)
		}
	}
}

// SyncOnce fetches the source and deploys its commit if the host is not on it yet.
func (r *Reconciler) SyncOnce(ctx context.Context, trigger string) {
	start := time.Now()
	err := r.sync(ctx, trigger)
	r.mu.Lock()
	r.status.LastSync = start
	if err != nil {
		r.status.LastResult, r.status.LastError = "error", err.Error()
	} else {
		r.status.LastResult, r.status.LastError = "ok", ""
	}
	r.mu.Unlock()
	r.metrics.syncDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		r.metrics.syncFailures.Inc()
		r.log.Error("sync failed", "trigger", trigger, "err", err)
		return
	}
	r.metrics.lastSuccess.SetToCurrentTime()
}

func (r *Reconciler) snapshot() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.state
	s.History = append([]Deploy(nil), r.state.History...)
	return s
}

func (r *Reconciler) save(s State) error {
	if err := r.store.Save(s); err != nil {
		return err
	}
	r.mu.Lock()
	r.state = s
	r.mu.Unlock()
	return nil
}

func (r *Reconciler) sync(ctx context.Context, trigger string) error {
	rev, err := r.src.Fetch(ctx)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	r.mu.Lock()
	r.status.Ref, r.status.Remote = rev.Ref, rev.Commit
	r.mu.Unlock()

	r.apply.Lock()
	defer r.apply.Unlock()
	st := r.snapshot()
	switch {
	case st.InProgress != "":
		// A deploy was interrupted: converge to the source's commit, or to the last good one
		// when the source still points at a commit known to be bad.
		r.log.Warn("previous deploy was interrupted; converging", "interrupted", short(st.InProgress))
		if rev.Commit == st.Bad && st.LastGood != "" {
			return r.deploy(ctx, Revision{Commit: st.LastGood}, "recover", true)
		}
		return r.deploy(ctx, rev, "recover", false)
	case rev.Commit == st.Bad:
		if r.redeploy.Swap(false) && st.LastGood != "" {
			return r.deploy(ctx, Revision{Commit: st.LastGood}, trigger, true)
		}
		// A change outside git is applied on the commit that runs, whatever the source is at.
		if r.outsidePending.Swap(false) && st.Applied != "" && st.Outside != nil && !r.isRemoved() {
			if changed := changedOutside(st.Outside, r.outsideDigests()); len(changed) > 0 {
				return r.deployOutside(ctx, Revision{Commit: st.Applied}, changed)
			}
		}
		r.log.Debug("source is at a commit that failed; waiting for a newer one", "commit", short(rev.Commit))
		return nil
	case rev.Commit == st.Applied:
		if r.redeploy.Swap(false) {
			return r.deploy(ctx, rev, trigger, false)
		}
		if r.outsidePending.Swap(false) && st.Outside != nil && !r.isRemoved() {
			if changed := changedOutside(st.Outside, r.outsideDigests()); len(changed) > 0 {
				return r.deployOutside(ctx, rev, changed)
			}
		}
		return nil
	}
	return r.deploy(ctx, rev, trigger, false)
}

// deploy brings the host to rev. A failure after containers were touched rolls back to the
// last good commit (unless this already is the rollback).
func (r *Reconciler) deploy(ctx context.Context, rev Revision, trigger string, isRollback bool) error {
	return r.run(ctx, rev, Deploy{Commit: rev.Commit, Subject: rev.Subject, Trigger: trigger, Started: time.Now()}, isRollback)
}

// deployOutside applies a change to the files outside git (outside.go) by a deploy of the
// applied commit.
func (r *Reconciler) deployOutside(ctx context.Context, rev Revision, changed []string) error {
	rev.Subject = "files outside git: " + strings.Join(changed, ", ")
	return r.run(ctx, rev, Deploy{Commit: rev.Commit, Subject: rev.Subject, Trigger: "outside", Started: time.Now(), Outside: changed}, false)
}

// run carries out deploy d of rev.
func (r *Reconciler) run(ctx context.Context, rev Revision, d Deploy, isRollback bool) error {
	trigger := d.Trigger
	st := r.snapshot()
	// The files outside git as this deploy starts: what it applies. A change not yet applied
	// (a commit deployed before the drift check saw it) is applied by this deploy too, so a
	// new certificate is reloaded even when a commit lands first.
	outside := r.outsideDigests()
	if st.Outside != nil {
		for _, p := range changedOutside(st.Outside, outside) {
			if !slices.Contains(d.Outside, p) {
				d.Outside = append(d.Outside, p)
			}
		}
	}
	d.started = outside
	r.mu.Lock()
	r.deployStarted = time.Now()
	r.mu.Unlock()
	log := r.log.With("commit", short(rev.Commit), "trigger", trigger)
	log.Info("deploying", "subject", rev.Subject)
	defer r.startProgress(rev, isRollback)()

	stack, err := r.prepare(ctx, rev.Commit)
	if err == nil {
		err = stack.Validate(ctx)
	}
	if err != nil {
		// Nothing was touched: the running stack keeps serving.
		return r.fail(ctx, st, d, fmt.Errorf("prepare release: %w", err), false, isRollback)
	}
	st.InProgress = rev.Commit
	if err := r.save(st); err != nil {
		return err
	}
	if err := r.linkCurrent(rev.Commit); err != nil {
		return err
	}
	plan, touched, err := r.applyRelease(ctx, stack, rev.Commit, &d)
	d.Recreated = plan.Services()
	if err != nil {
		if !touched && st.Applied != "" {
			// Nothing ran: point current back at the release that runs.
			if lerr := r.linkCurrent(st.Applied); lerr != nil {
				r.log.Error("restore current link", "err", lerr)
			}
		} else {
			st.Applied = rev.Commit // partially: the rollback below, or the next start, converges
		}
		return r.fail(ctx, st, d, err, touched, isRollback)
	}
	st.Applied, st.LastGood, st.InProgress = rev.Commit, rev.Commit, ""
	// The files outside git this deploy applied: as it found them; the first deploy, as it
	// leaves them (it made some: the shared directory's first copy, the secrets secrets-init
	// generates). A change made meanwhile is applied by the next check.
	if st.Outside == nil {
		st.Outside = r.outsideDigests()
	} else {
		st.Outside = outside
	}
	r.mu.Lock()
	outsideFailed := r.outsideTried != ""
	r.outsideTried = ""
	r.mu.Unlock()
	switch {
	case isRollback:
	case d.Trigger == "outside":
		// The files outside git fixed: their failure is behind us; a bad commit stays bad.
		if outsideFailed && st.Bad == "" {
			r.events.Event(ctx, "DeployFailed", false, nil, "")
		}
	case st.Bad != "" || outsideFailed:
		// A newer commit deployed: the failure is behind us.
		r.events.Event(ctx, "DeployFailed", false, nil, "")
		st.Bad, st.BadReason = "", ""
	}
	d.Outcome, d.Finished = OutcomeDeployed, time.Now()
	st.Record(d, r.opts.History)
	if err := r.save(st); err != nil {
		return err
	}
	r.metrics.deployedCommit(rev.Commit)
	r.stackRemoved(ctx, false) // it has containers again
	r.redeploy.Store(false)    // a redeploy asked for while this one ran: done by it
	r.pruneReleases(ctx, st)
	log.Info("deployed", "recreated", d.Recreated, "took", time.Since(d.Started).Round(time.Millisecond))
	return nil
}

// fail records a failed deploy, marks the commit bad and, when containers were touched, rolls
// back to the last good commit. A failed rollback is recorded but marks nothing bad: the commit
// it restores was good.
func (r *Reconciler) fail(ctx context.Context, st State, d Deploy, cause error, touched, isRollback bool) error {
	if ctx.Err() != nil {
		// The agent is stopping: not the commit's fault. Nothing is marked bad and no rollback
		// runs; the saved InProgress (once anything was touched) makes the next start converge.
		r.log.Warn("deploy interrupted: the agent is stopping", "commit", short(d.Commit), "err", cause)
		return cause
	}
	d.Finished, d.Reason = time.Now(), cause.Error()
	d.Outcome = OutcomeFailed
	if d.Trigger == "outside" {
		// Git holds no older copy of those files: nothing to roll back to, and the commit is
		// not at fault. Tried again when the files change again (from what this deploy found).
		r.mu.Lock()
		r.outsideTried = digestKey(d.started)
		r.mu.Unlock()
		st.InProgress = ""
		st.Record(d, r.opts.History)
		if err := r.save(st); err != nil {
			return err
		}
		r.events.Event(ctx, "DeployFailed", true, map[string]string{"commit": short(d.Commit)},
			fmt.Sprintf("a change to files outside git (%s) failed to apply: %v; fix or put back the files, the agent tries again when they change",
				strings.Join(d.Outside, ", "), cause))
		return cause
	}
	if isRollback {
		st.InProgress = ""
		st.Record(d, r.opts.History)
		if err := r.save(st); err != nil {
			return err
		}
		return cause
	}
	st.Bad, st.BadReason = d.Commit, cause.Error()
	r.events.Event(ctx, "DeployFailed", true, map[string]string{"commit": short(d.Commit)},
		fmt.Sprintf("deploy of %s failed: %v", short(d.Commit), cause))
	if !touched || st.LastGood == "" || st.LastGood == d.Commit {
		st.InProgress = ""
		st.Record(d, r.opts.History)
		if err := r.save(st); err != nil {
			return err
		}
		return cause
	}
	r.log.Error("deploy failed; rolling back", "commit", short(d.Commit), "to", short(st.LastGood), "err", cause)
	r.metrics.rollbacks.Inc()
	if err := r.save(st); err != nil {
		return err
	}
	rbErr := r.deploy(ctx, Revision{Commit: st.LastGood, Subject: "rollback"}, "rollback", true)
	st = r.snapshot()
	if rbErr != nil {
		d.Outcome = OutcomeRollbackFailed
		d.Reason = fmt.Sprintf("%v; rollback to %s failed: %v", cause, short(st.LastGood), rbErr)
	} else {
		d.Outcome = OutcomeRolledBack
		r.events.Event(ctx, "DeployRolledBack", true, map[string]string{"commit": short(d.Commit)},
			fmt.Sprintf("deploy of %s failed and was rolled back to %s: %v", short(d.Commit), short(st.LastGood), cause))
	}
	st.Bad, st.BadReason = d.Commit, cause.Error()
	st.Record(d, r.opts.History)
	if err := r.save(st); err != nil {
		return err
	}
	return fmt.Errorf("%s: %w", d.Outcome, cause)
}

// applyRelease builds and brings up a release whose files current/ points at, rolling groups
// one member at a time, and waits until every service is ready. touched says whether any
// container may have changed.
func (r *Reconciler) applyRelease(ctx context.Context, stack Stack, commit string, d *Deploy) (plan Plan, touched bool, err error) {
	services, err := stack.Services(ctx)
	if err != nil {
		return plan, false, fmt.Errorf("read services: %w", err)
	}
	running, err := r.engine.ProjectContainers(ctx, r.opts.Project)
	if err != nil {
		return plan, false, err
	}
	plan = MakePlan(services, running)
	if len(plan.Changes) > 0 {
		// Why each service is recreated: the history keeps the names only.
		changes := make([]string, len(plan.Changes))
		for i, c := range plan.Changes {
			changes[i] = c.Service + ": " + c.Reason
		}
		r.log.Info("plan", "commit", short(commit), "changes", changes)
	}
	// Only the images of the services the plan recreates are built: building every image of
	// the stack (cached or not) holds both cores of a small host for a minute, and the
	// running services' health probes starve meanwhile.
	if build := buildable(services, plan.Services()); len(build) > 0 {
		r.phase("building", build, 0, 0)
		if err := stack.Build(ctx, build...); err != nil {
			return plan, false, fmt.Errorf("build: %w", err)
		}
	}
	// The live paths first: a failed check leaves everything as it was; a service recreated
	// below starts with the new files.
	if len(r.opts.Live) > 0 {
		root, err := r.releaseRoot(commit)
		if err != nil {
			return plan, false, err
		}
		r.phase("reloading", nil, 0, 0)
		reloaded, err := r.applyLive(ctx, root, filepath.Join(r.currentLink(), r.opts.Subpath), services, plan.Services())
		d.Reloaded = reloaded
		if err != nil {
			return plan, len(reloaded) > 0, err
		}
	}
	for i, step := range plan.Steps {
		touched = true
		r.phase("starting", step, i+1, len(plan.Steps))
		if err := r.up(ctx, stack, step); err != nil {
			return plan, true, fmt.Errorf("up %s: %w", strings.Join(step, " "), err)
		}
		// Each step healthy before the next: a rolling member before its sibling goes, the
		// base services before what depends on them.
		r.phase("waiting", step, i+1, len(plan.Steps))
		if err := r.waitReady(ctx, step); err != nil {
			return plan, true, err
		}
	}
	if len(d.Outside) > 0 {
		touched = true
		if err := r.applyOutside(ctx, stack, d, services, plan.Services()); err != nil {
			return plan, true, err
		}
	}
	var all []string
	for _, s := range services {
		all = append(all, s.Name)
	}
	r.phase("waiting", []string{"every service"}, 0, 0)
	if err := r.waitReady(ctx, all); err != nil {
		return plan, true, err
	}
	return plan, touched, nil
}

// buildable are the services of names that build their image.
func buildable(services []compose.Service, names []string) []string {
	var out []string
	for _, s := range services {
		if s.BuildContext != "" && slices.Contains(names, s.Name) {
			out = append(out, s.Name)
		}
	}
	slices.Sort(out)
	return out
}

// waitReady waits until every container of the named services is ready, or the health
// timeout passes. A container that has failed for good (its healthcheck says unhealthy, or it
// exited with an error and will not restart) fails the wait at once: waiting out the timeout
// would only keep it in place longer before the rollback.
func (r *Reconciler) waitReady(ctx context.Context, services []string) error {
	deadline := time.Now().Add(r.opts.HealthTimeout)
	r.mu.Lock()
	since := r.deployStarted
	r.mu.Unlock()
	want := map[string]bool{}
	for _, s := range services {
		want[s] = true
	}
	for {
		cs, err := r.engine.ProjectContainers(ctx, r.opts.Project)
		if err != nil {
			return err
		}
		var waiting, failed []string
		seen := map[string]bool{}
		for _, c := range cs {
			if !want[c.Service] {
				continue
			}
			seen[c.Service] = true
			if c.Failed() && !c.StartedAt.Before(since) {
				failed = append(failed, c.Service+" "+c.Describe())
			}
			if !c.Ready() {
				waiting = append(waiting, c.Service+" "+c.Describe())
			}
		}
		for s := range want {
			if !seen[s] {
				waiting = append(waiting, s+" missing")
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		slices.Sort(waiting)
		r.waiting(waiting)
		if len(failed) > 0 {
			slices.Sort(failed)
			return fmt.Errorf("health gate: failed: %s", strings.Join(failed, ", "))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("health gate: not ready after %v: %s", r.opts.HealthTimeout, strings.Join(waiting, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ErrBusy is returned by Plan while MaxDiffs diffs run already.
var ErrBusy = errors.New("too many diffs at once")

// MaxDiffs bounds the diffs that run at once: each exports a whole tree and runs Compose.
const MaxDiffs = 2

// Plan exports commit (the source's when empty; else a full 40-hex id the source has) into a
// temporary directory and says what deploying it would change, without changing anything:
// nothing is written outside that directory, which is removed before Plan returns.
func (r *Reconciler) Plan(ctx context.Context, commit string) (Revision, Plan, error) {
	if commit != "" {
		if err := checkCommit(commit); err != nil {
			return Revision{}, Plan{}, err
		}
	}
	select {
	case r.diffs <- struct{}{}:
		defer func() { <-r.diffs }()
	default:
		return Revision{}, Plan{}, fmt.Errorf("diff: %w (%d): try again when one has finished", ErrBusy, MaxDiffs)
	}
	// Fetch even for an explicit commit: it may be newer than the mirror.
	rev, err := r.src.Fetch(ctx)
	if err != nil {
		return rev, Plan{}, fmt.Errorf("fetch: %w", err)
	}
	if commit != "" && commit != rev.Commit {
		rev = Revision{Commit: commit}
	}
	if err := os.MkdirAll(r.opts.WorkDir, 0o755); err != nil {
		return rev, Plan{}, fmt.Errorf("create work dir: %w", err)
	}
	tmp, err := os.MkdirTemp(r.opts.WorkDir, diffPrefix+"*")
	if err != nil {
		return rev, Plan{}, fmt.Errorf("diff: %w", err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, rev.Commit)
	if err := r.exportRelease(ctx, rev.Commit, root, false); err != nil {
		return rev, Plan{}, err
	}
	// Compose resolves paths as a deploy would, under current/, once there is one.
	base := r.currentLink()
	if _, err := os.Stat(base); err != nil {
		base = root
	}
	stack, err := r.openRelease(ctx, rev.Commit, root, base)
	if err != nil {
		return rev, Plan{}, err
	}
	if err := stack.Validate(ctx); err != nil {
		return rev, Plan{}, err
	}
	services, err := stack.Services(ctx)
	if err != nil {
		return rev, Plan{}, err
	}
	running, err := r.engine.ProjectContainers(ctx, r.opts.Project)
	if err != nil {
		return rev, Plan{}, err
	}
	plan := MakePlan(services, running)
	if plan.Reloads, err = r.liveReloads(ctx, filepath.Join(root, r.opts.Subpath), filepath.Join(base, r.opts.Subpath), services, plan.Services()); err != nil {
		return rev, plan, err
	}
	return rev, plan, nil
}

// Status reports the agent's view, with each service's container state read now.
func (r *Reconciler) Status(ctx context.Context) Status {
	st := r.snapshot()
	r.mu.Lock()
	s := r.status
	s.Drift = append([]Change(nil), r.status.Drift...)
	if r.progress != nil {
		p := *r.progress
		s.Progress = &p
	}
	r.mu.Unlock()
	s.Applied, s.LastGood, s.Bad, s.BadReason, s.InProgress = st.Applied, st.LastGood, st.Bad, st.BadReason, st.InProgress
	if s.InProgress == "" && s.Progress != nil {
		s.InProgress = s.Progress.Commit // preparing: nothing touched yet, nothing persisted
	}
	s.History = st.History
	if cs, err := r.engine.ProjectContainers(ctx, r.opts.Project); err == nil {
		for _, c := range cs {
			s.Services = append(s.Services, ServiceInfo{Service: c.Service, Container: c.Name, State: c.Describe(), Ready: c.Ready()})
		}
	} else if s.LastError == "" {
		s.LastError = err.Error()
	}
	return s
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
