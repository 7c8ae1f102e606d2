package sync

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hastack/hastack/internal/compose"
)

// CheckDrift compares the containers with the applied release; services that stay drifted
// for the grace period are restored (DriftRestore) or only reported (DriftReport).
func (r *Reconciler) CheckDrift(ctx context.Context) {
	st := r.snapshot()
	if st.Applied == "" || st.InProgress != "" {
		return
	}
	if !r.apply.TryLock() {
		return // a deploy is running: it owns the containers
	}
	defer r.apply.Unlock()
	st = r.snapshot() // as the last deploy, now finished, left it
	if st.Applied == "" || st.InProgress != "" {
		return
	}
	running, err := r.engine.ProjectContainers(ctx, r.opts.Project)
	if err != nil {
		r.log.Warn("drift check: list containers", "err", err)
		return
	}
	// A project with no container at all was removed (docker compose down): recreating it,
	// with empty volumes, would undo the operator's cleanup, and so would applying a change to
	// the files outside git. Say so and wait for the next commit or `agent sync --redeploy`,
	// unless told to heal it.
	removed := len(running) == 0
	r.stackRemoved(ctx, removed)
	if removed && !r.opts.RestoreRemoved {
		return
	}
	outside := r.outsideDigests() // read once: the change check and the services cache key
	if r.checkOutside(st, outside) {
		return // the deploy of the change comes first
	}
	if r.opts.DriftMode == DriftOff {
		return
	}
	root, err := r.releaseRoot(st.Applied)
	if err != nil {
		r.log.Warn("drift check: applied release", "err", err)
		return
	}
	stack := r.stackOf(root, filepath.Join(r.currentLink(), r.opts.Subpath), true)
	services, err := r.appliedServices(ctx, st.Applied+" "+digestKey(outside), stack)
	if err != nil {
		r.log.Warn("drift check: read services", "err", err)
		return
	}
	plan := MakePlan(services, running)
	now := time.Now()
	r.mu.Lock()
	drifted := map[string]bool{}
	var due []string
	for _, c := range plan.Changes {
		drifted[c.Service] = true
		since, ok := r.driftSince[c.Service]
		if !ok {
			r.driftSince[c.Service] = now
			r.log.Warn("drift: service differs from the applied commit", "service", c.Service, "reason", c.Reason,
				"mode", r.opts.DriftMode, "grace", r.opts.DriftGrace)
			since = now
		}
		if c.Reason != ReasonOrphan && now.Sub(since) >= r.opts.DriftGrace {
			due = append(due, c.Service)
		}
	}
	for s := range r.driftSince {
		if !drifted[s] {
			delete(r.driftSince, s)
		}
	}
	r.status.Drift = plan.Changes
	r.mu.Unlock()
	r.metrics.drifted.Set(float64(len(plan.Changes)))
	r.mu.Lock()
	outsideFailed := r.outsideTried != ""
	r.mu.Unlock()
	if r.opts.DriftMode != DriftRestore || len(due) == 0 {
		return
	}
	if outsideFailed {
		// A change outside git failed to apply: the configuration Compose reads now is that
		// change, and restoring services to it would apply it without the health gate.
		r.log.Warn("drift: not restoring while a change to the files outside git that failed is in place", "services", due)
		return
	}
	for _, s := range due {
		r.log.Info("drift: restoring service", "service", s)
		if err := r.up(ctx, stack, []string{s}); err != nil {
			r.log.Error("drift: restore failed", "service", s, "err", err)
			continue
		}
		r.metrics.driftCorrections.Inc()
		r.events.Event(ctx, "DriftCorrected", true, map[string]string{"service": s},
			fmt.Sprintf("service %s differed from the applied commit and was restored", s))
		r.mu.Lock()
		delete(r.driftSince, s)
		r.mu.Unlock()
	}
}

// stackRemoved records whether every container of the project is gone, and alerts when that
// changes.
func (r *Reconciler) stackRemoved(ctx context.Context, removed bool) {
	r.mu.Lock()
	changed := r.status.Removed != removed
	r.status.Removed = removed
	if removed {
		r.status.Drift = nil
	}
	r.mu.Unlock()
	if !changed {
		return
	}
	labels := map[string]string{"project": r.opts.Project}
	if removed {
		action := "not recreating it: the next commit deploys it, or `agent sync --redeploy` now"
		if r.opts.RestoreRemoved {
			action = "recreating it (drift.restore_removed)"
		}
		r.log.Warn("the stack was removed: no container of the project is left", "project", r.opts.Project, "action", action)
		r.events.Event(ctx, "StackRemoved", true, labels,
			fmt.Sprintf("no container of project %s is left (docker compose down?); %s", r.opts.Project, action))
		return
	}
	r.events.Event(ctx, "StackRemoved", false, labels, "")
}

// servicesCache holds what Compose said the applied release's services are, for the files it
// read then: a drift check that finds nothing changed runs no `docker compose config`.
type servicesCache struct {
	key      string
	services []compose.Service
}

// appliedServices returns the services of the applied release, from the cache while its key
// (the applied commit and the outside files' digests) is the same: while neither
// the commit nor the files outside git that Compose reads (the persistent paths in SharedDir:
// .env, secrets, certificates; the env file) have changed since.
func (r *Reconciler) appliedServices(ctx context.Context, key string, stack Stack) ([]compose.Service, error) {
	r.mu.Lock()
	c := r.services
	r.mu.Unlock()
	if c.key == key {
		return c.services, nil
	}
	services, err := stack.Services(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.services = servicesCache{key: key, services: services}
	r.mu.Unlock()
	return services, nil
}
