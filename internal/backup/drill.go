package backup

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strconv"
	"strings"
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
	// Replay, when set, makes it a point-in-time drill: the binlog archive's transactions after
	// the backup, up to a point, are replayed on Scratch and checked (see Drill).
	Replay *DrillReplay
}

// DrillReplay is the point-in-time part of a drill: the binlog archive's transactions after the
// backup's GTID position, up to Point. The binlog package makes one (binlog.DrillReplay).
type DrillReplay struct {
	Point time.Time
	// WindowFrom and WindowTo, when set, are the recoverable window Point was drawn from.
	WindowFrom, WindowTo time.Time
	// Expect verifies every segment the replay needs and says what its transactions change; it
	// applies nothing. Drill calls it before it loads the dump.
	Expect func(ctx context.Context) (ArchiveChanges, error)
	// Apply replays the same transactions on the scratch server and says what they change, as
	// read while they were applied.
	Apply func(ctx context.Context) (ArchiveChanges, error)
}

// ArchiveChanges is what the binlog archive says the transactions of a replay change.
type ArchiveChanges struct {
	Transactions        int64
	FirstGTID, LastGTID string // "" without transactions
	FirstTime, LastTime time.Time
	Segments            int
	Bytes               int64  // of the binary log stream
	StreamSHA256        string // of the binary log stream; "" without transactions
	// Tables are the tables the replay's row events change.
	Tables map[TableName]TableChange
	// Unknown are the tables whose rows the archive does not determine, each with why: a DDL
	// statement on it (CREATE, DROP, TRUNCATE, RENAME, ALTER...), a transaction that ended with
	// ROLLBACK, row events that do not decode.
	Unknown map[TableName]string
	// UnknownDatabases: no table of these databases is determined (CREATE or DROP DATABASE).
	UnknownDatabases map[string]string
	// Accounts are the statements the replay runs that change accounts or privileges (CREATE,
	// ALTER, DROP or RENAME USER, GRANT, REVOKE, SET PASSWORD), each with its transaction; the
	// first 20.
	Accounts []string
	// Everything, when set, says why the archive determines no table at all: a statement it
	// cannot attribute to tables (rows changed by a statement logged as text: binlog_format is
	// not ROW), an event it cannot read.
	Everything string
}

// TableChange is what the archive says a replay changes in one table.
type TableChange struct {
	Written, Deleted, Updated int64 // rows
	// Columns are the kinds of its row images' columns when every one can be digested (see
	// RowHash); nil otherwise, and NoDigest says why.
	Columns  []ColumnKind
	NoDigest string
	// Digest is, modulo 2^64, the sum of RowHash over the rows written and the updates' after
	// images, minus the sum over the rows deleted and the updates' before images: what the
	// replay adds to the table's digest.
	Digest uint64
}

// Delta is the change of the table's row count.
func (c TableChange) Delta() int64 { return c.Written - c.Deleted }

// DrillReport is what a restore drill found.
type DrillReport struct {
	Backup  string        `json:"backup"`
	Taken   time.Time     `json:"taken"`
	Tables  int           `json:"tables"`
	Rows    int64         `json:"rows"` // after the replay, in a point-in-time drill
	Took    time.Duration `json:"took_ns"`
	Scratch string        `json:"scratch"`
	// PointInTime is the replay of a point-in-time drill and what it checked.
	PointInTime *DrillPoint `json:"point_in_time,omitempty"`
	Notes       []string    `json:"notes,omitempty"`
}

// DrillPoint is the point-in-time part of a drill's report.
type DrillPoint struct {
	Point      time.Time `json:"point"`
	WindowFrom time.Time `json:"window_from,omitzero"` // Point was drawn at random from this window
	WindowTo   time.Time `json:"window_to,omitzero"`
	From       string    `json:"from_gtid"` // the backup's position: replayed after it
	// What was replayed: the archive's transactions after From committed up to Point.
	Transactions int64     `json:"transactions"`
	FirstGTID    string    `json:"first_gtid,omitempty"`
	LastGTID     string    `json:"last_gtid,omitempty"`
	FirstTime    time.Time `json:"first_time,omitzero"`
	LastTime     time.Time `json:"last_time,omitzero"`
	Segments     int       `json:"segments"`
	Bytes        int64     `json:"bytes"`
	StreamSHA256 string    `json:"stream_sha256,omitempty"`
	// Tables are the tables checked after the replay; Digests how many of them by digest too.
	Tables  []DrillTable `json:"tables"`
	Digests int          `json:"digests"`
	// Unknown are the tables not checked after the replay, and why.
	Unknown []DrillUnknown `json:"unknown,omitempty"`
	// NotChecked, when set, says why no table was checked after the replay.
	NotChecked string `json:"not_checked,omitempty"`
}

// DrillTable is one table checked after a replay.
type DrillTable struct {
	Table    string `json:"table"`
	DumpRows int64  `json:"dump_rows"`
	Written  int64  `json:"written"`
	Deleted  int64  `json:"deleted"`
	Updated  int64  `json:"updated"`
	Rows     int64  `json:"rows"` // = DumpRows + Written - Deleted, as counted on the scratch server
	// Digest is "checked" when the table's digest changed exactly as the archive's row images
	// say; otherwise why it was not checked. Empty for a table the replay does not change.
	Digest string `json:"digest,omitempty"`
}

// DrillUnknown is a table (or "db.*", a whole database) not checked after a replay.
type DrillUnknown struct {
	Table string `json:"table"`
	Why   string `json:"why"`
}

// Drill proves that a backup restores: it refuses a backup whose manifest is not authenticated
// (see Authorize), loads the backup into a scratch server in one read of the object (its size
// and SHA-256 are checked at the end, and a mismatch fails the load) and compares every user
// table's rows with the manifest. A backup nobody has restored is a hope, not a backup.
//
// With Replay it goes on to a point in time: the archive's segments are verified before the
// dump is loaded; after the load and its check, the digest of every table the replay changes is
// taken (see RowHash), the transactions are replayed, and every table is compared with what the
// archive says was committed by then: the manifest's rows plus the rows the transactions wrote
// minus those they deleted, and, where the row images allow, the digest before the replay plus
// the row images' digests. Tables whose rows the archive does not determine (DDL on them in the
// replay, a foreign key's cascade from a changed table, ...) are not compared, and the report
// lists them with why.
func Drill(ctx context.Context, o DrillOptions) (DrillReport, error) {
	start := time.Now()
	m := o.Backup
	rep := DrillReport{Backup: m.ID, Taken: m.Started, Scratch: o.Scratch.Name()}
	what := "restore drill of " + m.ID
	if o.Replay != nil {
		what += " to " + o.Replay.Point.UTC().Format(time.DateTime) + " UTC"
	}
	if err := Authorize(m.ID, o.Auth, o.AllowUnsigned); err != nil {
		return rep, fmt.Errorf("%s: %w", what, err)
	}
	if err := m.Restorable(); err != nil {
		return rep, err
	}
	progress := o.Progress
	if progress == nil {
		progress = func(RestoreProgress) {}
	}
	var expect ArchiveChanges
	if o.Replay != nil {
		progress(RestoreProgress{Step: "archive"})
		var err error
		if expect, err = o.Replay.Expect(ctx); err != nil {
			return rep, fmt.Errorf("%s: %w", what, err)
		}
	}
	progress(RestoreProgress{Step: "load", Total: m.StoredBytes})
	bytes := func(n int64) { progress(RestoreProgress{Step: "load", Read: n, Total: m.StoredBytes}) }
	sql, err := openUnverified(ctx, m, o.Reader, o.Identities, bytes)
	if err == nil {
		err = load(ctx, m, sql, o.Scratch)
		if err != nil && !errors.Is(err, ErrCorrupt) && ctx.Err() == nil {
			// The dump is loaded as it is decoded, so a corrupt one can make the scratch
			// server's client fail first, on the garbage before the checksum that proves it
			// (its error, or the broken input pipe's, would hide the corruption): the
			// backup is read through once more to tell.
			if _, verr := Verify(ctx, m, o.Reader, o.Identities, nil); errors.Is(verr, ErrCorrupt) {
				err = fmt.Errorf("%w (the load failed first: %v)", verr, err)
			}
		}
	}
	if err != nil {
		return rep, fmt.Errorf("%s: %w", what, err)
	}
	progress(RestoreProgress{Step: "check"})
	got, err := CountRows(ctx, o.Scratch, m.Databases())
	if err != nil {
		return rep, fmt.Errorf("%s: %w", what, err)
	}
	if diffs := compareUser(m, got); len(diffs) > 0 {
		return rep, fmt.Errorf("%s: the restored database differs from the manifest: %s", what, joinMax(diffs, 5))
	}
	if o.Replay != nil {
		var err error
		rep.PointInTime, got, err = drillReplay(ctx, o, expect, progress)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", what, err)
		}
	}
	rep.Tables = len(got)
	for _, t := range got {
		rep.Rows += t.Rows
	}
	rep.Took = time.Since(start)
	return rep, nil
}

// drillReplay replays the archive on the loaded scratch server and compares every table with
// what the archive says; it returns the report's part and the tables' rows after the replay.
func drillReplay(ctx context.Context, o DrillOptions, expect ArchiveChanges, progress func(RestoreProgress)) (*DrillPoint, map[TableName]TableInfo, error) {
	m, s, r := o.Backup, o.Scratch, o.Replay
	p := &DrillPoint{Point: r.Point, WindowFrom: r.WindowFrom, WindowTo: r.WindowTo, From: m.GTID}
	p.describe(expect)

	// The digests before the replay of the tables it changes, where the archive's row images
	// and the server's columns are of kinds both render alike.
	var wanted []TableName
	for name, c := range expect.Tables {
		if c.Columns != nil && expect.unknown(name) == "" {
			wanted = append(wanted, name)
		}
	}
	server, err := serverColumns(ctx, s, wanted)
	if err != nil {
		return p, nil, err
	}
	cols := map[TableName][]serverColumn{}
	noDigest := map[TableName]string{}
	for _, name := range wanted {
		if why := columnsMatch(expect.Tables[name].Columns, server[name]); why != "" {
			noDigest[name] = why
		} else {
			cols[name] = server[name]
		}
	}
	before, err := tableDigests(ctx, s, cols)
	if err != nil {
		return p, nil, err
	}

	progress(RestoreProgress{Step: "replay"})
	applied, err := r.Apply(ctx)
	if err != nil {
		return p, nil, fmt.Errorf("replay the binlog archive on %s: %w", s.Name(), err)
	}
	if applied.StreamSHA256 != expect.StreamSHA256 || applied.Transactions != expect.Transactions {
		return p, nil, fmt.Errorf("the replay applied %d transactions (stream SHA-256 %s), but %d (SHA-256 %s) were verified before it: the archive changed in between",
			applied.Transactions, orNone(applied.StreamSHA256), expect.Transactions, orNone(expect.StreamSHA256))
	}
	p.describe(applied)

	progress(RestoreProgress{Step: "check"})
	databases := m.Databases()
	for name := range applied.Tables {
		if name.Database != "" && !systemDatabases[name.Database] && !slices.Contains(databases, name.Database) {
			databases = append(databases, name.Database)
		}
	}
	slices.Sort(databases)
	after, err := CountRows(ctx, s, databases)
	if err != nil {
		return p, nil, err
	}
	if applied.Everything != "" {
		p.NotChecked = applied.Everything
		return p, after, nil
	}
	cascades, err := cascaded(ctx, s, applied)
	if err != nil {
		return p, nil, err
	}
	unknown := func(name TableName) string {
		if why := applied.unknown(name); why != "" {
			return why
		}
		return cascades[name]
	}
	for name := range before {
		if unknown(name) != "" {
			delete(before, name)
			delete(cols, name)
		}
	}
	afterDigests, err := tableDigests(ctx, s, cols)
	if err != nil {
		return p, nil, err
	}

	names := map[TableName]bool{}
	for name := range m.UserTables() {
		names[name] = true
	}
	for name := range after {
		names[name] = true
	}
	for name := range applied.Tables {
		if name.Database != "" && !systemDatabases[name.Database] {
			names[name] = true
		}
	}
	for _, db := range slices.Sorted(maps.Keys(applied.UnknownDatabases)) {
		p.Unknown = append(p.Unknown, DrillUnknown{Table: quoteName(db) + ".*", Why: applied.UnknownDatabases[db]})
	}
	var diffs []string
	for _, name := range slices.SortedFunc(maps.Keys(names), TableName.Compare) {
		if _, whole := applied.UnknownDatabases[name.Database]; whole {
			continue
		}
		if why := unknown(name); why != "" {
			p.Unknown = append(p.Unknown, DrillUnknown{Table: name.String(), Why: why})
			continue
		}
		dump, inDump := m.Tables[name]
		now, exists := after[name]
		c := applied.Tables[name]
		switch {
		case !exists && !inDump:
			p.Unknown = append(p.Unknown, DrillUnknown{Table: name.String(), Why: "the archive changes its rows, but it is not a base table of the dump (a sequence?)"})
			continue
		case !exists:
			diffs = append(diffs, fmt.Sprintf("%s: missing after the replay (the dump has %d rows)", name, dump.Rows))
			continue
		case !inDump:
			diffs = append(diffs, fmt.Sprintf("%s: not in the backup, and no DDL of the replay creates it (restored %d rows)", name, now.Rows))
			continue
		}
		t := DrillTable{Table: name.String(), DumpRows: dump.Rows, Written: c.Written, Deleted: c.Deleted, Updated: c.Updated, Rows: now.Rows}
		if want := dump.Rows + c.Delta(); now.Rows != want {
			diffs = append(diffs, fmt.Sprintf("%s: rows: the dump has %d, the archive writes %d and deletes %d: want %d, restored %d",
				name, dump.Rows, c.Written, c.Deleted, want, now.Rows))
		}
		if _, changed := applied.Tables[name]; changed {
			t.Digest = digestCheck(name, c, before, afterDigests, noDigest, &diffs)
			if t.Digest == "checked" {
				p.Digests++
			}
		}
		p.Tables = append(p.Tables, t)
	}
	if len(diffs) > 0 {
		return p, after, fmt.Errorf("the restored database differs from what the binlog archive says was committed by %s: %s",
			r.Point.UTC().Format(time.DateTime)+" UTC", joinMax(diffs, 5))
	}
	return p, after, nil
}

// digestCheck compares a changed table's digests before and after the replay with the archive's,
// adding a difference to diffs; it says "checked" or why the digest was not checked.
func digestCheck(name TableName, c TableChange, before, after map[TableName]uint64, noDigest map[TableName]string, diffs *[]string) string {
	if c.Columns == nil {
		return "not checked: " + c.NoDigest
	}
	if why := noDigest[name]; why != "" {
		return "not checked: " + why
	}
	d0, ok0 := before[name]
	d1, ok1 := after[name]
	if !ok0 || !ok1 {
		return "not checked: no digest of it on the scratch server"
	}
	if d1-d0 != c.Digest {
		*diffs = append(*diffs, fmt.Sprintf("%s: digest: the replay changed it by %016x, the archive's row images by %016x: its rows differ from what was committed", name, d1-d0, c.Digest))
	}
	return "checked"
}

func (p *DrillPoint) describe(c ArchiveChanges) {
	p.Transactions, p.FirstGTID, p.LastGTID, p.FirstTime, p.LastTime = c.Transactions, c.FirstGTID, c.LastGTID, c.FirstTime, c.LastTime
	p.Segments, p.Bytes, p.StreamSHA256 = c.Segments, c.Bytes, c.StreamSHA256
}

// unknown says why the archive does not determine a table's rows, or "".
func (c ArchiveChanges) unknown(name TableName) string {
	if c.Everything != "" {
		return c.Everything
	}
	if why := c.Unknown[name]; why != "" {
		return why
	}
	return c.UnknownDatabases[name.Database]
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// A row digest lets a drill check a table's content after a replay against the archive without
// the dump's rows. A table's digest is the sum, modulo 2^64, of RowHash over its rows, so it is
// additive: after a replay it is the digest before, plus the hashes of the rows written and of
// the updates' after images, minus those of the rows deleted and of the updates' before images.
// The archive holds full row images (binlog_row_image=FULL, MariaDB's default), so it says what
// that difference must be (the binlog package sums it as it reads the replay); the scratch
// server computes both digests in SQL from the same rendering of a row: an integer column as the
// upper-case hex of its value's low 8, 16, 24, 32 or 64 bits (HEX(col & mask), whether signed or
// not), a string or blob column as the MD5 of its bytes (MD5(col)), NULL as "N", joined by
// commas; RowHash is the first 60 bits of the MD5 of that text (LEFT(MD5(...), 15)). Values of
// other types are rendered differently by the binary log and the server (dates, decimals,
// floats, ENUM, BINARY(n), whose trailing zero bytes the binary log leaves out), so a table with
// one is checked by its rows only.

// ColumnKind is how a column's values enter a row digest.
type ColumnKind string

// The kinds of column a row digest takes.
const (
	ColumnInt8  ColumnKind = "int8" // TINYINT
	ColumnInt16 ColumnKind = "int16"
	ColumnInt24 ColumnKind = "int24" // MEDIUMINT
	ColumnInt32 ColumnKind = "int32"
	ColumnInt64 ColumnKind = "int64"
	ColumnBytes ColumnKind = "bytes" // CHAR, VARCHAR, VARBINARY, TEXT, BLOB (and JSON, a LONGTEXT)
)

func (k ColumnKind) mask() uint64 {
	switch k {
	case ColumnInt8:
		return 1<<8 - 1
	case ColumnInt16:
		return 1<<16 - 1
	case ColumnInt24:
		return 1<<24 - 1
	case ColumnInt32:
		return 1<<32 - 1
	}
	return 1<<64 - 1
}

// RowHash is a row's hash in a table digest (see above): row holds the values of a row image as
// go-mysql decodes them (an integer type, string or []byte, nil for NULL), kinds their columns'.
func RowHash(kinds []ColumnKind, row []any) (uint64, error) {
	if len(row) != len(kinds) {
		return 0, fmt.Errorf("a row of %d values for %d columns", len(row), len(kinds))
	}
	b := make([]byte, 0, 16*len(kinds))
	for i, k := range kinds {
		if i > 0 {
			b = append(b, ',')
		}
		v := row[i]
		if v == nil {
			b = append(b, 'N')
			continue
		}
		if k == ColumnBytes {
			var sum [md5.Size]byte
			switch x := v.(type) {
			case string:
				sum = md5.Sum([]byte(x))
			case []byte:
				sum = md5.Sum(x)
			default:
				return 0, fmt.Errorf("column %d: a %T value in a string column", i+1, v)
			}
			b = hex.AppendEncode(b, sum[:])
			continue
		}
		u, ok := integerBits(v)
		if !ok {
			return 0, fmt.Errorf("column %d: a %T value in an integer column", i+1, v)
		}
		b = append(b, strings.ToUpper(strconv.FormatUint(u&k.mask(), 16))...)
	}
	sum := md5.Sum(b)
	return binary.BigEndian.Uint64(sum[:8]) >> 4, nil
}

// integerBits is an integer's two's complement bits.
func integerBits(v any) (uint64, bool) {
	switch x := v.(type) {
	case int8:
		return uint64(x), true
	case int16:
		return uint64(x), true
	case int32:
		return uint64(x), true
	case int64:
		return uint64(x), true
	case int:
		return uint64(x), true
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case uint:
		return uint64(x), true
	}
	return 0, false
}

// serverColumn is a column as the server describes it; Kind is "" for one a digest cannot take
// (with Type saying what it is).
type serverColumn struct {
	Name, Type string
	Kind       ColumnKind
}

// serverKind is the digest kind of a column of information_schema.COLUMNS' DATA_TYPE.
func serverKind(dataType, generated string) ColumnKind {
	if generated != "" && generated != "NEVER" {
		return "" // whether the binary log has its values depends on the column
	}
	switch strings.ToLower(dataType) {
	case "tinyint":
		return ColumnInt8
	case "smallint":
		return ColumnInt16
	case "mediumint":
		return ColumnInt24
	case "int":
		return ColumnInt32
	case "bigint":
		return ColumnInt64
	case "char", "varchar", "varbinary", "tinytext", "text", "mediumtext", "longtext", "tinyblob", "blob", "mediumblob", "longblob":
		return ColumnBytes
	}
	return ""
}

// columnsMatch says why a table's digest cannot be checked with the server's columns, or "".
func columnsMatch(archive []ColumnKind, server []serverColumn) string {
	if len(server) == 0 {
		return "the scratch server has no such table before the replay"
	}
	if len(server) != len(archive) {
		return fmt.Sprintf("its row images have %d columns, the table %d", len(archive), len(server))
	}
	for i, c := range server {
		switch {
		case c.Kind == "":
			return fmt.Sprintf("column %s is %s (or generated), whose values the binary log and the server render differently", c.Name, c.Type)
		case c.Kind != archive[i]:
			return fmt.Sprintf("column %s is %s, its row images have %s there", c.Name, c.Type, archive[i])
		}
	}
	return ""
}

// serverColumns reads the columns of tables, in order, from the server.
func serverColumns(ctx context.Context, s Server, tables []TableName) (map[TableName][]serverColumn, error) {
	out := map[TableName][]serverColumn{}
	slices.SortFunc(tables, TableName.Compare)
	for start := 0; start < len(tables); start += 100 {
		batch := tables[start:min(start+100, len(tables))]
		pairs := make([]string, len(batch))
		for i, n := range batch {
			pairs[i] = "(" + quoteString(n.Database) + "," + quoteString(n.Table) + ")"
		}
		rows, err := s.Query(ctx, "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS t, ORDINAL_POSITION AS pos, COLUMN_NAME AS c, DATA_TYPE AS type, IS_GENERATED AS gen "+
			"FROM information_schema.COLUMNS WHERE (TABLE_SCHEMA, TABLE_NAME) IN ("+strings.Join(pairs, ",")+") ORDER BY 1, 2, 3")
		if err != nil {
			return nil, fmt.Errorf("list columns on %s: %w", s.Name(), err)
		}
		positions := map[TableName][]int{}
		for _, r := range rows {
			name := TableName{Database: r["db"], Table: r["t"]}
			pos, err := strconv.Atoi(r["pos"])
			if err != nil {
				return nil, fmt.Errorf("list columns on %s: position %q of %s", s.Name(), r["pos"], name)
			}
			out[name] = append(out[name], serverColumn{Name: r["c"], Type: r["type"], Kind: serverKind(r["type"], r["gen"])})
			positions[name] = append(positions[name], pos)
		}
		for name, ps := range positions {
			if !slices.IsSorted(ps) {
				return nil, fmt.Errorf("list columns on %s: the columns of %s are not in order", s.Name(), name)
			}
		}
	}
	return out, nil
}

// digestSQL is the SQL of RowHash over a row of columns cols.
func digestSQL(cols []serverColumn) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		if c.Kind == ColumnBytes {
			parts[i] = "IFNULL(MD5(" + quoteName(c.Name) + "),'N')"
		} else {
			parts[i] = fmt.Sprintf("IFNULL(HEX(%s & %d),'N')", quoteName(c.Name), c.Kind.mask())
		}
	}
	return "CAST(CONV(LEFT(MD5(CONCAT_WS(','," + strings.Join(parts, ",") + ")),15),16,10) AS UNSIGNED)"
}

// tableDigests computes the digest of each table of cols on the server, from its columns.
func tableDigests(ctx context.Context, s Server, cols map[TableName][]serverColumn) (map[TableName]uint64, error) {
	out := map[TableName]uint64{}
	names := slices.SortedFunc(maps.Keys(cols), TableName.Compare)
	mod := new(big.Int).Lsh(big.NewInt(1), 64)
	for start := 0; start < len(names); start += 20 {
		batch := names[start:min(start+20, len(names))]
		parts := make([]string, len(batch))
		for i, n := range batch {
			parts[i] = fmt.Sprintf("SELECT %d AS i, COUNT(*) AS n, COALESCE(SUM(%s),0) AS d FROM %s.%s", start+i, digestSQL(cols[n]), quoteName(n.Database), quoteName(n.Table))
		}
		rows, err := s.Query(ctx, strings.Join(parts, " UNION ALL "))
		if err != nil {
			return nil, fmt.Errorf("digest tables on %s: %w", s.Name(), err)
		}
		if len(rows) != len(batch) {
			return nil, fmt.Errorf("digest tables on %s: %d answers for %d tables", s.Name(), len(rows), len(batch))
		}
		for _, r := range rows {
			i, err := strconv.Atoi(r["i"])
			if err != nil || i < start || i >= start+len(batch) {
				return nil, fmt.Errorf("digest tables on %s: an answer for table %q", s.Name(), r["i"])
			}
			d, ok := new(big.Int).SetString(r["d"], 10)
			if !ok || d.Sign() < 0 {
				return nil, fmt.Errorf("digest of %s on %s: %q is not a digest", names[i], s.Name(), r["d"])
			}
			out[names[i]] = d.Mod(d, mod).Uint64()
		}
	}
	return out, nil
}

// foreignKey is a foreign key whose ON DELETE or ON UPDATE action changes the child table.
type foreignKey struct {
	child, parent          TableName
	onDelete, onUpdate     string
	deleteActs, updateActs bool
}

// cascaded returns the tables whose rows a foreign key's action may change during the replay:
// a child of a table the replay deletes rows of (ON DELETE CASCADE, SET NULL, SET DEFAULT) or
// updates (ON UPDATE ...), and so on down. The server does these itself, and the binary log
// does not record them: the archive does not say what they did.
func cascaded(ctx context.Context, s Server, c ArchiveChanges) (map[TableName]string, error) {
	out := map[TableName]string{}
	if len(c.Tables) == 0 {
		return out, nil
	}
	rows, err := s.Query(ctx, "SELECT CONSTRAINT_SCHEMA AS db, TABLE_NAME AS t, UNIQUE_CONSTRAINT_SCHEMA AS pdb, REFERENCED_TABLE_NAME AS pt, "+
		"DELETE_RULE AS del, UPDATE_RULE AS upd FROM information_schema.REFERENTIAL_CONSTRAINTS")
	if err != nil {
		return nil, fmt.Errorf("list foreign keys on %s: %w", s.Name(), err)
	}
	acts := func(rule string) bool { return rule != "" && rule != "RESTRICT" && rule != "NO ACTION" }
	var fks []foreignKey
	for _, r := range rows {
		fk := foreignKey{child: TableName{Database: r["db"], Table: r["t"]}, parent: TableName{Database: r["pdb"], Table: r["pt"]},
			onDelete: r["del"], onUpdate: r["upd"], deleteActs: acts(r["del"]), updateActs: acts(r["upd"])}
		if fk.deleteActs || fk.updateActs {
			fks = append(fks, fk)
		}
	}
	for grew := true; grew; {
		grew = false
		for _, fk := range fks {
			if out[fk.child] != "" {
				continue
			}
			pc := c.Tables[fk.parent]
			unsure := out[fk.parent] != "" || c.unknown(fk.parent) != ""
			var why string
			switch {
			case fk.deleteActs && (pc.Deleted > 0 || unsure):
				why = "ON DELETE " + fk.onDelete
			case fk.updateActs && (pc.Updated > 0 || unsure):
				why = "ON UPDATE " + fk.onUpdate
			default:
				continue
			}
			out[fk.child] = fmt.Sprintf("a foreign key's %s from %s may change its rows, which the binary log does not record", why, fk.parent)
			grew = true
		}
	}
	return out, nil
}
