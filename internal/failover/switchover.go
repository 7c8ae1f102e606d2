package failover

import (
	"context"
	"fmt"
	"time"

	"github.com/hastack/hastack/internal/mariadb"
)

var parseList = mariadb.ParseGTIDList

// MaxSwitchoverPause bounds how long writes wait in a switchover: when the replica has not
// applied the primary's last write by then, the switchover is undone.
const MaxSwitchoverPause = time.Second

// Switchover swaps the roles of two healthy servers (planned maintenance): the primary turns
// read-only, the replica applies its last writes (at most MaxSwitchoverPause, else everything
// is undone), is named in the roles file and accepts writes, and the old primary replicates
// from it. It returns how long writes were refused. The caller holds the database lock.
func (c *Cluster) Switchover(ctx context.Context) (time.Duration, error) {
	p, r, rf, err := c.roles(ctx)
	if err != nil {
		return 0, err
	}
	pp, rp := probeBoth(ctx, p, r, 2*time.Second)
	switch {
	case pp.err != nil:
		return 0, fmt.Errorf("switchover: the primary %s: %w (a dead primary needs `agent db failover`)", p.Container, pp.err)
	case rp.err != nil:
		return 0, fmt.Errorf("switchover: the replica %s: %w", r.Container, rp.err)
	case pp.st.ReadOnly:
		return 0, fmt.Errorf("switchover: the primary %s is read-only: wait for the watch to repair it (agent db status)", p.Container)
	case rf.IsQuarantined(r.Addr):
		return 0, fmt.Errorf("switchover: %s is quarantined: re-seed it first (docs/failover.md)", r.Container)
	case !rp.st.Replica.Replicating(p.Addr):
		return 0, fmt.Errorf("switchover: %s does not replicate from %s (agent db status)", r.Container, p.Container)
	}
	log := c.log().With("old_primary", p.Container, "new_primary", r.Container)
	undo := func(cause error) error {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := c.Roles.Write(uctx, rf); err != nil {
			log.Error("switchover: cannot restore the roles file", "error", err)
		}
		if err := p.DB.SetReadOnly(uctx, false); err != nil {
			log.Error("switchover: cannot make the primary writable again", "error", err)
		}
		c.notify(uctx, "SwitchoverFailed", true, map[string]string{"primary": p.Container}, fmt.Sprintf(
			"The switchover from %s to %s was undone: %v. %s stays the primary.", p.Container, r.Container, cause, p.Container))
		return fmt.Errorf("switchover undone (%s stays the primary): %w", p.Container, cause)
	}

	start := time.Now()
	if err := p.DB.SetReadOnly(ctx, true); err != nil {
		return 0, undo(fmt.Errorf("make %s read-only: %w", p.Container, err))
	}
	st, err := p.DB.Status(ctx)
	if err != nil {
		return 0, undo(err)
	}
	readOnly := time.Since(start)
	if err := r.DB.WaitApplied(ctx, st.BinlogPos, MaxSwitchoverPause); err != nil {
		return 0, undo(fmt.Errorf("%s did not apply %s within %s: %w", r.Container, st.BinlogPos, MaxSwitchoverPause, err))
	}
	applied := time.Since(start)
	next := rf
	next.Primary = r.Addr
	if err := c.Roles.Write(ctx, next); err != nil {
		return 0, undo(err)
	}
	named := time.Since(start)
	if err := c.promote(ctx, r, MaxSwitchoverPause); err != nil {
		if rerr := r.DB.ReplicateFrom(context.WithoutCancel(ctx), p.Addr, c.ReplUser, c.ReplPassword); rerr != nil {
			log.Error("switchover: cannot make the replica replicate again", "error", rerr)
		}
		return 0, undo(fmt.Errorf("promote %s: %w", r.Container, err))
	}
	pause := time.Since(start)
	if err := p.DB.ReplicateFrom(ctx, r.Addr, c.ReplUser, c.ReplPassword); err != nil {
		// Writes go to the new primary already; the watch retries the rejoin.
		log.Warn("switchover: the old primary does not replicate yet", "error", err)
	}
	if c.Metrics != nil {
		c.Metrics.primaryChanges.Inc()
	}
	c.mu.Lock()
	c.last = Observation{}
	c.mu.Unlock()
	c.notify(ctx, "SwitchoverFailed", false, map[string]string{"primary": p.Container}, "")
	// Where the pause went, for an operator who finds it long (each mark is time since the start).
	log.Info("database: switched over", "writes_paused", pause.Round(time.Millisecond),
		"read_only_at", readOnly.Round(time.Millisecond), "applied_at", applied.Round(time.Millisecond),
		"named_at", named.Round(time.Millisecond))
	return pause, nil
}
