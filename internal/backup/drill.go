package backup

import (
	"context"
	"fmt"
	"time"

	"filippo.io/age"
)

// DrillOptions say which backup a restore drill restores, and into what.
type DrillOptions struct {
	Backup Manifest
	// Auth and AllowUnsigned are as in RestoreOptions: a drill loads the dump as root too.
	Auth          Authenticity
	AllowUnsigned bool
	Reader        ObjectReader
	Identities    []age.Identity
	// Scratch is a fresh, empty server that nothing else uses; the caller removes it afterwards.
	Scratch  Server
	Progress func(p RestoreProgress)
}

// DrillReport is what a restore drill found.
type DrillReport struct {
	Backup  string        `json:"backup"`
	Taken   time.Time     `json:"taken"`
	Tables  int           `json:"tables"`
	Rows    int64         `json:"rows"`
	Took    time.Duration `json:"took_ns"`
	Scratch string        `json:"scratch"`
}

// Drill proves that a backup restores: it refuses a backup whose manifest is not authenticated
// (see Authorize), loads the backup into a scratch server in one read of the object (its size
// and SHA-256 are checked at the end, and a mismatch fails the load) and compares every user
// table's rows with the manifest. A backup nobody has restored is a hope, not a backup.
func Drill(ctx context.Context, o DrillOptions) (DrillReport, error) {
	start := time.Now()
	m := o.Backup
	rep := DrillReport{Backup: m.ID, Taken: m.Started, Scratch: o.Scratch.Name()}
	if err := Authorize(m.ID, o.Auth, o.AllowUnsigned); err != nil {
		return rep, fmt.Errorf("restore drill of %s: %w", m.ID, err)
	}
	if err := m.Restorable(); err != nil {
		return rep, err
	}
	progress := o.Progress
	if progress == nil {
		progress = func(RestoreProgress) {}
	}
	progress(RestoreProgress{Step: "load", Total: m.StoredBytes})
	bytes := func(n int64) { progress(RestoreProgress{Step: "load", Read: n, Total: m.StoredBytes}) }
	sql, err := openUnverified(ctx, m, o.Reader, o.Identities, bytes)
	if err == nil {
		err = load(ctx, m, sql, o.Scratch)
	}
	if err != nil {
		return rep, fmt.Errorf("restore drill of %s: %w", m.ID, err)
	}
	progress(RestoreProgress{Step: "check"})
	got, err := CountRows(ctx, o.Scratch, m.Databases())
	if err != nil {
		return rep, fmt.Errorf("restore drill of %s: %w", m.ID, err)
	}
	if diffs := compareUser(m, got); len(diffs) > 0 {
		return rep, fmt.Errorf("restore drill of %s: the restored database differs from the manifest: %s", m.ID, joinMax(diffs, 5))
	}
	rep.Tables = len(got)
	for _, t := range got {
		rep.Rows += t.Rows
	}
	rep.Took = time.Since(start)
	return rep, nil
}
