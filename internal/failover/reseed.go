package failover

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"time"
)

// RequestReseed asks a quarantined server to copy the primary's data again: the roles file gets
// a re-seed request for it (its address and a new token); the caller then restarts its
// container (without the database lock: a graceful stop may take a while). Its entrypoint, seeing a request it has not carried out, sets its binary logs aside in its volume
// (the diverged transactions are kept there, for the operator), initialises the data directory
// from a consistent dump of the primary and replicates from there; the watch (or WaitReseeded)
// then releases it. Only a server that is not the primary, and quarantined unless force, is
// re-seeded: its data is replaced. The caller holds the database lock. It returns the node and
// the request's token (the name of the set-aside binary logs).
func (c *Cluster) RequestReseed(ctx context.Context, service string, force bool) (*Node, string, error) {
	p, r, rf, err := c.roles(ctx)
	if err != nil {
		return nil, "", err
	}
	switch {
	case p.Service == service:
		return nil, "", fmt.Errorf("re-seed %s: it is the primary; a primary is never re-seeded (switch over first: agent db switchover)", service)
	case r.Service != service:
		return nil, "", fmt.Errorf("re-seed %s: not a database server of the configuration (database.servers: %s, %s)", service, p.Service, r.Service)
	case !rf.IsQuarantined(r.Addr) && !force:
		return nil, "", fmt.Errorf("re-seed %s: it is not quarantined, and re-seeding replaces its data; --force to re-seed it anyway", service)
	}
	pp, _ := probeBoth(ctx, p, r, 2*time.Second)
	if pp.err != nil {
		return nil, "", fmt.Errorf("re-seed %s: the primary %s must answer to be copied: %w", service, p.Container, pp.err)
	}
	if pp.st.ReadOnly {
		return nil, "", fmt.Errorf("re-seed %s: the primary %s is read-only: wait for the watch to repair it (agent db status)", service, p.Container)
	}
	token, err := newToken()
	if err != nil {
		return nil, "", err
	}
	next := rf
	next.Reseed = maps.Clone(rf.Reseed)
	if next.Reseed == nil {
		next.Reseed = map[string]string{}
	}
	next.Reseed[r.Addr] = token
	if err := c.Roles.Write(ctx, next); err != nil {
		return nil, "", fmt.Errorf("re-seed %s: write the request: %w", service, err)
	}
	c.log().Warn("database: re-seeding from the primary", "server", r.Container, "primary", p.Container, "token", token)
	return r, token, nil
}

// WaitReseeded waits until the node replicates from the primary again, then releases it (as
// the watch does: out of quarantine, its re-seed request done). progress is told what it waits
// for, at most every 5 s. lock is taken for the release.
func (c *Cluster) WaitReseeded(ctx context.Context, n *Node, lock interface {
	Lock(ctx context.Context) (func(), error)
}, progress func(string)) error {
	last := time.Time{}
	for {
		p, r, _, err := c.roles(ctx)
		if err != nil {
			return err
		}
		if r != n {
			return fmt.Errorf("%s became the primary while it was re-seeded", n.Container)
		}
		st, err := n.DB.Status(ctx)
		switch {
		case err == nil && st.Replica.Replicating(p.Addr) && st.Replica.IORunning == "Yes":
			unlock, err := lock.Lock(ctx)
			if err != nil {
				return err
			}
			defer unlock()
			rf, err := c.Roles.Read(ctx)
			if err != nil {
				return err
			}
			return c.release(ctx, n, rf)
		case time.Since(last) >= 5*time.Second:
			last = time.Now()
			what := "it copies the primary's data"
			if err != nil {
				what = "it does not answer yet (" + err.Error() + ")"
			}
			progress(fmt.Sprintf("waiting for %s to replicate from %s: %s", n.Container, p.Container, what))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to replicate again: %w (its logs: docker logs %s)", n.Container, ctx.Err(), n.Container)
		case <-time.After(time.Second):
		}
	}
}

// release ends a server's quarantine, fencing and re-seed request once it replicates from the
// primary.
func (c *Cluster) release(ctx context.Context, r *Node, rf RolesFile) error {
	fenced := slices.Contains(rf.Fenced, r.Addr)
	_, reseed := rf.Reseed[r.Addr]
	quarantined := rf.IsQuarantined(r.Addr)
	if !fenced && !reseed && !quarantined {
		return nil
	}
	rf.Fenced = without(rf.Fenced, r.Addr)
	rf.Quarantined = without(rf.Quarantined, r.Addr)
	if reseed {
		rf.Reseed = maps.Clone(rf.Reseed)
		delete(rf.Reseed, r.Addr)
	}
	if err := c.Roles.Write(ctx, rf); err != nil {
		return err
	}
	if quarantined {
		c.log().Info("database: the quarantined server replicates again: released", "server", r.Container)
		c.mu.Lock()
		delete(c.quarantineAlerted, r.Addr)
		c.mu.Unlock()
		c.notify(ctx, "DatabaseQuarantined", false, map[string]string{"server": r.Container}, "")
	}
	return nil
}

// resolveReleased resolves the quarantine alerts of this process whose servers the roles no
// longer quarantine (released by another process: its resolution alone would be overwritten by
// this one's next re-post of the firing alert).
func (c *Cluster) resolveReleased(ctx context.Context, rf RolesFile) {
	c.mu.Lock()
	var released map[string]string
	for addr, container := range c.quarantineAlerted {
		if !rf.IsQuarantined(addr) {
			if released == nil {
				released = map[string]string{}
			}
			released[addr] = container
			delete(c.quarantineAlerted, addr)
		}
	}
	c.mu.Unlock()
	for _, container := range released {
		c.notify(ctx, "DatabaseQuarantined", false, map[string]string{"server": container}, "")
	}
}

func newToken() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("re-seed token: %w", err)
	}
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b), nil
}
