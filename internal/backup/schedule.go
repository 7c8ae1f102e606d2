package backup

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"
)

// Scheduler runs a job (backups, restore drills) on a cron schedule. A run still going when the
// next one is due is not doubled: the due run is skipped, logged and counted.
type Scheduler struct {
	schedule cron.Schedule
	loc      *time.Location
	job      func(ctx context.Context) error
	metrics  *Metrics
	log      *slog.Logger

	mu      sync.Mutex
	running bool
	wg      sync.WaitGroup
}

// ParseSchedule reads a standard cron expression ("0 3 * * *") or a descriptor ("@daily",
// "@every 6h").
func ParseSchedule(spec string) (cron.Schedule, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("%q: %w (use a cron expression such as \"0 3 * * *\" or @daily)", spec, err)
	}
	return s, nil
}

// NewScheduler makes a scheduler for spec in loc (nil: local time).
func NewScheduler(spec string, loc *time.Location, job func(ctx context.Context) error, m *Metrics, log *slog.Logger) (*Scheduler, error) {
	s, err := ParseSchedule(spec)
	if err != nil {
		return nil, err
	}
	if loc == nil {
		loc = time.Local
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Scheduler{schedule: s, loc: loc, job: job, metrics: m, log: log}, nil
}

// Run fires the job at every scheduled time until ctx ends, then waits for a running job.
func (s *Scheduler) Run(ctx context.Context) {
	defer s.wg.Wait()
	for {
		next := s.schedule.Next(time.Now().In(s.loc))
		s.log.Info("next "+s.metrics.kind, "at", next)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
			s.fire(ctx)
		}
	}
}

// fire starts the job unless the previous one still runs; it reports whether it started.
func (s *Scheduler) fire(ctx context.Context) bool {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		s.metrics.skipped.Inc()
		s.log.Warn(s.metrics.kind + " skipped: the previous one is still running")
		return false
	}
	s.running = true
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			s.running = false
			s.mu.Unlock()
		}()
		start := time.Now()
		err := s.job(ctx)
		s.metrics.duration.Set(time.Since(start).Seconds())
		if err != nil {
			s.metrics.failures.Inc()
			if s.metrics.lastOK != nil {
				s.metrics.lastOK.Set(0)
			}
			s.log.Error("scheduled "+s.metrics.kind+" failed", "err", err)
			return
		}
		s.metrics.lastSuccess.SetToCurrentTime()
		if s.metrics.lastOK != nil {
			s.metrics.lastOK.Set(1)
		}
	}()
	return true
}

// Metrics are the Prometheus metrics of scheduled backups or of restore drills.
type Metrics struct {
	kind        string // "backup" or "restore drill", for logs
	lastSuccess prometheus.Gauge
	lastOK      prometheus.Gauge // drills: 1 if the last one passed, 0 if it failed
	duration    prometheus.Gauge
	size        prometheus.Gauge
	failures    prometheus.Counter
	skipped     prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		kind:        "backup",
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hastack_agent_backup_last_success_timestamp_seconds", Help: "When a backup last completed (Unix time)."}),
		duration:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "hastack_agent_backup_duration_seconds", Help: "How long the last backup took."}),
		size:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "hastack_agent_backup_size_bytes", Help: "Stored size of the last complete backup."}),
		failures:    prometheus.NewCounter(prometheus.CounterOpts{Name: "hastack_agent_backup_failures_total", Help: "Scheduled backups that failed."}),
		skipped:     prometheus.NewCounter(prometheus.CounterOpts{Name: "hastack_agent_backup_skipped_total", Help: "Scheduled backups skipped because the previous one still ran."}),
	}
	if reg != nil {
		reg.MustRegister(m.lastSuccess, m.duration, m.size, m.failures, m.skipped)
	}
	return m
}

// NewDrillMetrics creates the restore drills' metrics and registers them with reg (nil: not
// registered).
func NewDrillMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		kind:        "restore drill",
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hastack_agent_drill_last_success_timestamp_seconds", Help: "When a restore drill last passed (Unix time)."}),
		lastOK:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "hastack_agent_drill_last_ok", Help: "1 if the last restore drill passed, 0 if it failed."}),
		duration:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "hastack_agent_drill_duration_seconds", Help: "How long the last restore drill took."}),
		size:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "hastack_agent_drill_rows", Help: "Rows restored and compared by the last restore drill that passed."}),
		failures:    prometheus.NewCounter(prometheus.CounterOpts{Name: "hastack_agent_drill_failures_total", Help: "Restore drills that failed."}),
		skipped:     prometheus.NewCounter(prometheus.CounterOpts{Name: "hastack_agent_drill_skipped_total", Help: "Restore drills skipped because the previous one still ran."}),
	}
	if reg != nil {
		reg.MustRegister(m.lastSuccess, m.lastOK, m.duration, m.size, m.failures, m.skipped)
	}
	return m
}

// Completed records a complete backup's size.
func (m *Metrics) Completed(man Manifest) { m.size.Set(float64(man.StoredBytes)) }

// Drilled records a passed drill's rows.
func (m *Metrics) Drilled(r DrillReport) { m.size.Set(float64(r.Rows)) }
