package backup

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSchedulerSkipsOverlappingRuns(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	s, err := NewScheduler("@daily", nil, func(ctx context.Context) error {
		started <- struct{}{}
		<-release
		return nil
	}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if !s.fire(ctx) {
		t.Fatal("first run did not start")
	}
	<-started
	if s.fire(ctx) || s.fire(ctx) {
		t.Fatal("a run started while the previous one was still running")
	}
	if got := testutil.ToFloat64(s.metrics.skipped); got != 2 {
		t.Fatalf("skipped %v, want 2", got)
	}
	close(release)
	s.wg.Wait()
	if !s.fire(ctx) {
		t.Fatal("no run after the previous one finished")
	}
	<-started
	s.wg.Wait()
	if testutil.ToFloat64(s.metrics.lastSuccess) == 0 {
		t.Fatal("last success not recorded")
	}
}

func TestSchedulerCountsFailures(t *testing.T) {
	s, _ := NewScheduler("0 3 * * *", nil, func(ctx context.Context) error { return errors.New("s3 unreachable") },
		nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.fire(context.Background())
	s.wg.Wait()
	if got := testutil.ToFloat64(s.metrics.failures); got != 1 {
		t.Fatalf("failures %v, want 1", got)
	}
}

func TestParseSchedule(t *testing.T) {
	for _, ok := range []string{"@daily", "0 3 * * *", "@every 6h", "30 2 * * 1-5"} {
		if _, err := ParseSchedule(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "daily", "61 * * * *", "* * * *"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
