package sync

import (
	"context"
	"errors"
	"testing"
	"time"
)

// From its first moment a deploy shows in the status what it is doing: while the release is
// still being exported (nothing touched, nothing persisted), `agent status` says "preparing".
func TestStatusShowsADeployWhilePreparing(t *testing.T) {
	w, ev := newWorld(), &fakeEvents{}
	w.commits[c1] = release{services: services("1")}
	w.head = c1
	r, _ := newTestReconciler(t, w, ev)
	w.exportGate = make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); r.SyncOnce(context.Background(), "test") }()
	var s Status
	if err := waitFor(5*time.Second, func() bool { s = r.Status(context.Background()); return s.Progress != nil }); err != nil {
		t.Fatal("no progress in the status while the release is exported")
	}
	if s.Progress.Phase != "preparing" || s.Progress.Commit != c1 || s.InProgress != c1 {
		t.Fatalf("status %+v, progress %+v: want c1 preparing, shown as in progress", s, s.Progress)
	}
	close(w.exportGate)
	<-done
	if s := r.Status(context.Background()); s.Progress != nil || s.InProgress != "" || s.Applied != c1 {
		t.Fatalf("after the deploy: progress %+v, in progress %q, applied %.12s", s.Progress, s.InProgress, s.Applied)
	}
}

func TestProgressLine(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 12, 0, time.UTC)
	p := Progress{Commit: c1, Phase: "waiting", Services: []string{"web1"}, Step: 2, Steps: 4,
		Waiting: []string{"web1 running (starting)"}, Since: now.Add(-12 * time.Second)}
	if got, want := p.Line(now), "waiting for web1 (step 2 of 4): web1 running (starting), 12s"; got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
	p = Progress{Commit: c1, Phase: "preparing", Rollback: true, Since: now.Add(-3 * time.Second)}
	if got, want := p.Line(now), "rolling back: preparing, 3s"; got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
}

// waitFor polls cond every 10 ms until it holds or d has passed.
func waitFor(d time.Duration, cond func() bool) error {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return nil
		}
	}
	return context.DeadlineExceeded
}

func TestStatusDeployed(t *testing.T) {
	ready := []ServiceInfo{{Service: "web1", Ready: true}, {Service: "web2", Ready: true}}
	base := Status{Remote: c2, Applied: c2, LastResult: "ok", Services: ready}
	for _, tc := range []struct {
		name   string
		commit string
		edit   func(*Status)
		want   bool
		bad    bool
	}{
		{"deployed", c2, nil, true, false},
		{"the source's head", "", nil, true, false},
		{"a short id", c2[:12], nil, true, false},
		{"another commit applied", c3, nil, false, false},
		{"in progress", c2, func(s *Status) { s.InProgress = c2 }, false, false},
		{"preparing", c2, func(s *Status) { s.Progress = &Progress{Commit: c2} }, false, false},
		{"a service not ready", c2, func(s *Status) { s.Services = []ServiceInfo{{Service: "web1"}} }, false, false},
		{"no service at all", c2, func(s *Status) { s.Services = nil }, false, false},
		{"removed", c2, func(s *Status) { s.Removed = true }, false, false},
		{"the last sync failed", c2, func(s *Status) { s.LastResult = "error" }, false, false},
		{"marked bad", c3, func(s *Status) { s.Bad, s.BadReason = c3, "health gate: failed: web1 running (unhealthy)" }, false, true},
	} {
		s := base
		if tc.edit != nil {
			tc.edit(&s)
		}
		got, err := s.Deployed(tc.commit)
		if got != tc.want || errors.Is(err, ErrNotDeployable) != tc.bad {
			t.Errorf("%s: Deployed = %v, %v; want %v, bad %v", tc.name, got, err, tc.want, tc.bad)
		}
	}
}
