package sync

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Progress is what a deploy in progress is doing now, for `agent status` (on a terminal a
// line, in JSON the same facts). It lives in memory only: the persisted State.InProgress is
// what a restart recovers from.
type Progress struct {
	Commit   string `json:"commit"`
	Subject  string `json:"subject,omitempty"`
	Rollback bool   `json:"rollback,omitempty"` // a rollback to Commit, the last good one
	// Phase is one of: preparing (export, compose config, validation), building (images),
	// reloading (live paths in place), starting (compose up of Services), waiting (until
	// Services are ready), rolling back.
	Phase    string    `json:"phase"`
	Services []string  `json:"services,omitempty"`
	Waiting  []string  `json:"waiting,omitempty"` // what is not ready yet, with its state ("web1 running (starting)")
	Step     int       `json:"step,omitempty"`    // the step of the plan, 1-based, of Steps
	Steps    int       `json:"steps,omitempty"`
	Started  time.Time `json:"started"`     // when the deploy started
	Since    time.Time `json:"phase_since"` // when this phase started
}

// Line says it in one line: "preparing 89802eb5d2e4 (v2), 3s" or "waiting for web1 (step 2
// of 4): web1 running (starting), 12s".
func (p Progress) Line(now time.Time) string {
	var b strings.Builder
	if p.Rollback {
		b.WriteString("rolling back: ")
	}
	b.WriteString(p.Phase)
	switch {
	case p.Phase == "waiting" && len(p.Services) > 0:
		b.WriteString(" for " + strings.Join(p.Services, ", "))
	case len(p.Services) > 0:
		b.WriteString(" " + strings.Join(p.Services, ", "))
	}
	if p.Steps > 0 {
		b.WriteString(" (step " + strconv.Itoa(p.Step) + " of " + strconv.Itoa(p.Steps) + ")")
	}
	if len(p.Waiting) > 0 {
		b.WriteString(": " + strings.Join(p.Waiting, ", "))
	}
	b.WriteString(", " + now.Sub(p.Since).Round(time.Second).String())
	return b.String()
}

// phase records that the deploy in progress entered a phase (services and step optional).
func (r *Reconciler) phase(phase string, services []string, step, steps int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.progress
	if p == nil {
		return
	}
	p.Phase, p.Services, p.Waiting, p.Step, p.Steps, p.Since = phase, services, nil, step, steps, time.Now()
}

// waiting records what a wait still waits for.
func (r *Reconciler) waiting(what []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.progress != nil {
		r.progress.Waiting = what
	}
}

// startProgress begins a deploy's progress, in phase "preparing"; the returned function ends
// it (a rollback's, which runs inside a failed deploy, gives the failed one's back).
func (r *Reconciler) startProgress(rev Revision, rollback bool) func() {
	now := time.Now()
	r.mu.Lock()
	outer := r.progress
	r.progress = &Progress{Commit: rev.Commit, Subject: rev.Subject, Rollback: rollback, Phase: "preparing", Started: now, Since: now}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		r.progress = outer
		r.mu.Unlock()
	}
}

// ErrNotDeployable is returned by Status.Deployed when the commit waited for failed.
var ErrNotDeployable = errors.New("the agent could not deploy the commit")

// Deployed tells whether the host is on commit (the source's head as last fetched when empty)
// with every service ready, as `agent wait` waits for: applied, no deploy in progress, the last
// sync ok, the stack not removed. It returns an error wrapping ErrNotDeployable once the
// commit is marked bad.
func (s Status) Deployed(commit string) (bool, error) {
	if commit == "" {
		commit = s.Remote
	}
	if commit == "" {
		return false, nil
	}
	if s.Bad != "" && (s.Bad == commit || strings.HasPrefix(s.Bad, commit)) {
		return false, fmt.Errorf("%w %s: %s", ErrNotDeployable, short(s.Bad), s.BadReason)
	}
	if s.Applied != commit && !(len(commit) >= 7 && strings.HasPrefix(s.Applied, commit)) {
		return false, nil
	}
	if s.InProgress != "" || s.Progress != nil || s.LastResult != "ok" || s.Removed || len(s.Services) == 0 {
		return false, nil
	}
	for _, svc := range s.Services {
		if !svc.Ready {
			return false, nil
		}
	}
	return true, nil
}
