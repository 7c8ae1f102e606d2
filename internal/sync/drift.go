package sync

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// CheckDrift compares the containers with the applied release; services that stay drifted
// for the grace period are restored (DriftRestore) or only reported (DriftReport).
func (r *Reconciler) CheckDrift(ctx context.Context) {
	st := r.snapshot()
	if st.Applied == "" || st.InProgress != "" || r.opts.DriftMode == DriftOff {
		return
	}
	if !r.apply.TryLock() {
		return // a deploy is running: it owns the containers
	}
	defer r.apply.Unlock()
	root, err := r.releaseRoot(st.Applied)
	if err != nil {
		r.log.Warn("drift check: applied release", "err", err)
		return
	}
	stack := r.stackOf(root, filepath.Join(r.currentLink(), r.opts.Subpath), true)
	services, err := stack.Services(ctx)
	if err != nil {
		r.log.Warn("drift check: read services", "err", err)
		return
	}
	running, err := r.engine.ProjectContainers(ctx, r.opts.Project)
	if err != nil {
		r.log.Warn("drift check: list containers", "err", err)
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
	if r.opts.DriftMode != DriftRestore || len(due) == 0 {
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
