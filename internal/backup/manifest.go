package backup

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ManifestVersion is the manifest format this package writes. It also reads version 1, whose
// tables are keyed "db.table" (see decodeV1).
const ManifestVersion = 2

// manifestV1 is the first format: tables keyed "db.table", which is ambiguous when a name holds
// a dot ("shop.archive.t" is table archive.t of shop or table t of shop.archive).
const manifestV1 = 1

// Roles of the server a dump was taken from.
const (
	RolePrimary = "primary"
	RoleReplica = "replica"
)

// Keys of Manifest.Tools that every manifest carries; others (the zstd library, ...) are free.
const (
	ToolMariaDBDump = "mariadb-dump"
	ToolAgent       = "agent"
)

// Manifest describes one backup. It is written after the dump object is complete: a backup
// without a valid manifest does not exist.
type Manifest struct {
	Version     int               `json:"version"` // ManifestVersion; manifestV1 when read from one
	ID          string            `json:"id"`      // NewID(Started)
	Started     time.Time         `json:"started"`
	Finished    time.Time         `json:"finished"`
	Source      Source            `json:"source"`
	GTID        string            `json:"gtid"`         // GTID position of the dump's snapshot; empty if the server has none yet
	DumpKey     string            `json:"dump_key"`     // DumpKey(ID, Encrypted)
	Encrypted   bool              `json:"encrypted"`    // the dump object is age-encrypted
	RawBytes    int64             `json:"raw_bytes"`    // uncompressed dump size
	StoredBytes int64             `json:"stored_bytes"` // size of the dump object
	SHA256      string            `json:"sha256"`       // of the dump object, lower-case hex
	Tools       map[string]string `json:"tools"`        // tool -> version; ToolMariaDBDump and ToolAgent required
	StackCommit string            `json:"stack_commit,omitempty"`
	Note        string            `json:"note,omitempty"` // why it was taken, when not on schedule
	// Tables are the dump's tables with their rows and checksums in the dump's snapshot. In JSON
	// (version 2) a list of {database, table, rows, checksum}, sorted: see wire.
	Tables map[TableName]TableInfo `json:"-"`
	// AmbiguousTables are the keys of a version 1 manifest's tables that hold more than one dot,
	// and so do not say where the database's name ends: such a backup is listed, kept and pruned
	// like any other, but never restored (see Restorable).
	AmbiguousTables []string `json:"-"`
}

// TableName is a table of a database. Names are kept apart everywhere: a database's name may
// contain a dot.
type TableName struct {
	Database, Table string
}

// String is "db.table" when neither name needs quoting, else both quoted with backticks.
func (n TableName) String() string {
	if plainName(n.Database) && plainName(n.Table) {
		return n.Database + "." + n.Table
	}
	return quoteName(n.Database) + "." + quoteName(n.Table)
}

func plainName(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r == '.' || r == '`' || r <= ' ' || r == 0x7f })
}

// Compare orders table names by database, then table (for slices.SortFunc).
func (n TableName) Compare(o TableName) int {
	return cmp.Or(strings.Compare(n.Database, o.Database), strings.Compare(n.Table, o.Table))
}

// Source is the server a dump was taken from.
type Source struct {
	Container     string `json:"container"`
	Role          string `json:"role"` // RolePrimary or RoleReplica
	ServerVersion string `json:"server_version"`
}

// TableInfo is what a restore drill compares for one table.
type TableInfo struct {
	Rows     int64  `json:"rows"`
	Checksum string `json:"checksum,omitempty"`
}

// ErrInvalidManifest is matched (errors.Is) by every error Validate and DecodeManifest return.
var ErrInvalidManifest = errors.New("invalid manifest")

// ManifestError is one problem with a manifest. Field is the JSON name of the field concerned
// ("source.role", "tables[app.t].rows"); it is empty when the problem is the document itself.
type ManifestError struct {
	ID      string
	Field   string
	Problem string
}

func (e *ManifestError) Error() string {
	var b strings.Builder
	b.WriteString("manifest")
	if e.ID != "" {
		b.WriteString(" ")
		if _, err := ParseID(e.ID); err == nil {
			b.WriteString(e.ID)
		} else {
			b.WriteString(strconv.Quote(e.ID))
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalidManifest) true.
func (e *ManifestError) Unwrap() error { return ErrInvalidManifest }

var (
	sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)
	gtidList  = regexp.MustCompile(`^[0-9]+-[0-9]+-[0-9]+(,[0-9]+-[0-9]+-[0-9]+)*$`)
)

// Validate checks every field. It returns nil or every problem found, each a *ManifestError
// (errors.As finds the first; errors.Join joins them).
func (m Manifest) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ManifestError{ID: m.ID, Field: field, Problem: fmt.Sprintf(format, args...)})
	}

	if m.Version != ManifestVersion && m.Version != manifestV1 {
		bad("version", "%s", versionProblem(m.Version))
	}
	if m.ID == "" {
		bad("id", "missing")
	} else if _, err := ParseID(m.ID); err != nil {
		bad("id", "not a UTC time of the form %s", IDLayout)
	} else if !m.Started.IsZero() && NewID(m.Started) != m.ID {
		bad("id", "does not match started (%s): the id is the start time in UTC",
			m.Started.UTC().Format(time.RFC3339))
	}
	if m.Started.IsZero() {
		bad("started", "missing")
	}
	if m.Finished.IsZero() {
		bad("finished", "missing")
	} else if m.Finished.Before(m.Started) {
		bad("finished", "before started")
	}

	if m.Source.Container == "" {
		bad("source.container", "missing")
	}
	if m.Source.Role != RolePrimary && m.Source.Role != RoleReplica {
		bad("source.role", "%q is neither %q nor %q", m.Source.Role, RolePrimary, RoleReplica)
	}
	if m.Source.ServerVersion == "" {
		bad("source.server_version", "missing")
	}
	if m.GTID != "" && !gtidList.MatchString(m.GTID) {
		bad("gtid", "%q is not a MariaDB GTID list (domain-server-sequence, comma-separated)", m.GTID)
	}

	if m.ID != "" {
		if want := DumpKey(m.ID, m.Encrypted); m.DumpKey != want {
			bad("dump_key", "%q, want %q for id %s and encrypted=%t", m.DumpKey, want, m.ID, m.Encrypted)
		}
	}
	if m.RawBytes <= 0 {
		bad("raw_bytes", "must be positive (got %d)", m.RawBytes)
	}
	if m.StoredBytes <= 0 {
		bad("stored_bytes", "must be positive (got %d)", m.StoredBytes)
	}
	if !sha256Hex.MatchString(m.SHA256) {
		bad("sha256", "not 64 lower-case hex digits")
	}

	if m.Tables == nil {
		bad("tables", "missing (an empty list when the dump holds no tables)")
	}
	for _, name := range slices.SortedFunc(maps.Keys(m.Tables), TableName.Compare) {
		if name.Database == "" || name.Table == "" {
			bad(fmt.Sprintf("tables[%s]", name), "the database and the table must both be named")
		}
		if rows := m.Tables[name].Rows; rows < 0 {
			bad(fmt.Sprintf("tables[%s].rows", name), "negative (%d)", rows)
		}
	}
	if len(m.AmbiguousTables) > 0 && m.Version != manifestV1 {
		bad("tables", "ambiguous names only come from version 1 manifests")
	}

	for _, tool := range slices.Sorted(maps.Keys(m.Tools)) {
		if tool == "" {
			bad("tools", "a version without a tool name")
		} else if m.Tools[tool] == "" {
			bad(fmt.Sprintf("tools[%q]", tool), "empty version")
		}
	}
	for _, tool := range []string{ToolMariaDBDump, ToolAgent} {
		if _, ok := m.Tools[tool]; !ok {
			bad(fmt.Sprintf("tools[%q]", tool), "missing")
		}
	}
	return errors.Join(errs...)
}

func versionProblem(v int) string {
	if v == 0 {
		return "missing"
	}
	return fmt.Sprintf("unsupported version %d: this agent reads versions %d and %d; use an agent that knows version %d",
		v, manifestV1, ManifestVersion, v)
}

// ErrAmbiguous is matched (errors.Is) by the error Restorable returns for a version 1 manifest
// whose table names do not say where a database's name ends.
var ErrAmbiguous = errors.New("ambiguous table names")

// Restorable reports why a valid manifest cannot be restored by this agent: a version 1 manifest
// with a dot too many in a table's key could make a restore drop the wrong database ("shop" for
// "shop.archive"). The agent does not guess.
func (m Manifest) Restorable() error {
	if err := m.Validate(); err != nil {
		return err
	}
	if len(m.AmbiguousTables) == 0 {
		return nil
	}
	return fmt.Errorf("backup %s: %w: its manifest is version 1, which names tables \"db.table\", and %s could be "+
		"a table with a dot of one database or a table of a database with a dot: this agent does not guess; "+
		"restore it by hand (zstd -dc the dump into mariadb --sandbox), or restore a newer backup (version 2 keeps the names apart)",
		m.ID, ErrAmbiguous, joinMax(quoteAll(m.AmbiguousTables), 3))
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// TableEntry is one table in a version 2 manifest's JSON.
type TableEntry struct {
	Database string `json:"database"`
	Table    string `json:"table"`
	Rows     int64  `json:"rows"`
	Checksum string `json:"checksum,omitempty"`
}

// wire is a manifest as JSON, its tables of type T: []TableEntry in version 2 (a sorted list that
// keeps the database's and the table's name apart), map[string]TableInfo keyed "db.table" in
// version 1. (Not Manifest itself: its tables are a map keyed by TableName.)
type wire[T any] struct {
	Version     int               `json:"version"`
	ID          string            `json:"id"`
	Started     time.Time         `json:"started"`
	Finished    time.Time         `json:"finished"`
	Source      Source            `json:"source"`
	GTID        string            `json:"gtid"`
	DumpKey     string            `json:"dump_key"`
	Encrypted   bool              `json:"encrypted"`
	RawBytes    int64             `json:"raw_bytes"`
	StoredBytes int64             `json:"stored_bytes"`
	SHA256      string            `json:"sha256"`
	Tables      T                 `json:"tables"`
	Tools       map[string]string `json:"tools"`
	StackCommit string            `json:"stack_commit,omitempty"`
	Note        string            `json:"note,omitempty"`
}

func (m Manifest) wire() wire[[]TableEntry] {
	w := wire[[]TableEntry]{Version: m.Version, ID: m.ID, Started: m.Started, Finished: m.Finished, Source: m.Source, GTID: m.GTID,
		DumpKey: m.DumpKey, Encrypted: m.Encrypted, RawBytes: m.RawBytes, StoredBytes: m.StoredBytes, SHA256: m.SHA256,
		Tools: m.Tools, StackCommit: m.StackCommit, Note: m.Note}
	if m.Tables != nil {
		w.Tables = make([]TableEntry, 0, len(m.Tables))
	}
	for _, name := range slices.SortedFunc(maps.Keys(m.Tables), TableName.Compare) {
		t := m.Tables[name]
		w.Tables = append(w.Tables, TableEntry{Database: name.Database, Table: name.Table, Rows: t.Rows, Checksum: t.Checksum})
	}
	return w
}

// fromWire is a manifest with w's fields but its tables.
func fromWire[T any](w wire[T]) Manifest {
	return Manifest{Version: w.Version, ID: w.ID, Started: w.Started, Finished: w.Finished, Source: w.Source, GTID: w.GTID,
		DumpKey: w.DumpKey, Encrypted: w.Encrypted, RawBytes: w.RawBytes, StoredBytes: w.StoredBytes, SHA256: w.SHA256,
		Tools: w.Tools, StackCommit: w.StackCommit, Note: w.Note}
}

// MarshalJSON writes the version 2 form (whatever version m was read from), unvalidated: the
// JSON of `agent backup --json` and `agent backups --json`.
func (m Manifest) MarshalJSON() ([]byte, error) { return json.Marshal(m.wire()) }

// UnmarshalJSON reads version 1 or 2 strictly (as DecodeManifest does) but does not validate.
func (m *Manifest) UnmarshalJSON(b []byte) error {
	got, err := decodeWire(b)
	if err != nil {
		return err
	}
	*m = got
	return nil
}

// EncodeManifest validates m and returns it as indented JSON of the current version, times in
// UTC, ending in a newline. These bytes are what a manifest's signature covers (see
// ManifestKeys): they are stored as they are and never re-encoded to be checked.
func EncodeManifest(m Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if m.Version != ManifestVersion {
		return nil, &ManifestError{ID: m.ID, Field: "version", Problem: fmt.Sprintf("%d: only version %d is written", m.Version, ManifestVersion)}
	}
	m.Started = m.Started.UTC()
	m.Finished = m.Finished.UTC()
	b, err := json.MarshalIndent(m.wire(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest %s: %w", m.ID, err)
	}
	return append(b, '\n'), nil
}

// DecodeManifest parses and validates a manifest of version 1 or 2 into the same form. Unknown
// fields, trailing data and manifests of another format version are refused. Every error
// matches ErrInvalidManifest. A version 1 manifest with ambiguous names decodes (AmbiguousTables)
// but is not Restorable.
func DecodeManifest(b []byte) (Manifest, error) {
	m, err := decodeWire(b)
	if err != nil {
		return Manifest{}, err
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// decodeWire reads a manifest of either version strictly, without validating its fields.
func decodeWire(b []byte) (Manifest, error) {
	// Read the version first, leniently, so that a newer format is reported as such and not
	// as the unknown fields it brings.
	var head struct {
		Version int    `json:"version"`
		ID      string `json:"id"`
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&head); err != nil {
		return Manifest{}, &ManifestError{Problem: "not a JSON object: " + jsonProblem(err)}
	}
	switch head.Version {
	case ManifestVersion:
		var w wire[[]TableEntry]
		if err := decodeStrict(b, head.ID, &w); err != nil {
			return Manifest{}, err
		}
		return fromV2(w)
	case manifestV1:
		var w wire[map[string]TableInfo]
		if err := decodeStrict(b, head.ID, &w); err != nil {
			return Manifest{}, err
		}
		return fromV1(w), nil
	}
	return Manifest{}, &ManifestError{ID: head.ID, Field: "version", Problem: versionProblem(head.Version)}
}

func decodeStrict(b []byte, id string, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &ManifestError{ID: id, Problem: jsonProblem(err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &ManifestError{ID: id, Problem: "trailing data after the JSON object"}
	}
	return nil
}

func fromV2(w wire[[]TableEntry]) (Manifest, error) {
	m := fromWire(w)
	if w.Tables != nil {
		m.Tables = make(map[TableName]TableInfo, len(w.Tables))
	}
	for i, t := range w.Tables {
		name := TableName{Database: t.Database, Table: t.Table}
		if _, dup := m.Tables[name]; dup {
			return Manifest{}, &ManifestError{ID: m.ID, Field: fmt.Sprintf("tables[%d]", i), Problem: fmt.Sprintf("%s is listed twice", name)}
		}
		m.Tables[name] = TableInfo{Rows: t.Rows, Checksum: t.Checksum}
	}
	return m, nil
}

// fromV1 splits version 1's "db.table" keys at their only dot. A key with more than one dot is
// ambiguous: it goes to AmbiguousTables, not to Tables, and the manifest is not restorable. A
// key without a dot, or with an empty part, becomes a TableName that Validate refuses.
func fromV1(w wire[map[string]TableInfo]) Manifest {
	m := fromWire(w)
	if w.Tables != nil {
		m.Tables = make(map[TableName]TableInfo, len(w.Tables))
	}
	for _, key := range slices.Sorted(maps.Keys(w.Tables)) {
		if strings.Count(key, ".") > 1 {
			m.AmbiguousTables = append(m.AmbiguousTables, key)
			continue
		}
		db, table, _ := strings.Cut(key, ".")
		m.Tables[TableName{Database: db, Table: table}] = w.Tables[key]
	}
	return m
}

// jsonProblem words a decoding error for a person, without the package's "json: " prefix.
func jsonProblem(err error) string {
	if errors.Is(err, io.EOF) {
		return "empty"
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		want := "a " + typeErr.Type.Kind().String()
		switch typeErr.Type.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			want = "an integer"
		case reflect.Float32, reflect.Float64:
			want = "a number"
		case reflect.Bool:
			want = "true or false"
		case reflect.Struct, reflect.Map:
			want = "an object"
		case reflect.Slice, reflect.Array:
			want = "an array"
		}
		if typeErr.Field == "" {
			return fmt.Sprintf("a JSON %s, want %s", typeErr.Value, want)
		}
		return fmt.Sprintf("%s: a JSON %s, want %s", typeErr.Field, typeErr.Value, want)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// CompareTables lists the differences between the tables recorded in the manifest and other,
// the tables found after a restore: tables missing from other, tables other has in addition,
// and row counts or checksums that differ. A checksum is compared only when the manifest has
// one. Each line starts with the table's name; the lines are sorted by table. It returns nil
// when nothing differs.
func (m Manifest) CompareTables(other map[TableName]TableInfo) []string {
	names := slices.Collect(maps.Keys(m.Tables))
	for name := range other {
		if _, ok := m.Tables[name]; !ok {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, TableName.Compare)

	var diffs []string
	for _, name := range names {
		want, inBackup := m.Tables[name]
		got, restored := other[name]
		switch {
		case !restored:
			diffs = append(diffs, fmt.Sprintf("%s: missing after restore (backup has %d rows)", name, want.Rows))
			continue
		case !inBackup:
			diffs = append(diffs, fmt.Sprintf("%s: not in the backup (restored %d rows)", name, got.Rows))
			continue
		case got.Rows != want.Rows:
			diffs = append(diffs, fmt.Sprintf("%s: rows: backup %d, restored %d", name, want.Rows, got.Rows))
		}
		if want.Checksum != "" && got.Checksum != want.Checksum {
			restoredSum := got.Checksum
			if restoredSum == "" {
				restoredSum = "none"
			}
			diffs = append(diffs, fmt.Sprintf("%s: checksum: backup %s, restored %s", name, want.Checksum, restoredSum))
		}
	}
	return diffs
}
