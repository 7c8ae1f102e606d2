package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/binlog"
	"github.com/hastack/hastack/internal/mariadb"
	"github.com/hastack/hastack/internal/s3store"
)

// replayPlan is the point-in-time part of a restore: the archived transactions after the dump,
// up to the point asked for, every segment already verified and kept in the spool.
type replayPlan struct {
	Stop         string    `json:"stop"`      // the point asked for
	From         string    `json:"from_gtid"` // the dump's position: replayed after it
	Transactions int64     `json:"transactions"`
	FirstGTID    string    `json:"first_gtid,omitempty"`
	LastGTID     string    `json:"last_gtid,omitempty"`
	FirstTime    time.Time `json:"first_time,omitzero"`
	LastTime     time.Time `json:"last_time,omitzero"`
	Segments     int       `json:"segments"`
	Bytes        int64     `json:"bytes"`
	Covered      bool      `json:"covered"` // the archive reaches the stop

	chain *binlog.Chain
	opts  binlog.ReplayOptions
}

// pitrArchive is where a point-in-time restore reads the binlog archive, and how.
type pitrArchive struct {
	store *s3store.Store
	// keys check the segments' manifests. Unsigned segments are used as unsigned backups are:
	// only when the operator said so (allowUnsigned: --allow-unsigned names the backup to
	// trust), or when no manifest key is configured at all (then nothing is signed, and the
	// backup itself needed --allow-unsigned).
	keys          *backup.ManifestKeys
	allowUnsigned bool
	// spool receives every segment the replay needs, read from the store once: the checks and
	// the replay read them from there.
	spool *binlog.Spool
	// replayAccounts: replay account changes too (--replay-account-changes); else a replay
	// that holds any is refused before anything is touched.
	replayAccounts bool
}

// accountChangesError: the archive's transactions after the backup change accounts or grants.
// The restore keeps the accounts the target has (the stack's own, with the passwords of its
// secrets), so replaying them could stop the replay midway (CREATE USER of an account that is
// there) or change an account the stack needs (DROP or ALTER USER of app, repl or agent).
type accountChangesError struct {
	ID         string
	Statements []string
}

func (e *accountChangesError) Error() string {
	return fmt.Sprintf("the binlog archive after backup %s changes accounts or privileges:\n  %s\n"+
		"the restore keeps the accounts the target has (the stack's own, with the passwords of its secrets), so replaying these could stop the replay midway "+
		"(an account that is there already) or change an account the stack needs; nothing was touched. "+
		"Restore to a point before the first of them (--to-gtid or --at), or replay them anyway with --replay-account-changes",
		e.ID, strings.Join(e.Statements, "\n  "))
}

// planReplay finds the archived transactions after the dump m up to stop, fetches every segment
// they are in into the spool and verifies it (signature, SHA-256, decryption, checksums): a
// missing or corrupt one, or a disk without room for them, is refused here, before anything is
// touched. It returns nil when the archive is empty and the stop is a time (the restore is then
// the dump's, and the plan says so).
func planReplay(ctx context.Context, a pitrArchive, ids []age.Identity, m backup.Manifest, stop binlog.Stop) (*replayPlan, error) {
	chain, err := binlog.List(ctx, archiveStore{a.store}, binlog.ListOptions{Keys: a.keys, AllowUnsigned: a.allowUnsigned})
	if err != nil {
		return nil, fmt.Errorf("binlog archive: %w", err)
	}
	if len(chain.Segments) == 0 && len(chain.Rejected) > 0 {
		// Not an empty archive: one this agent cannot trust (a rotated key, unsigned segments).
		return nil, fmt.Errorf("the binlog archive has %d segments and none can be used (the first: %s): %s; "+
			"nothing was touched (agent backups --archive; restore the backup alone by its ID)",
			len(chain.Rejected), chain.Rejected[0].Key, chain.Rejected[0].Problem)
	}
	if len(chain.Segments) == 0 {
		if stop.GTID != (mariadb.GTID{}) {
			return nil, errors.New("--to-gtid needs the binlog archive, and it is empty (backup.archive.enabled; agent backups --archive)")
		}
		return nil, nil
	}
	from, err := binlog.ParsePosition(m.GTID)
	if err != nil {
		return nil, fmt.Errorf("backup %s: its GTID position %q: %w", m.ID, m.GTID, err)
	}
	opts := binlog.ReplayOptions{From: from, Stop: stop, Objects: a.store, Identities: ids}
	if !stop.Time.IsZero() {
		if last, ok := a.spool.LastCommit(ctx, chain, from, opts); ok && last.After(stop.Time) {
			// The backup was started before the point but its snapshot holds later commits.
			return nil, &dumpAfterStopError{ID: m.ID, Last: last}
		}
	}
	if _, err := a.spool.Fetch(ctx, chain, opts); err != nil {
		return nil, cannotReplay(m, stop, err)
	}
	opts.Spool = a.spool // from here on, the store is not read
	sel, changes, err := binlog.Tally(ctx, chain, opts)
	if err != nil {
		return nil, cannotReplay(m, stop, err)
	}
	if stop.GTID != (mariadb.GTID{}) && !sel.Covered {
		return nil, fmt.Errorf("GTID %s is not in the binlog archive after backup %s (it ends at %s); nothing was touched", stop.GTID, m.ID, chain.End())
	}
	if foreign := foreignDatabases(m, changes); len(foreign) > 0 {
		return nil, fmt.Errorf("the binlog archive after backup %s changes databases the backup does not hold (%s): the restore drops and loads only the backup's, "+
			"so the replay would land on what those databases hold now; nothing was touched. Restore into a fresh container (--target new) and copy what you need",
			m.ID, strings.Join(foreign, ", "))
	}
	if len(changes.Accounts) > 0 && !a.replayAccounts {
		return nil, &accountChangesError{ID: m.ID, Statements: changes.Accounts}
	}
	p := &replayPlan{Stop: stop.String(), From: m.GTID, Transactions: sel.Transactions, FirstTime: sel.FirstTime, LastTime: sel.LastTime,
		Segments: len(sel.Segments), Bytes: sel.Bytes, Covered: sel.Covered, chain: chain, opts: opts}
	if sel.Transactions > 0 {
		p.FirstGTID, p.LastGTID = sel.FirstGTID.String(), sel.LastGTID.String()
	}
	return p, nil
}

// dumpAfterStopError: the backup chosen for a time holds a transaction committed after it (its
// snapshot came later than its start); an older backup must be used.
type dumpAfterStopError struct {
	ID   string
	Last time.Time
}

func (e *dumpAfterStopError) Error() string {
	return fmt.Sprintf("backup %s holds a transaction committed at %s, after the point", e.ID, e.Last.Local().Format(time.DateTime))
}

// cannotReplay is the error of a replay whose segments cannot be fetched or read: the archive's
// fault, or the spool's (no room on its disk).
func cannotReplay(m backup.Manifest, stop binlog.Stop, err error) error {
	var spoolErr *binlog.SpoolError
	if errors.As(err, &spoolErr) {
		return fmt.Errorf("fetch the binlog archive's segments to bring backup %s to %s: %w; nothing was touched", m.ID, stop, err)
	}
	return fmt.Errorf("the binlog archive cannot bring backup %s to %s: %w; nothing was touched (agent backups --archive shows the archive's span and holes)", m.ID, stop, err)
}

// spoolProgress shows a spool's fetching as the "archive" step of a restore or drill (report
// may be nil).
func spoolProgress(report func(backup.RestoreProgress)) func(binlog.SpoolProgress) {
	if report == nil {
		return nil
	}
	return func(p binlog.SpoolProgress) {
		report(backup.RestoreProgress{Step: "archive", Read: p.Bytes, Total: p.TotalBytes})
	}
}

// foreignDatabases are the databases the replay changes that the backup does not hold (nor the
// server's own).
func foreignDatabases(m backup.Manifest, c backup.ArchiveChanges) []string {
	held := map[string]bool{}
	for _, db := range m.Databases() {
		held[db] = true
	}
	seen := map[string]bool{}
	add := func(db string) {
		if db == "" || held[db] || backup.IsSystemDatabase(db) {
			return
		}
		seen[db] = true
	}
	for t := range c.Tables {
		add(t.Database)
	}
	for t := range c.Unknown {
		add(t.Database)
	}
	for db := range c.UnknownDatabases {
		add(db)
	}
	return slices.Sorted(maps.Keys(seen))
}

// notes are what the plan must say about the replay.
func (p *replayPlan) notes() []string {
	if p.Covered {
		return nil
	}
	last := "none"
	if !p.LastTime.IsZero() {
		last = p.LastTime.Local().Format(time.DateTime)
	}
	return []string{fmt.Sprintf("the binlog archive has nothing committed after %s (its last transaction): if the database committed more up to %s, "+
		"the archive does not have it (it lags about a second, or the archiver was stopped); check agent backups --archive", last, p.Stop)}
}

// replay applies the plan's transactions on target (mariadb-binlog in its container, then the
// client); the segments are read from the spool (and checked again), not from the store.
func (p *replayPlan) replay(ctx context.Context, target mariadb.ContainerServer) (string, error) {
	if p.Transactions == 0 {
		return "no transaction after the backup up to " + p.Stop, nil
	}
	sel, err := binlog.Apply(ctx, p.chain, p.opts, target.ApplyBinlog)
	if err != nil {
		return "", err
	}
	from := p.From
	if from == "" {
		from = "the backup (taken before any transaction)"
	}
	return fmt.Sprintf("%d transactions after %s, the last %s committed %s", sel.Transactions, from,
		sel.LastGTID, sel.LastTime.Local().Format(time.DateTime)), nil
}

// pickBackupBefore chooses the newest complete backup whose GTID position is before target in
// target's replication domain (restore --to-gtid).
func pickBackupBefore(entries []backup.Entry, target mariadb.GTID) (backup.Entry, error) {
	for _, e := range entries { // newest first
		if !e.Complete || e.Manifest == nil {
			continue
		}
		pos, err := mariadb.ParseGTIDList(e.Manifest.GTID)
		if err != nil {
			continue
		}
		var seq uint64
		for _, g := range pos {
			if g.Domain == target.Domain {
				seq = max(seq, g.Seq)
			}
		}
		if seq < target.Seq {
			return e, nil
		}
	}
	return backup.Entry{}, fmt.Errorf("no complete backup before GTID %s (agent backups lists them)", target)
}
