package alerts

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Severities, as Alertmanager's routes read them (stack/alertmanager/alertmanager.tmpl.yml):
// critical goes to Slack and e-mail, warning to Slack. The direct fallback routes the same way.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
)

// oneShotFor is how long an event that is not a condition (DriftCorrected) stays active: it is
// posted once with this endsAt and nobody resolves it.
const oneShotFor = time.Hour

// kind is what the agent knows about one of its events. The names are fixed: Alertmanager's
// configuration inhibits the rule-based copies (AgentDeployRolledBack, BackupFailing, ...) while
// the matching event is active.
type kind struct {
	severity string
	// summary is the one-line summary; %s is the host.
	summary func(labels map[string]string, host string) string
	// checkFirst ends the description: the commands to run first.
	checkFirst string
	// oneShot: an event, not a condition. It fires for oneShotFor and needs no resolution.
	oneShot bool
	// clearedBy: resolving that alert resolves this one too (a newer commit deployed ends a
	// rollback as well as the failure).
	clearedBy string
}

var kinds = map[string]kind{
	"DeployFailed": {
		severity: SeverityCritical,
		summary: func(l map[string]string, host string) string {
			if c := l["commit"]; c != "" {
				return fmt.Sprintf("The deploy of commit %s failed (%s)", c, host)
			}
			return fmt.Sprintf("A deploy failed (%s)", host)
		},
		checkFirst: "`docker exec hastack-agent agent status` (the failed commit and its reason), " +
			"then `docker logs` of the service that did not become healthy; " +
			"`docker logs --tail 50 hastack-agent` for the agent's side. Fix it with a new commit.",
	},
	"DeployRolledBack": {
		severity: SeverityWarning,
		summary: func(l map[string]string, host string) string {
			if c := l["commit"]; c != "" {
				return fmt.Sprintf("The agent rolled back the deploy of commit %s (%s)", c, host)
			}
			return fmt.Sprintf("The agent rolled a deploy back (%s)", host)
		},
		checkFirst: "`docker exec hastack-agent agent status` for the failed commit and the service " +
			"that did not become healthy, then that service's `docker logs`. The site runs the last " +
			"good commit; the change is not deployed until a newer commit deploys.",
		clearedBy: "DeployFailed",
	},
	"DatabaseFailover": {
		severity: SeverityCritical,
		summary: func(l map[string]string, host string) string {
			return fmt.Sprintf("The database failed over: %s is the primary, %s was down (%s)", l["new_primary"], l["old_primary"], host)
		},
		checkFirst: "`agent db status` (roles, replication), then `docker logs` of the old primary for why it died. " +
			"It rejoins as a replica by itself; switch back with `agent db switchover` (docs/failover.md).",
		oneShot: true,
	},
	"FailoverRefused": {
		severity: SeverityCritical,
		summary: func(l map[string]string, host string) string {
			return fmt.Sprintf("The database primary %s is down and the agent did not fail over (%s)", l["primary"], host)
		},
		checkFirst: "`agent db status`: writes fail until the primary returns or the replica is promoted. " +
			"If the reason is acceptable (the replica may lack the last acknowledged writes), `agent db failover --force` (docs/failover.md).",
	},
	"DatabaseQuarantined": {
		severity: SeverityCritical,
		summary: func(l map[string]string, host string) string {
			return fmt.Sprintf("Database server %s is quarantined: its history diverged from the primary's (%s)", l["server"], host)
		},
		checkFirst: "`agent db status`; the server is read-only and not read from. Re-seed it from the primary by " +
			"removing its volume (docs/failover.md, Quarantine); it is released once it replicates.",
	},
	"SwitchoverFailed": {
		severity: SeverityWarning,
		summary: func(l map[string]string, host string) string {
			return fmt.Sprintf("A database switchover was undone: %s stays the primary (%s)", l["primary"], host)
		},
		checkFirst: "`agent db status` for the replica's lag and threads; try again when it is in sync.",
	},
	"DatabaseWatchFailed": {
		severity: SeverityCritical,
		summary: func(_ map[string]string, host string) string {
			return fmt.Sprintf("The agent's database watch stopped: no automatic failover (%s)", host)
		},
		checkFirst: "`docker logs hastack-agent 2>&1 | grep -i database` for the reason, then restart the agent.",
	},
	"StackRemoved": {
		severity: SeverityWarning,
		summary: func(l map[string]string, host string) string {
			return fmt.Sprintf("Every container of the stack %s is gone, and the agent does not recreate it (%s)", l["project"], host)
		},
		checkFirst: "If it was removed on purpose (docker compose down), nothing to do: the agent waits, and deploys the next " +
			"commit. To bring it back now: `agent sync --redeploy`. To stop the agent too: scripts/down.",
	},
	"DriftCorrected": {
		severity: SeverityWarning,
		summary: func(l map[string]string, host string) string {
			if s := l["service"]; s != "" {
				return fmt.Sprintf("The agent undid a change made by hand to %s (%s)", s, host)
			}
			return fmt.Sprintf("The agent undid a change made by hand (%s)", host)
		},
		checkFirst: "`docker logs hastack-agent 2>&1 | grep -i drift | tail` for what changed; " +
			"make lasting changes through git.",
		oneShot: true,
	},
	"BackupFailed": {
		severity: SeverityCritical,
		summary: func(_ map[string]string, host string) string {
			return fmt.Sprintf("A scheduled backup failed (%s)", host)
		},
		checkFirst: "`docker logs hastack-agent 2>&1 | grep -i backup | tail` for the error, then " +
			"`docker exec hastack-agent agent backups` for what the store holds; take one by hand " +
			"with `docker exec hastack-agent agent backup`.",
	},
	"BinlogArchiveGap": {
		severity: SeverityCritical,
		summary: func(_ map[string]string, host string) string {
			return fmt.Sprintf("The binlog archive has a hole: some transactions cannot be restored to (%s)", host)
		},
		checkFirst: "take a backup now (`docker exec hastack-agent agent backup`): points after it are " +
			"recoverable again; `docker exec hastack-agent agent backups` shows the recoverable range and " +
			"the hole. Resolve it by hand once the backup is taken (the archive keeps its hole until retention drops it).",
	},
	"BinlogArchiveStalled": {
		severity: SeverityCritical,
		summary: func(_ map[string]string, host string) string {
			return fmt.Sprintf("The binlog archive stopped: the primary's history does not continue it (%s)", host)
		},
		checkFirst: "`docker logs hastack-agent 2>&1 | grep -i archiv | tail` says why; a primary behind the " +
			"archive is a database re-created or restored from elsewhere: docs/backup.md (Point-in-time recovery) " +
			"says how to start the archive again. Take a backup now (`docker exec hastack-agent agent backup`).",
	},
	"BinlogArchiveDiverged": {
		severity: SeverityWarning,
		oneShot:  true,
		summary: func(_ map[string]string, host string) string {
			return fmt.Sprintf("The binlog archive dropped transactions the new primary does not have (%s)", host)
		},
		checkFirst: "nothing is lost that the database kept: after a failover, the archive had the old " +
			"primary's last transactions, which were never acknowledged; `docker exec hastack-agent agent db status` " +
			"and `docker logs hastack-agent 2>&1 | grep -i archive | tail`.",
	},
	"DrillFailed": {
		severity: SeverityWarning,
		summary: func(_ map[string]string, host string) string {
			return fmt.Sprintf("A restore drill failed (%s)", host)
		},
		checkFirst: "`docker logs hastack-agent 2>&1 | grep -i drill | tail` for the step that " +
			"failed, then `docker exec hastack-agent agent backups`.",
	},
}

// kindOf returns what is known about name; an unknown name is a warning.
func kindOf(name string) kind {
	if k, ok := kinds[name]; ok {
		return k
	}
	return kind{
		severity: SeverityWarning,
		summary: func(_ map[string]string, host string) string {
			return fmt.Sprintf("The agent raised %s (%s)", name, host)
		},
		checkFirst: "`docker exec hastack-agent agent status` and `docker logs --tail 50 hastack-agent`.",
	}
}

// clears returns the alerts that resolving name resolves as well.
func clears(name string) []string {
	var out []string
	for n, k := range kinds {
		if k.clearedBy == name {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// Alert is one alert as Alertmanager's API v2 takes it (a postableAlert).
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Name is the alert's alertname.
func (a Alert) Name() string { return a.Labels["alertname"] }

// key identifies the alert by its labels, as Alertmanager's fingerprint does.
func (a Alert) key() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(a.Labels[k])
		b.WriteByte(0)
	}
	return b.String()
}

// newAlert builds the alert for event name: the given labels, plus alertname and severity
// (always the event's), service ("agent" unless given), component="agent" and instance (the
// host, unless given); annotations summary and description (the event's text, then what to
// check first).
func newAlert(name string, labels map[string]string, description, host, generatorURL string, now time.Time) Alert {
	k := kindOf(name)
	l := make(map[string]string, len(labels)+5)
	for n, v := range labels {
		if v != "" {
			l[n] = v
		}
	}
	l["alertname"] = name
	l["severity"] = k.severity
	for n, v := range map[string]string{"service": "agent", "component": "agent", "instance": host} {
		if l[n] == "" {
			l[n] = v
		}
	}
	desc := strings.TrimSpace(description)
	if desc != "" && !strings.HasSuffix(desc, ".") {
		desc += "."
	}
	desc = strings.TrimSpace(desc + " Check first: " + k.checkFirst)
	return Alert{
		Labels: l,
		Annotations: map[string]string{
			"summary":     k.summary(l, l["instance"]),
			"description": desc,
		},
		StartsAt:     now,
		GeneratorURL: generatorURL,
	}
}

// matches reports whether the alert is name's and carries every label of labels.
func (a Alert) matches(name string, labels map[string]string) bool {
	if a.Name() != name {
		return false
	}
	for n, v := range labels {
		if n != "alertname" && a.Labels[n] != v {
			return false
		}
	}
	return true
}
