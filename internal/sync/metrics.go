package sync

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the reconciler's Prometheus metrics.
type Metrics struct {
	syncDuration     prometheus.Histogram
	lastSuccess      prometheus.Gauge
	syncFailures     prometheus.Counter
	rollbacks        prometheus.Counter
	driftCorrections prometheus.Counter
	drifted          prometheus.Gauge
	deployed         *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hastack_agent_sync_duration_seconds", Help: "Time a sync took: fetch, and deploy when the commit changed.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600},
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hastack_agent_last_sync_success_timestamp_seconds", Help: "When a sync last succeeded (Unix time).",
		}),
		syncFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hastack_agent_sync_failures_total", Help: "Syncs that failed: fetch errors and failed deploys.",
		}),
		rollbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hastack_agent_rollbacks_total", Help: "Deploys that failed and were rolled back to the last good commit.",
		}),
		driftCorrections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hastack_agent_drift_corrections_total", Help: "Services changed by hand that the agent restored.",
		}),
		drifted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hastack_agent_drifted_services", Help: "Services that differ from the applied commit now.",
		}),
		deployed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hastack_agent_deployed_info", Help: "1 for the commit the host runs.",
		}, []string{"commit"}),
	}
	if reg != nil {
		reg.MustRegister(m.syncDuration, m.lastSuccess, m.syncFailures, m.rollbacks, m.driftCorrections, m.drifted, m.deployed)
	}
	return m
}

func (m *Metrics) deployedCommit(commit string) {
	m.deployed.Reset()
	m.deployed.WithLabelValues(short(commit)).Set(1)
}
