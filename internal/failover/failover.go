// Package failover keeps one writable MariaDB server in a primary/replica pair: it watches both,
// promotes the replica when the primary is dead (only when no acknowledged write can be lost),
// fences the old primary so that it never takes a write again, brings it back as a replica or
// quarantines it when its history diverged, and switches the roles over on request.
//
// The current primary is named in a roles file (Roles) that the database containers read when
// they start, so a server the file does not name always starts read-only, whoever starts it.
package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hastack/hastack/internal/mariadb"
)

// Mode is what the watch does about a dead primary.
type Mode string

// The modes: promote the replica when it is safe, only alert, or not watch at all.
const (
	ModeAuto   Mode = "auto"
	ModeManual Mode = "manual"
	ModeOff    Mode = "off"
)

// DB is one server's administration (mariadb.Server).
type DB interface {
	Status(ctx context.Context) (mariadb.Status, error)
	SetReadOnly(ctx context.Context, on bool) error
	Promote(ctx context.Context, applyTimeout time.Duration) error
	ForgetPrimary(ctx context.Context) error
	ReplicateFrom(ctx context.Context, primary, user, password string) error
	StopReplication(ctx context.Context) error
	RestartSemiSync(ctx context.Context) error
	WaitApplied(ctx context.Context, pos mariadb.GTIDList, timeout time.Duration) error
}

// Engine is the container runtime (docker.Client).
type Engine interface {
	Running(ctx context.Context, container string) (bool, error)
	// Exists tells whether the container exists at all (running or not).
	Exists(ctx context.Context, container string) (bool, error)
	Kill(ctx context.Context, container string) error
	Start(ctx context.Context, container string) error
}

// Node is one database server: its Compose service, container, address and administration.
type Node struct {
	Service, Container, Addr string
	DB                       DB
}

// Notify posts or resolves an alert event (alerts.Logger.Event).
type Notify func(ctx context.Context, name string, firing bool, labels map[string]string, description string)

// Cluster is the pair of servers and what the watch remembers between rounds.
type Cluster struct {
	Nodes        [2]*Node
	Engine       Engine
	Roles        Roles
	Notify       Notify
	Log          *slog.Logger
	ReplUser     string // the account replicas connect with
	ReplPassword string
	Mode         Mode
	// FailAfter failed probes in a row make the primary dead (1 when its container is not
	// running or died).
	FailAfter    int
	ApplyTimeout time.Duration // how long a promoted replica may take to apply its relay log
	// Observations keeps the last view of the primary for `agent db failover` run elsewhere.
	Observations *FileObservations
	Metrics      *Metrics

	mu          sync.Mutex
	fails       int
	died        map[string]bool // containers Docker reported dead since the last round
	last        Observation     // the primary's last answer, for the RPO check
	refused     bool            // FailoverRefused is firing
	lastRejoin  map[string]time.Time
	lastReport  Report
	lastPrimary string // the primary of the last round: its failed probes are counted in fails
	// semiOffSince is when the primary's semi-sync was first seen off while its replica
	// replicates from it; semiRestarted when the watch last restarted it.
	semiOffSince, semiRestarted time.Time
	started                     time.Time // the first round
	// quarantineAlerted are the servers (address to container) this process alerted on as
	// quarantined: resolved when the roles no longer quarantine them, whoever released them
	// (`agent db reseed` in another process).
	quarantineAlerted map[string]string
	goneLogged        bool // bothGone was logged (once per absence)
	wake              chan struct{}
	wakeOnce          sync.Once
}

// Observation is what the primary said when it last answered, and what the replica had received.
type Observation struct {
	Primary    string           `json:"primary"` // address
	At         time.Time        `json:"at"`
	BinlogPos  mariadb.GTIDList `json:"-"`
	BinlogText string           `json:"binlog_pos"`
	SemiSyncOn bool             `json:"semi_sync_on"`
}

// MaxObservationAge is how old the primary's last observation may be for an automatic
// promotion: the time the watch needs to declare a primary dead, with room. An older one (the
// agent was down, the watch not running) says nothing about the writes acknowledged since.
const MaxObservationAge = 10 * time.Second

// reasonNoObservation is the refusal of a watch that has not seen the primary answer yet.
const reasonNoObservation = "no observation of the primary (the watch has not seen it answer)"

// StartupGrace is how long after the watch's start a primary it has never seen answer is not
// alerted on: at a host's boot the agent starts before MariaDB has finished its recovery.
const StartupGrace = time.Minute

// ErrNotSafe is returned when a promotion could lose acknowledged writes (use force).
var ErrNotSafe = errors.New("promotion could lose acknowledged writes")

func (c *Cluster) log() *slog.Logger {
	if c.Log == nil {
		return slog.Default()
	}
	return c.Log
}

func (c *Cluster) notify(ctx context.Context, name string, firing bool, labels map[string]string, desc string) {
	if c.Notify != nil {
		c.Notify(ctx, name, firing, labels, desc)
	}
}

// Died tells the watch that Docker reported the container's death: a dead primary is then
// failed over at the next round without waiting for a second failed probe.
func (c *Cluster) Died(container string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.died == nil {
		c.died = map[string]bool{}
	}
	c.died[container] = true
	select {
	case c.wakeup() <- struct{}{}:
	default:
	}
}

// wakeup is the channel that starts a round before the next tick (a death reported).
func (c *Cluster) wakeup() chan struct{} {
	c.wakeOnce.Do(func() { c.wake = make(chan struct{}, 1) })
	return c.wake
}

// PrimaryAddr is the address of the server the roles name the primary (the first server
// before any failover): where the binlog archive follows the binary log.
func (c *Cluster) PrimaryAddr(ctx context.Context) (string, error) {
	p, _, _, err := c.roles(ctx)
	if err != nil {
		return "", err
	}
	return p.Addr, nil
}

// roles returns the primary and the other node, as the roles file names them.
func (c *Cluster) roles(ctx context.Context) (primary, other *Node, rf RolesFile, err error) {
	rf, err = c.Roles.Read(ctx)
	if err != nil {
		return nil, nil, rf, fmt.Errorf("read the roles: %w", err)
	}
	switch rf.Primary {
	case c.Nodes[0].Addr, "":
		return c.Nodes[0], c.Nodes[1], rf, nil
	case c.Nodes[1].Addr:
		return c.Nodes[1], c.Nodes[0], rf, nil
	}
	return nil, nil, rf, fmt.Errorf("the roles file names %s, which is neither %s nor %s", rf.Primary, c.Nodes[0].Addr, c.Nodes[1].Addr)
}

type probe struct {
	st  mariadb.Status
	err error
}

// probeBoth asks both servers at once, each for at most timeout.
func probeBoth(ctx context.Context, a, b *Node, timeout time.Duration) (pa, pb probe) {
	var wg sync.WaitGroup
	for _, x := range []struct {
		n *Node
		p *probe
	}{{a, &pa}, {b, &pb}} {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			x.p.st, x.p.err = x.n.DB.Status(ctx)
		})
	}
	wg.Wait()
	return pa, pb
}

// Round is one look at both servers and what follows from it: nothing, a rejoin, a repair or
// a failover. The caller holds the database lock.
func (c *Cluster) Round(ctx context.Context) error {
	p, r, rf, err := c.roles(ctx)
	if err != nil {
		return err
	}
	if c.started.IsZero() {
		c.started = time.Now()
	}
	c.resolveReleased(ctx, rf)
	if p.Addr != c.lastPrimary {
		c.fails, c.lastPrimary = 0, p.Addr // a new primary starts with a clean count
	}
	c.mu.Lock()
	died := c.died[p.Container]
	c.died = nil
	c.mu.Unlock()
	if died {
		// Docker reported the primary's death: when its container is still not running, no
		// probe is needed (a probe of a vanished address waits for its timeout).
		if running, err := c.Engine.Running(ctx, p.Container); err == nil && !running {
			c.log().Warn("database: the primary's container died", "primary", p.Container)
			return c.primaryDead(ctx, p, r, rf)
		}
	}
	pp, rp := probeBoth(ctx, p, r, time.Second)
	c.report(p, r, rf, pp, rp)
	c.mu.Lock()
	died = died || c.died[p.Container]
	c.mu.Unlock()

	if pp.err == nil || (mariadb.Answered(pp.err) && !died) {
		c.fails = 0
		if pp.err != nil {
			return nil // alive, but something is wrong: not a failover
		}
		if pp.st.ReadOnly {
			return c.repairReadOnlyPrimary(ctx, p, r, rf, pp.st, rp)
		}
		c.observe(p, pp.st)
		if pp.st.Replica != nil {
			// A promotion that made it writable but did not clear its old replication.
			c.log().Warn("database: the primary still has a replication configured: clearing it", "primary", p.Container)
			if err := p.DB.ForgetPrimary(ctx); err != nil {
				return fmt.Errorf("clear the old replication of %s: %w", p.Container, err)
			}
		}
		if rp.err == nil {
			return c.tendReplica(ctx, p, r, rf, pp.st, rp.st)
		}
		if slices.Contains(rf.Fenced, r.Addr) {
			c.StartFenced(ctx)
		}
		return nil
	}
	c.fails++
	dead := died || c.fails >= c.failAfter()
	if !dead {
		if running, err := c.Engine.Running(ctx, p.Container); err == nil && !running {
			dead = true
		}
	}
	c.log().Warn("database: the primary does not answer", "primary", p.Container, "addr", p.Addr, "failed_probes", c.fails, "error", pp.err, "dead", dead)
	if !dead {
		return nil
	}
	return c.primaryDead(ctx, p, r, rf)
}

// primaryDead acts on the primary's death as the mode says.
func (c *Cluster) primaryDead(ctx context.Context, p, r *Node, rf RolesFile) error {
	// Both containers gone is a stack removed on purpose (docker compose down), or being
	// recreated by a deploy: nothing to fail over to, and nobody to page.
	if gone, err := c.bothGone(ctx, p, r); err == nil && gone {
		if !c.goneLogged {
			c.log().Info("database: both servers' containers are gone (the stack removed?): no failover, no alert")
		}
		c.goneLogged = true
		return nil
	}
	c.goneLogged = false
	switch c.Mode {
	case ModeAuto:
		err := c.failover(ctx, p, r, rf, false)
		if errors.Is(err, ErrNotSafe) {
			return nil // refused and alerted; the operator decides
		}
		return err
	case ModeManual:
		c.refuse(ctx, p, r, "failover is manual (database.failover: manual)")
	}
	return nil
}

func (c *Cluster) failAfter() int { return max(c.FailAfter, 1) }

// bothGone tells whether neither server's container exists.
func (c *Cluster) bothGone(ctx context.Context, p, r *Node) (bool, error) {
	for _, n := range []*Node{p, r} {
		if n == nil {
			continue
		}
		ok, err := c.Engine.Exists(ctx, n.Container)
		if err != nil || ok {
			return false, err
		}
	}
	return true, nil
}

// observe remembers the primary's answer for the RPO check.
func (c *Cluster) observe(p *Node, st mariadb.Status) {
	c.mu.Lock()
	c.last = Observation{Primary: p.Addr, At: time.Now(), BinlogPos: st.BinlogPos, BinlogText: st.BinlogPos.String(), SemiSyncOn: st.SemiSyncOn}
	obs := c.last
	c.mu.Unlock()
	if c.Observations != nil {
		if err := c.Observations.Save(obs); err != nil {
			c.log().Warn("database: cannot save the observation", "error", err)
		}
	}
}

// lastObservation is the watch's own, or the saved one when this process has none.
func (c *Cluster) lastObservation(p *Node) (Observation, bool) {
	c.mu.Lock()
	obs := c.last
	c.mu.Unlock()
	if obs.Primary != p.Addr && c.Observations != nil {
		if saved, err := c.Observations.Load(); err == nil {
			obs = saved
		}
	}
	return obs, obs.Primary == p.Addr && !obs.At.IsZero()
}

// Failover promotes the replica now (`agent db failover`): only when the primary does not
// answer, and, unless force, only when the replica has every acknowledged write.
func (c *Cluster) Failover(ctx context.Context, force bool) error {
	p, r, rf, err := c.roles(ctx)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, perr := p.DB.Status(pctx)
	cancel()
	if perr == nil || mariadb.Answered(perr) {
		return fmt.Errorf("the primary %s (%s) answers: use `agent db switchover` for a planned change", p.Container, p.Addr)
	}
	return c.failover(ctx, p, r, rf, force)
}

// failover fences the dead primary p and promotes r.
func (c *Cluster) failover(ctx context.Context, p, r *Node, rf RolesFile, force bool) error {
	if rf.IsQuarantined(r.Addr) {
		c.refuse(ctx, p, r, r.Container+" is quarantined (its history diverged): it cannot be promoted")
		return ErrNotSafe
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	rs, err := r.DB.Status(sctx)
	cancel()
	if err != nil {
		c.refuse(ctx, p, r, fmt.Sprintf("the replica %s does not answer either: %v", r.Container, err))
		return fmt.Errorf("%w: the replica does not answer: %v", ErrNotSafe, err)
	}
	if !force {
		if reason := c.unsafe(p, rs); reason != "" {
			c.refuse(ctx, p, r, reason)
			return fmt.Errorf("%w: %s", ErrNotSafe, reason)
		}
	}
	start := time.Now()
	log := c.log().With("old_primary", p.Container, "new_primary", r.Container)
	log.Warn("database: failing over", "force", force)

	// Fence: first the roles file, so that the old primary starts read-only whoever restarts
	// it; then stop it. Only then may the replica accept writes.
	old := rf
	rf.Primary = r.Addr
	rf.Fenced = append(without(rf.Fenced, p.Addr), p.Addr) // started again by the watch
	if err := c.Roles.Write(ctx, rf); err != nil {
		return fmt.Errorf("failover: name %s the primary: %w (nothing changed)", r.Container, err)
	}
	if err := c.Engine.Kill(ctx, p.Container); err != nil {
		if werr := c.Roles.Write(context.WithoutCancel(ctx), old); werr != nil {
			log.Error("database: cannot restore the roles file", "error", werr)
		}
		c.refuse(ctx, p, r, fmt.Sprintf("the old primary %s could not be stopped (fencing): %v", p.Container, err))
		return fmt.Errorf("failover: fence %s: %w (nothing promoted)", p.Container, err)
	}
	fenced := time.Since(start)
	if err := c.promote(ctx, r, c.applyTimeout()); err != nil {
		// The roles file already names r: the next round finishes the promotion
		// (repairReadOnlyPrimary), and the old primary stays down meanwhile.
		c.refuse(ctx, p, r, fmt.Sprintf("the promotion of %s failed after %s was fenced: %v", r.Container, p.Container, err))
		return fmt.Errorf("failover: promote %s: %w", r.Container, err)
	}
	took := time.Since(start)
	c.mu.Lock()
	c.fails = 0
	wasRefused := c.refused
	c.refused = false
	c.last = Observation{}
	c.mu.Unlock()
	if c.Metrics != nil {
		c.Metrics.primaryChanges.Inc()
	}
	log.Warn("database: failed over", "took", took.Round(time.Millisecond), "fencing", fenced.Round(time.Millisecond))
	labels := map[string]string{"old_primary": p.Container, "new_primary": r.Container}
	if wasRefused {
		c.notify(ctx, "FailoverRefused", false, map[string]string{"primary": p.Container}, "")
	}
	c.notify(ctx, "DatabaseFailover", true, labels, fmt.Sprintf(
		"%s did not answer; %s is the primary now (promoted in %s, fenced: %s was stopped and starts read-only). "+
			"%s rejoins as its replica by itself when it is back. Switch back with `agent db switchover` once `agent db status` shows it replicating.",
		p.Container, r.Container, took.Round(time.Millisecond), p.Container, p.Container))
	go c.StartFenced(context.WithoutCancel(ctx))
	return nil
}

func (c *Cluster) applyTimeout() time.Duration {
	if c.ApplyTimeout > 0 {
		return c.ApplyTimeout
	}
	return 30 * time.Second
}

// unsafe says why promoting r could lose a write the dead primary p acknowledged ("" = safe):
// semi-synchronous replication was off when p last answered, or r had not received all p had
// logged then.
func (c *Cluster) unsafe(p *Node, rs mariadb.Status) string {
	obs, ok := c.lastObservation(p)
	switch {
	case !ok:
		return reasonNoObservation
	case time.Since(obs.At) > MaxObservationAge:
		return fmt.Sprintf("the last observation of the primary is %s old (the watch was not looking): the replica may lack writes acknowledged since", time.Since(obs.At).Round(time.Second))
	case !obs.SemiSyncOn:
		return fmt.Sprintf("semi-synchronous replication was off when %s last answered (%s): commits were not waiting for the replica", p.Container, obs.At.Format(time.RFC3339))
	case rs.Replica == nil || rs.Replica.MasterHost != p.Addr:
		return "the replica does not replicate from the primary"
	case rs.Replica.SQLRunning != "Yes":
		return fmt.Sprintf("the replica does not apply what it receives (SQL thread %s: %s)", rs.Replica.SQLRunning, rs.Replica.LastSQLError)
	}
	if behind := rs.Replica.IOPos.Behind(obs.BinlogPos); len(behind) > 0 {
		return fmt.Sprintf("the replica had not received %s (the primary's last position)", behind)
	}
	return ""
}

// refuse alerts once that the dead primary is not replaced automatically.
func (c *Cluster) refuse(ctx context.Context, p, r *Node, reason string) {
	c.log().Error("database: no automatic failover", "primary", p.Container, "reason", reason)
	if reason == reasonNoObservation && time.Since(c.started) < StartupGrace {
		return // the servers are starting with the agent (a host's boot): not news yet
	}
	c.mu.Lock()
	already := c.refused
	c.refused = true
	c.mu.Unlock()
	if already {
		return
	}
	c.notify(ctx, "FailoverRefused", true, map[string]string{"primary": p.Container}, fmt.Sprintf(
		"The primary %s does not answer and %s was not promoted: %s. Check `agent db status`; "+
			"once you accept the risk, `agent db failover --force` promotes %s.", p.Container, r.Container, reason, r.Container))
}

// tendReplica keeps the other server a read-only replica of the primary: it makes a writable
// one read-only, points one that does not replicate at the primary, quarantines one whose history
// diverged, and releases one that replicates again (re-seeded).
func (c *Cluster) tendReplica(ctx context.Context, p, r *Node, rf RolesFile, ps, rs mariadb.Status) error {
	log := c.log().With("server", r.Container)
	if !rs.ReadOnly {
		log.Warn("database: a second writable server: making it read-only", "primary", p.Container)
		if err := r.DB.SetReadOnly(ctx, true); err != nil {
			return fmt.Errorf("fence %s read-only: %w", r.Container, err)
		}
	}
	if c.refused {
		c.mu.Lock()
		c.refused = false
		c.mu.Unlock()
		c.notify(ctx, "FailoverRefused", false, map[string]string{"primary": p.Container}, "")
	}
	c.unstickSemiSync(ctx, p, r, rf, ps, rs)
	if rs.Replica.Replicating(p.Addr) {
		return c.release(ctx, r, rf)
	}
	if rf.IsQuarantined(r.Addr) {
		return nil
	}
	if rs.Replica != nil && rs.Replica.MasterHost == p.Addr && rs.Replica.IORunning == "Connecting" && rs.Replica.LastIOErrno != 1236 {
		return nil // (re)connecting on its own
	}
	diverged := rs.CurrentPos.NotIn(ps.BinlogState)
	if rs.Replica != nil && rs.Replica.MasterHost == p.Addr && rs.Replica.LastIOErrno == 1236 && len(diverged) == 0 {
		diverged = rs.CurrentPos // the primary itself says the position is not in its binlog
	}
	if len(diverged) > 0 {
		log.Error("database: history diverged from the primary's: quarantined", "not_on_primary", diverged.String())
		if err := r.DB.StopReplication(ctx); err != nil {
			log.Warn("database: cannot stop the quarantined server's replication", "error", err)
		}
		rf.Quarantined = append(without(rf.Quarantined, r.Addr), r.Addr)
		if err := c.Roles.Write(ctx, rf); err != nil {
			return err
		}
		c.mu.Lock()
		if c.quarantineAlerted == nil {
			c.quarantineAlerted = map[string]string{}
		}
		c.quarantineAlerted[r.Addr] = r.Container
		c.mu.Unlock()
		c.notify(ctx, "DatabaseQuarantined", true, map[string]string{"server": r.Container}, fmt.Sprintf(
			"%s has transactions the primary %s never received (%s): it is read-only, not replicated and not read from. "+
				"Re-seed it from the primary: `agent db reseed %s` (its diverged binary logs are kept in its volume; docs/failover.md).",
			r.Container, p.Container, diverged, r.Service))
		return nil
	}
	c.mu.Lock()
	if c.lastRejoin == nil {
		c.lastRejoin = map[string]time.Time{}
	}
	recent := time.Since(c.lastRejoin[r.Addr]) < 10*time.Second
	if !recent {
		c.lastRejoin[r.Addr] = time.Now()
	}
	c.mu.Unlock()
	if recent {
		return nil
	}
	log.Info("database: making it a replica of the primary", "primary", p.Container, "from", rs.CurrentPos.String())
	if err := r.DB.ReplicateFrom(ctx, p.Addr, c.ReplUser, c.ReplPassword); err != nil {
		return fmt.Errorf("make %s a replica of %s: %w", r.Container, p.Container, err)
	}
	return nil
}

// SemiSyncStuckAfter is how long the primary's semi-sync may stay off while its replica answers
// and is configured to replicate from it before the watch restarts semi-sync on the primary.
const SemiSyncStuckAfter = 10 * time.Second

// unstickSemiSync restarts the primary's semi-sync when it has been off for SemiSyncStuckAfter
// while the replica is up and points at it: a hung dump thread of a broken connection keeps
// the replica out (MariaDB 11.8), and with it every automatic failover. At most every 30 s.
func (c *Cluster) unstickSemiSync(ctx context.Context, p, r *Node, rf RolesFile, ps, rs mariadb.Status) {
	if ps.SemiSyncOn || rs.Replica == nil || rs.Replica.MasterHost != p.Addr || rf.IsQuarantined(r.Addr) {
		c.semiOffSince = time.Time{}
		return
	}
	if c.semiOffSince.IsZero() {
		c.semiOffSince = time.Now()
		return
	}
	if time.Since(c.semiOffSince) < SemiSyncStuckAfter || time.Since(c.semiRestarted) < 30*time.Second {
		return
	}
	c.semiRestarted = time.Now()
	c.log().Warn("database: semi-sync has been off on the primary while its replica points at it: restarting it",
		"primary", p.Container, "off_for", time.Since(c.semiOffSince).Round(time.Second), "replica_io", rs.Replica.IORunning)
	if err := p.DB.RestartSemiSync(ctx); err != nil {
		c.log().Warn("database: cannot restart semi-sync", "primary", p.Container, "error", err)
	}
}

// repairReadOnlyPrimary handles a named primary that is read-only: a promotion or a switchover
// was interrupted. When the other server is writable the roles file is behind: it is corrected.
// Otherwise the promotion of the named server is finished (Promote is safe to repeat: it applies
// what it received first, and only then accepts writes), the other fenced first when it does not
// answer.
func (c *Cluster) repairReadOnlyPrimary(ctx context.Context, p, r *Node, rf RolesFile, ps mariadb.Status, rp probe) error {
	log := c.log().With("primary", p.Container)
	if rp.err == nil && !rp.st.ReadOnly {
		log.Warn("database: the roles file names a read-only server while the other accepts writes: correcting it", "writable", r.Container)
		rf.Primary = r.Addr
		return c.Roles.Write(ctx, rf)
	}
	if fresh, err := c.freshRoles(ctx); err != nil || fresh.Primary != rf.Primary {
		return fmt.Errorf("the roles file changed or cannot be read (%v): not repairing on a stale view", err)
	}
	log.Warn("database: the named primary is read-only (an interrupted promotion or switchover): finishing its promotion", "other", r.Container)
	if rp.err != nil && !mariadb.Answered(rp.err) {
		if err := c.Engine.Kill(ctx, r.Container); err != nil {
			return fmt.Errorf("fence %s before finishing the promotion: %w", r.Container, err)
		}
		c.markFenced(ctx, r)
	}
	if err := c.promote(ctx, p, c.applyTimeout()); err != nil {
		c.refuse(ctx, p, r, fmt.Sprintf("finishing the promotion of %s failed: %v", p.Container, err))
		return fmt.Errorf("finish the promotion of %s: %w", p.Container, err)
	}
	return nil
}

// promote promotes n; a promotion that made it writable but left its old replication behind
// counts as done (the next round clears it).
func (c *Cluster) promote(ctx context.Context, n *Node, applyTimeout time.Duration) error {
	err := n.DB.Promote(ctx, applyTimeout)
	var leftover *mariadb.LeftoverError
	if errors.As(err, &leftover) {
		c.log().Warn("database: promoted; its old replication is cleared at the next round", "server", n.Container, "error", err)
		return nil
	}
	return err
}

// freshRoles reads the roles from where the database containers read them (not a cache), when
// the store can: before acting on a repair.
func (c *Cluster) freshRoles(ctx context.Context) (RolesFile, error) {
	if r, ok := c.Roles.(interface {
		Refresh(context.Context) (RolesFile, error)
	}); ok {
		return r.Refresh(ctx)
	}
	return c.Roles.Read(ctx)
}

// markFenced records that the agent stopped n: the watch starts it again until it answers
// (a `docker kill`ed container is not restarted by Docker's restart policy).
func (c *Cluster) markFenced(ctx context.Context, n *Node) {
	rf, err := c.Roles.Read(ctx)
	if err == nil && !slices.Contains(rf.Fenced, n.Addr) {
		rf.Fenced = append(rf.Fenced, n.Addr)
		err = c.Roles.Write(ctx, rf)
	}
	if err != nil {
		c.log().Warn("database: cannot record the fenced server", "server", n.Container, "error", err)
	}
}

// StartFenced starts every server the agent fenced that is not running: it comes up read-only
// (the roles file) and the watch makes it a replica. It waits for Docker.
func (c *Cluster) StartFenced(ctx context.Context) {
	rf, err := c.Roles.Read(ctx)
	if err != nil {
		return
	}
	for _, n := range c.Nodes {
		if !slices.Contains(rf.Fenced, n.Addr) || rf.IsQuarantined(n.Addr) {
			continue
		}
		if running, err := c.Engine.Running(ctx, n.Container); err != nil || running {
			continue
		}
		c.log().Info("database: starting the fenced server again", "server", n.Container)
		if err := c.Engine.Start(ctx, n.Container); err != nil {
			c.log().Warn("database: the fenced server did not start", "server", n.Container, "error", err)
		}
	}
}

func without(list []string, v string) []string {
	var out []string
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}
