package backup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"
)

// Server is a MariaDB server a restore loads into and reads back.
type Server interface {
	// Name says which server this is, for people ("db_master").
	Name() string
	// Load runs the SQL read from sql as root; it fails at the first failing statement.
	Load(ctx context.Context, sql io.Reader) error
	// Query runs one statement as root and returns its rows, each a column name -> value map.
	Query(ctx context.Context, q string) ([]map[string]string, error)
}

// IsSystemDatabase tells whether db is one of the server's own (mysql, information_schema, ...).
func IsSystemDatabase(db string) bool { return systemDatabases[db] }

// systemDatabases are the server's own: a restore never drops them and drills do not compare them.
var systemDatabases = map[string]bool{"mysql": true, "sys": true, "information_schema": true, "performance_schema": true}

// UserTables returns the manifest's tables outside the server's own databases.
func (m Manifest) UserTables() map[TableName]TableInfo {
	out := map[TableName]TableInfo{}
	for name, t := range m.Tables {
		if name.Database != "" && !systemDatabases[name.Database] {
			out[name] = t
		}
	}
	return out
}

// Databases returns the databases of the manifest's user tables, sorted: the databases a
// restore drops and loads again.
func (m Manifest) Databases() []string {
	set := map[string]bool{}
	for name := range m.UserTables() {
		set[name.Database] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// RestoreOptions say what to restore where.
type RestoreOptions struct {
	Backup Manifest
	// Auth is what checking Backup's signature found (Authenticate); AllowUnsigned accepts
	// a backup without a signature that can be checked (see Authorize).
	Auth          Authenticity
	AllowUnsigned bool
	Reader        ObjectReader
	Identities    []age.Identity
	Target        Server // where the dump is loaded
	// Replica, when set, replicates from Target: after the load it must catch up with Target's
	// GTID position, with both threads running, and hold the same rows.
	Replica        Server
	ReplicaTimeout time.Duration // default 10 minutes
	// Safety, when set, takes a backup of the current database before anything is changed.
	Safety func(ctx context.Context) (Manifest, error)
	// Progress is told about each step and, while the object is read, about bytes.
	Progress func(p RestoreProgress)
	// Replay, when set, runs after the dump is loaded and checked: it applies the archived
	// transactions that followed the dump, up to the point asked for (point-in-time recovery),
	// and says what it applied. It must have verified them before Restore is called: the
	// database is changed by then. A replica is then compared with the target, not with the
	// manifest.
	Replay func(ctx context.Context) (string, error)
}

// RestoreProgress is one progress report of a restore or drill.
type RestoreProgress struct {
	Step        string // verify, safety-backup, load, check, replay, replica
	Read, Total int64  // bytes of the stored object, during verify and load
}

// RestoreReport is what a restore did.
type RestoreReport struct {
	Backup       string        `json:"backup"`
	SafetyBackup string        `json:"safety_backup,omitempty"`
	Target       string        `json:"target"`
	Databases    []string      `json:"databases"`
	Tables       int           `json:"tables"`
	Rows         int64         `json:"rows"`
	Replayed     string        `json:"replayed,omitempty"` // what Replay applied after the dump
	Replica      string        `json:"replica,omitempty"`
	ReplicaGTID  string        `json:"replica_gtid,omitempty"`
	Took         time.Duration `json:"took_ns"`
}

// RestoreError is a failed restore: which step failed and what state it left the target in.
type RestoreError struct {
	Step    string
	Changed bool   // the target was changed before the failure
	Safety  string // the safety backup taken, if any
	Err     error
}

func (e *RestoreError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "restore failed at %s: %v", e.Step, e.Err)
	switch {
	case !e.Changed:
		b.WriteString("; the database was not touched")
	case e.Safety != "":
		fmt.Fprintf(&b, "; the database is partly restored: run the restore again, or restore the safety backup %s taken just before", e.Safety)
	default:
		b.WriteString("; the database is partly restored: run the restore again")
	}
	return b.String()
}

func (e *RestoreError) Unwrap() error { return e.Err }

// Restore brings a backup back: it refuses a backup whose manifest is not authenticated (see
// Authorize), verifies the whole object first (nothing is touched if it is corrupt, truncated or
// undecryptable), takes the safety backup, drops the backup's databases on the target and loads
// the dump (the target's binary log carries it to a replica), then checks the target's row
// counts against the manifest and, with a replica, that replication caught up and the replica
// holds the same rows.
func Restore(ctx context.Context, o RestoreOptions) (RestoreReport, error) {
	start := time.Now()
	m := o.Backup
	progress := o.Progress
	if progress == nil {
		progress = func(RestoreProgress) {}
	}
	report := RestoreReport{Backup: m.ID, Target: o.Target.Name(), Databases: m.Databases()}
	bytesOf := func(step string) Progress {
		return func(n int64) { progress(RestoreProgress{Step: step, Read: n, Total: m.StoredBytes}) }
	}

	if err := Authorize(m.ID, o.Auth, o.AllowUnsigned); err != nil {
		return report, &RestoreError{Step: "authenticate", Err: err}
	}
	progress(RestoreProgress{Step: "verify", Total: m.StoredBytes})
	v, err := Verify(ctx, m, o.Reader, o.Identities, bytesOf("verify"))
	if err != nil {
		return report, &RestoreError{Step: "verify", Err: err}
	}
	if o.Safety != nil {
		progress(RestoreProgress{Step: "safety-backup"})
		s, err := o.Safety(ctx)
		if err != nil {
			return report, &RestoreError{Step: "safety backup", Err: fmt.Errorf("%w (to restore without one, say so: --no-safety-backup)", err)}
		}
		report.SafetyBackup = s.ID
	}
	fail := func(step string, err error) (RestoreReport, error) {
		return report, &RestoreError{Step: step, Changed: true, Safety: report.SafetyBackup, Err: err}
	}

	progress(RestoreProgress{Step: "load", Total: m.StoredBytes})
	sql, err := OpenDump(ctx, v, o.Reader, o.Identities, bytesOf("load"))
	if err != nil {
		// Nothing was loaded, but the safety backup may have been taken.
		return report, &RestoreError{Step: "load", Safety: report.SafetyBackup, Err: err}
	}
	if err := load(ctx, m, sql, o.Target); err != nil {
		return fail("load", err)
	}

	progress(RestoreProgress{Step: "check"})
	got, err := CountRows(ctx, o.Target, report.Databases)
	if err != nil {
		return fail("check", err)
	}
	if diffs := compareUser(m, got); len(diffs) > 0 {
		return fail("check", fmt.Errorf("%s after the load differs from the backup: %s", o.Target.Name(), joinMax(diffs, 5)))
	}
	if o.Replay != nil {
		progress(RestoreProgress{Step: "replay"})
		if report.Replayed, err = o.Replay(ctx); err != nil {
			return fail("replay", err)
		}
		if got, err = CountRows(ctx, o.Target, report.Databases); err != nil {
			return fail("replay", err)
		}
	}
	report.Tables = len(got)
	for _, t := range got {
		report.Rows += t.Rows
	}

	if o.Replica != nil {
		progress(RestoreProgress{Step: "replica"})
		report.Replica = o.Replica.Name()
		gtid, err := CatchUp(ctx, o.Target, o.Replica, cmpOr(o.ReplicaTimeout, 10*time.Minute))
		if err != nil {
			return fail("replica", err)
		}
		report.ReplicaGTID = gtid
		rgot, err := CountRows(ctx, o.Replica, report.Databases)
		if err != nil {
			return fail("replica", err)
		}
		want, what := m, "the backup"
		if o.Replay != nil {
			want, what = Manifest{Tables: got}, o.Target.Name()
		}
		if diffs := compareUser(want, rgot); len(diffs) > 0 {
			return fail("replica", fmt.Errorf("%s differs from %s after catching up: %s", o.Replica.Name(), what, joinMax(diffs, 5)))
		}
	}
	report.Took = time.Since(start)
	return report, nil
}

// load drops the backup's databases on the target and runs the dump read from sql there; it
// closes sql.
func load(ctx context.Context, m Manifest, sql io.ReadCloser, target Server) error {
	defer sql.Close()
	keep, err := existingAccounts(ctx, target)
	if err != nil {
		return err
	}
	var prelude strings.Builder
	for _, db := range m.Databases() {
		// The dump creates each database again: what was added after the backup goes with it.
		fmt.Fprintf(&prelude, "DROP DATABASE IF EXISTS %s;\n", quoteName(db))
	}
	if err := target.Load(ctx, io.MultiReader(strings.NewReader(prelude.String()), newKeepAccounts(sql, keep))); err != nil {
		return fmt.Errorf("load backup %s into %s: %w", m.ID, target.Name(), err)
	}
	return nil
}

// CountRows counts the rows of every base table of the given databases.
func CountRows(ctx context.Context, s Server, databases []string) (map[TableName]TableInfo, error) {
	out := map[TableName]TableInfo{}
	if len(databases) == 0 {
		return out, nil
	}
	quoted := make([]string, len(databases))
	for i, db := range databases {
		quoted[i] = quoteString(db)
	}
	rows, err := s.Query(ctx, "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema IN ("+strings.Join(quoted, ",")+") ORDER BY 1, 2")
	if err != nil {
		return nil, fmt.Errorf("list tables on %s: %w", s.Name(), err)
	}
	names := make([]TableName, len(rows))
	for i, r := range rows {
		names[i] = TableName{Database: r["table_schema"], Table: r["table_name"]}
	}
	// One statement per batch of tables: a round trip per table is slow with thousands. Each
	// count is tagged with its table's index, not its name: names go into the query only as
	// quoted identifiers.
	for start := 0; start < len(names); start += 100 {
		batch := names[start:min(start+100, len(names))]
		parts := make([]string, len(batch))
		for i, n := range batch {
			parts[i] = fmt.Sprintf("SELECT %d AS i, COUNT(*) AS n FROM %s.%s", start+i, quoteName(n.Database), quoteName(n.Table))
		}
		counts, err := s.Query(ctx, strings.Join(parts, " UNION ALL "))
		if err != nil {
			return nil, fmt.Errorf("count rows on %s: %w", s.Name(), err)
		}
		for _, c := range counts {
			i, err := strconv.Atoi(c["i"])
			if err != nil || i < start || i >= start+len(batch) {
				return nil, fmt.Errorf("count rows on %s: %q is not a table of the query", s.Name(), c["i"])
			}
			n, err := strconv.ParseInt(c["n"], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("count rows on %s: %s: %q is not a count", s.Name(), names[i], c["n"])
			}
			out[names[i]] = TableInfo{Rows: n}
		}
	}
	return out, nil
}

// CatchUp waits until replica has applied everything primary has written (its GTID position)
// with both replication threads running, and returns that position.
func CatchUp(ctx context.Context, primary, replica Server, timeout time.Duration) (string, error) {
	rows, err := primary.Query(ctx, "SELECT @@GLOBAL.gtid_binlog_pos AS pos")
	if err != nil || len(rows) != 1 {
		return "", fmt.Errorf("read the GTID position of %s: %w", primary.Name(), orNoRows(err))
	}
	pos := rows[0]["pos"]
	secs := max(1, int(timeout/time.Second))
	rows, err = replica.Query(ctx, fmt.Sprintf("SELECT MASTER_GTID_WAIT(%s, %d) AS waited", quoteString(pos), secs))
	if err != nil || len(rows) != 1 {
		return "", fmt.Errorf("wait for %s to reach %s: %w", replica.Name(), pos, orNoRows(err))
	}
	status, err := replica.Query(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return "", fmt.Errorf("read the replication status of %s: %w", replica.Name(), err)
	}
	if len(status) == 0 {
		return "", fmt.Errorf("%s does not replicate (SHOW SLAVE STATUS is empty): rebuild it from the primary", replica.Name())
	}
	st := status[0]
	if st["Slave_IO_Running"] != "Yes" || st["Slave_SQL_Running"] != "Yes" {
		return "", fmt.Errorf("%s stopped replicating: IO %s, SQL %s: %s; look at SHOW SLAVE STATUS\\G on it, or rebuild it from the primary",
			replica.Name(), st["Slave_IO_Running"], st["Slave_SQL_Running"], cmp.Or(st["Last_SQL_Error"], st["Last_IO_Error"], "no error recorded"))
	}
	if rows[0]["waited"] != "0" {
		return "", fmt.Errorf("%s did not reach %s's GTID position %s within %s (it is at %s)", replica.Name(), primary.Name(), pos, timeout, st["Gtid_IO_Pos"])
	}
	return pos, nil
}

// compareUser compares the manifest's user tables with what a server holds.
func compareUser(m Manifest, got map[TableName]TableInfo) []string {
	return Manifest{Tables: m.UserTables()}.CompareTables(got)
}

// quoteName quotes an identifier for MariaDB: in backticks, a backtick in it doubled.
func quoteName(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// quoteString quotes a string literal for MariaDB.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func orNoRows(err error) error {
	if err == nil {
		return errors.New("no answer")
	}
	return err
}

func cmpOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
