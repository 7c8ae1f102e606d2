package alerts

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestLoggerWithoutDelivery(t *testing.T) {
	logs, log := newLogBuffer()
	reg := prometheus.NewRegistry()
	l := NewLogger(log, reg)
	ctx := context.Background()
	l.Event(ctx, "DeployFailed", true, map[string]string{"commit": "abc1234"}, "deploy of abc1234 failed: boom")
	l.Event(ctx, "DeployRolledBack", true, map[string]string{"commit": "abc1234"}, "rolled back")
	l.Event(ctx, "DriftCorrected", true, map[string]string{"service": "web1"}, "web1 restored")

	for name, want := range map[string]float64{"DeployFailed": 1, "DeployRolledBack": 1, "DriftCorrected": 0} {
		if got := metricValue(t, reg, "hastack_agent_alert_firing", "alertname", name); got != want {
			t.Errorf("firing{%s} = %v, want %v", name, got, want)
		}
	}
	if !strings.Contains(logs.String(), `"level":"ERROR","msg":"ALERT DeployFailed: deploy of abc1234 failed: boom","alertname":"DeployFailed","commit":"abc1234"`) {
		t.Errorf("log:\n%s", logs)
	}

	l.Event(ctx, "DeployFailed", false, nil, "") // a newer commit deployed
	for _, name := range []string{"DeployFailed", "DeployRolledBack"} {
		if got := metricValue(t, reg, "hastack_agent_alert_firing", "alertname", name); got != 0 {
			t.Errorf("firing{%s} = %v after DeployFailed resolved", name, got)
		}
		if got := metricValue(t, reg, "hastack_agent_alert_events_total", "alertname", name, "state", "resolved"); got != 1 {
			t.Errorf("events_total{%s,resolved} = %v, want 1", name, got)
		}
	}
	if !strings.Contains(logs.String(), `"msg":"resolved DeployRolledBack","alertname":"DeployRolledBack","cleared_by":"DeployFailed"`) {
		t.Errorf("log:\n%s", logs)
	}
	// Resolved again: the rollback is not resolved a second time.
	l.Event(ctx, "DeployFailed", false, nil, "")
	if got := metricValue(t, reg, "hastack_agent_alert_events_total", "alertname", "DeployRolledBack", "state", "resolved"); got != 1 {
		t.Errorf("events_total{DeployRolledBack,resolved} = %v, want 1", got)
	}
}
