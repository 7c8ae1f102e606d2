package failover

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hastack/hastack/internal/mariadb"
)

// ServerReport is one server as a probe saw it, for `agent db status`, `agent status` and
// /metrics.
type ServerReport struct {
	Service     string `json:"service"`
	Container   string `json:"container"`
	Addr        string `json:"address"`
	Role        string `json:"role"` // primary, replica, quarantined
	Up          bool   `json:"up"`
	Error       string `json:"error,omitempty"`
	ReadOnly    bool   `json:"read_only"`
	GTID        string `json:"gtid_current_pos,omitempty"`
	SemiSync    bool   `json:"semi_sync_active"` // primary: commits wait for the replica
	ReplicaIO   string `json:"replica_io_running,omitempty"`
	ReplicaSQL  string `json:"replica_sql_running,omitempty"`
	ReplicaFrom string `json:"replicates_from,omitempty"`
	LagSeconds  *int64 `json:"lag_seconds,omitempty"`
	LastError   string `json:"replication_error,omitempty"`
}

// Report is both servers, the primary first.
type Report struct {
	At      time.Time      `json:"at"`
	Primary string         `json:"primary"` // container
	Servers []ServerReport `json:"servers"`
}

func serverReport(n *Node, role string, p probe) ServerReport {
	s := ServerReport{Service: n.Service, Container: n.Container, Addr: n.Addr, Role: role, Up: p.err == nil}
	if p.err != nil {
		s.Error = p.err.Error()
		return s
	}
	s.ReadOnly, s.GTID, s.SemiSync = p.st.ReadOnly, p.st.CurrentPos.String(), p.st.SemiSyncOn
	if r := p.st.Replica; r != nil {
		s.ReplicaIO, s.ReplicaSQL, s.ReplicaFrom = r.IORunning, r.SQLRunning, r.MasterHost
		if r.LagSeconds >= 0 {
			lag := r.LagSeconds
			s.LagSeconds = &lag
		}
		s.LastError = r.LastIOError
		if s.LastError == "" {
			s.LastError = r.LastSQLError
		}
	}
	return s
}

func (c *Cluster) report(p, r *Node, rf RolesFile, pp, rp probe) {
	rrole := "replica"
	if rf.IsQuarantined(r.Addr) {
		rrole = "quarantined"
	}
	rep := Report{At: time.Now(), Primary: p.Container, Servers: []ServerReport{serverReport(p, "primary", pp), serverReport(r, rrole, rp)}}
	c.mu.Lock()
	c.lastReport = rep
	c.mu.Unlock()
	if c.Metrics != nil {
		c.Metrics.set(rep)
	}
}

// Status probes both servers now and reports them.
func (c *Cluster) Status(ctx context.Context) (Report, error) {
	p, r, rf, err := c.roles(ctx)
	if err != nil {
		return Report{}, err
	}
	pp, rp := probeBoth(ctx, p, r, 2*time.Second)
	c.report(p, r, rf, pp, rp)
	return c.LastReport(), nil
}

// LastReport is the last round's view (zero before the first).
func (c *Cluster) LastReport() Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastReport
}

// Locker is the database lock (FileLock).
type Locker interface {
	TryLock() (unlock func(), ok bool, err error)
}

// Watch runs a Round every interval until ctx ends, skipping rounds while another process holds
// the lock (a deploy, `agent db switchover`). A round is not cut short by ctx: a failover stops
// at a step boundary, not between the fencing and the promotion.
func (c *Cluster) Watch(ctx context.Context, lock Locker, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		unlock, ok, err := lock.TryLock()
		switch {
		case err != nil:
			c.log().Error("database watch: lock", "error", err)
		case !ok:
			// A death reported while someone else holds the lock is theirs (a deploy
			// recreating the server), not a reason to skip the probes later.
			c.mu.Lock()
			c.died = nil
			c.mu.Unlock()
		default:
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			err := c.Round(rctx)
			cancel()
			unlock()
			if err == nil && c.Metrics != nil {
				c.Metrics.lastRound.SetToCurrentTime() // a watch that fails every round is stale
			}
			if err != nil && err.Error() != lastErr {
				c.log().Error("database watch", "error", err)
			}
			lastErr = ""
			if err != nil {
				lastErr = err.Error()
			}
		}
		// Out of the lock for a moment whatever woke it: a deploy or switchover waiting for the
		// lock (FileLock.Lock polls) gets it even when every round is slow (servers that do not
		// answer) and the ticker has already fired.
		select {
		case <-ctx.Done():
			return
		case <-time.After(lockGap):
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.wakeup():
		}
	}
}

// lockGap is how long the watch leaves the lock free between rounds: several of
// FileLock.Lock's polls.
const lockGap = 60 * time.Millisecond

// Metrics are the watch's gauges and counters.
type Metrics struct {
	role           *prometheus.GaugeVec
	up             *prometheus.GaugeVec
	semiSync       prometheus.Gauge
	primaryChanges prometheus.Counter
	lastRound      prometheus.Gauge
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		role: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hastack_db_role",
			Help: "1 for the role each database server has now (primary, replica, quarantined)."}, []string{"server", "role"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hastack_db_up",
			Help: "Whether the database server answered the watch's last probe."}, []string{"server"}),
		semiSync: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hastack_db_semi_sync_active",
			Help: "Whether the primary's commits wait for the replica (semi-synchronous replication); 0 means no automatic failover."}),
		primaryChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "hastack_db_primary_changes_total",
			Help: "Failovers done by this agent's watch."}),
		lastRound: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hastack_db_watch_last_round_timestamp_seconds",
			Help: "When the database watch last looked at the servers."}),
	}
	reg.MustRegister(m.role, m.up, m.semiSync, m.primaryChanges, m.lastRound)
	return m
}

func (m *Metrics) set(rep Report) {
	m.role.Reset()
	for _, s := range rep.Servers {
		m.role.WithLabelValues(s.Service, s.Role).Set(1)
		m.up.WithLabelValues(s.Service).Set(b2f(s.Up))
		if s.Role == "primary" {
			m.semiSync.Set(b2f(s.Up && s.SemiSync))
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var _ DB = (*mariadb.Server)(nil)
