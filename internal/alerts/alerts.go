// Package alerts carries the agent's own alert events (DeployFailed, DeployRolledBack,
// DriftCorrected, BackupFailed, DrillFailed) to people. Logger logs every event and exposes it
// as metrics, so Prometheus and the agent's status see every one; with a Delivery attached it
// also posts the alerts to Alertmanager's API v2, re-posting firing ones so that they stay
// active and resolving them when the condition clears, and sends them straight to Slack and
// e-mail while Alertmanager cannot be reached (it is part of the stack the agent may be failing
// to deploy).
package alerts

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Logger records events in the log and in two metrics: hastack_agent_alert_events_total counts
// every firing and resolution, hastack_agent_alert_firing says which alerts fire now. Events
// are handed on to the Delivery given to DeliverTo, if any.
type Logger struct {
	log      *slog.Logger
	total    *prometheus.CounterVec
	firing   *prometheus.GaugeVec
	delivery *Delivery

	mu     sync.Mutex
	active map[string]bool // alerts firing now, by name
	shown  map[string]Firing
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
		active: map[string]bool{},
		shown:  map[string]Firing{},
	}
	if reg != nil {
		reg.MustRegister(l.total, l.firing)
	}
	return l
}

// DeliverTo hands every event on to d (nil: log and count only) and returns l.
func (l *Logger) DeliverTo(d *Delivery) *Logger {
	l.delivery = d
	return l
}

// Event records that alert name fires (firing) or is resolved. It never blocks on delivery.
// Resolving an alert resolves the alerts it clears too (DeployFailed clears DeployRolledBack).
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
		if !kindOf(name).oneShot {
			l.firing.WithLabelValues(name).Set(1)
			l.mu.Lock()
			if !l.active[name] {
				l.shown[name] = Firing{Name: name, Since: time.Now().UTC(), Labels: labels, Description: description}
			}
			l.active[name] = true
			l.mu.Unlock()
		}
		l.log.ErrorContext(ctx, "ALERT "+name+": "+description, attrs...)
		if l.delivery != nil {
			l.delivery.Event(name, true, labels, description)
		}
		return
	}
	l.resolve(ctx, name, labels, attrs)
	for _, other := range clears(name) {
		l.mu.Lock()
		was := l.active[other]
		l.mu.Unlock()
		if was {
			l.resolve(ctx, other, nil, []any{"alertname", other, "cleared_by", name})
		}
	}
}

func (l *Logger) resolve(ctx context.Context, name string, labels map[string]string, attrs []any) {
	l.total.WithLabelValues(name, "resolved").Inc()
	l.firing.WithLabelValues(name).Set(0)
	l.mu.Lock()
	delete(l.active, name)
	delete(l.shown, name)
	l.mu.Unlock()
	l.log.InfoContext(ctx, "resolved "+name, attrs...)
	if l.delivery != nil {
		l.delivery.Event(name, false, labels, "")
	}
}

// Firing is one of the agent's alerts that fires now, as `agent status` shows it.
type Firing struct {
	Name        string            `json:"name"`
	Since       time.Time         `json:"since"`
	Labels      map[string]string `json:"labels,omitempty"`
	Description string            `json:"description"`
}

// Firing returns the agent's alerts that fire now, oldest first: what `agent status` shows,
// whether or not any receiver is configured.
func (l *Logger) Firing() []Firing {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Firing, 0, len(l.shown))
	for _, f := range l.shown {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}
