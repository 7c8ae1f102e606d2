package backup

import (
	"bytes"
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

// ManifestVersion is the manifest format this package writes and reads.
const ManifestVersion = 1

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
	Version     int                  `json:"version"` // ManifestVersion
	ID          string               `json:"id"`      // NewID(Started)
	Started     time.Time            `json:"started"`
	Finished    time.Time            `json:"finished"`
	Source      Source               `json:"source"`
	GTID        string               `json:"gtid"`         // GTID position of the dump's snapshot; empty if the server has none yet
	DumpKey     string               `json:"dump_key"`     // DumpKey(ID, Encrypted)
	Encrypted   bool                 `json:"encrypted"`    // the dump object is age-encrypted
	RawBytes    int64                `json:"raw_bytes"`    // uncompressed dump size
	StoredBytes int64                `json:"stored_bytes"` // size of the dump object
	SHA256      string               `json:"sha256"`       // of the dump object, lower-case hex
	Tables      map[string]TableInfo `json:"tables"`       // "db.table" -> rows and checksum in the dump's snapshot
	Tools       map[string]string    `json:"tools"`        // tool -> version; ToolMariaDBDump and ToolAgent required
	StackCommit string               `json:"stack_commit,omitempty"`
	Note        string               `json:"note,omitempty"` // why it was taken, when not on schedule
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
// ("source.role", "tables[\"db.t\"].rows"); it is empty when the problem is the document itself.
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

	if m.Version != ManifestVersion {
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
		bad("tables", "missing (an empty object when the dump holds no tables)")
	}
	for _, name := range slices.Sorted(maps.Keys(m.Tables)) {
		db, table, ok := strings.Cut(name, ".")
		if !ok || db == "" || table == "" {
			bad(fmt.Sprintf("tables[%q]", name), "name is not of the form db.table")
		}
		if rows := m.Tables[name].Rows; rows < 0 {
			bad(fmt.Sprintf("tables[%q].rows", name), "negative (%d)", rows)
		}
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
	return fmt.Sprintf("unsupported version %d: this agent reads version %d; use an agent that knows version %d",
		v, ManifestVersion, v)
}

// EncodeManifest validates m and returns it as indented JSON, times in UTC, ending in a newline.
func EncodeManifest(m Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	m.Started = m.Started.UTC()
	m.Finished = m.Finished.UTC()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest %s: %w", m.ID, err)
	}
	return append(b, '\n'), nil
}

// DecodeManifest parses and validates a manifest. Unknown fields, trailing data and manifests
// of another format version are refused. Every error matches ErrInvalidManifest.
func DecodeManifest(b []byte) (Manifest, error) {
	// Read the version first, leniently, so that a newer format is reported as such and not
	// as the unknown fields it brings.
	var head struct {
		Version int    `json:"version"`
		ID      string `json:"id"`
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&head); err != nil {
		return Manifest{}, &ManifestError{Problem: "not a JSON object: " + jsonProblem(err)}
	}
	if head.Version != ManifestVersion {
		return Manifest{}, &ManifestError{ID: head.ID, Field: "version", Problem: versionProblem(head.Version)}
	}

	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, &ManifestError{ID: head.ID, Problem: jsonProblem(err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, &ManifestError{ID: head.ID, Problem: "trailing data after the JSON object"}
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
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
func (m Manifest) CompareTables(other map[string]TableInfo) []string {
	names := slices.Collect(maps.Keys(m.Tables))
	for name := range other {
		if _, ok := m.Tables[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)

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
