// Package alerts carries the agent's own alert events (deploy failed, rolled back, drift
// corrected, ...). For now it logs them and exposes them as metrics, so Prometheus and the
// agent's status see every one; delivery to Alertmanager and the direct Slack/e-mail fallback
// plug in here.
package alerts

import (
	"context"
	"log/slog"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// Logger records events in the log and in two metrics: hastack_agent_alert_events_total counts
// every firing and resolution, hastack_agent_alert_firing says which alerts fire now.
type Logger struct {
	log    *slog.Logger
	total  *prometheus.CounterVec
	firing *prometheus.GaugeVec
}

// NewLogger registers its metrics with reg (nil: not registered).
func NewLogger(log *slog.Logger, reg prometheus.Registerer) *Logger {
	l := &Logger{
		log: log,
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hastack_agent_alert_events_total", Help: "The agent's alert events, by alert name and state (firing, resolved).",
		}, []string{"alertname", "state"}),
		firing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hastack_agent_alert_firing", Help: "1 while the agent's alert fires.",
		}, []string{"alertname"}),
	}
	if reg != nil {
		reg.MustRegister(l.total, l.firing)
	}
	return l
}

// Event records that alert name fires (firing) or is resolved.
func (l *Logger) Event(ctx context.Context, name string, firing bool, labels map[string]string, description string) {
	attrs := []any{"alertname", name}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		attrs = append(attrs, k, labels[k])
	}
	if firing {
		l.total.WithLabelValues(name, "firing").Inc()
		// DriftCorrected is an event, not a condition: it does not stay firing.
		if name != "DriftCorrected" {
			l.firing.WithLabelValues(name).Set(1)
		}
		l.log.ErrorContext(ctx, "ALERT "+name+": "+description, attrs...)
		return
	}
	l.total.WithLabelValues(name, "resolved").Inc()
	l.firing.WithLabelValues(name).Set(0)
	l.log.InfoContext(ctx, "resolved "+name, attrs...)
}
