package backup

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// tn is the TableName of "db.table" split at its first dot, for tests' plain names.
func tn(s string) TableName {
	db, table, _ := strings.Cut(s, ".")
	return TableName{Database: db, Table: table}
}

// validManifest returns a manifest that passes Validate; it is the one in testdata/manifest.json
// (and, as version 1, in testdata/manifest_v1.json).
func validManifest() Manifest {
	started := time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)
	id := NewID(started)
	return Manifest{
		Version:  ManifestVersion,
		ID:       id,
		Started:  started,
		Finished: started.Add(4*time.Minute + 12*time.Second),
		Source: Source{
			Container:     "hastack-db-replica-1",
			Role:          RoleReplica,
			ServerVersion: "11.4.4-MariaDB-ubu2404-log",
		},
		GTID:        "0-1-4242,1-2-7",
		DumpKey:     DumpKey(id, false),
		RawBytes:    1_073_741_824,
		StoredBytes: 187_654_321,
		SHA256:      "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Tables: map[TableName]TableInfo{
			{"app", "orders"}: {Rows: 120_000, Checksum: "3301827261"},
			{"app", "users"}:  {Rows: 5_000, Checksum: "1200392917"},
			{"app", "empty"}:  {Rows: 0},
		},
		Tools: map[string]string{
			ToolMariaDBDump: "mariadb-dump from 11.4.4-MariaDB",
			ToolAgent:       "v0.3.0",
			"zstd":          "github.com/klauspost/compress v1.17.11",
		},
		StackCommit: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
	}
}

func TestEncodeManifestGolden(t *testing.T) {
	got, err := EncodeManifest(validManifest())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "manifest.json")
	if *updateGolden {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("EncodeManifest output differs from %s (run go test -update after checking the change):\n%s", golden, got)
	}
}

func TestManifestRoundTrip(t *testing.T) {
	for _, encrypted := range []bool{false, true} {
		m := validManifest()
		m.Encrypted = encrypted
		m.DumpKey = DumpKey(m.ID, encrypted)
		b, err := EncodeManifest(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeManifest(b)
		if err != nil {
			t.Fatalf("DecodeManifest(EncodeManifest(m)): %v", err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip (encrypted=%t):\n got %+v\nwant %+v", encrypted, got, m)
		}
	}
}

func TestEncodeManifestWritesUTC(t *testing.T) {
	m := validManifest()
	berlin := time.FixedZone("CET", 3600)
	m.Started = m.Started.In(berlin)
	m.Finished = m.Finished.In(berlin)
	b, err := EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"started": "2026-11-24T03:00:00Z"`)) {
		t.Errorf("started not written in UTC:\n%s", b)
	}
}

func TestEncodeManifestRefusesInvalid(t *testing.T) {
	m := validManifest()
	m.SHA256 = ""
	if b, err := EncodeManifest(m); err == nil || b != nil {
		t.Fatalf("EncodeManifest of an invalid manifest = %q, %v; want an error and no bytes", b, err)
	}
}

func TestManifestValidate(t *testing.T) {
	const prefix = "manifest 20261124T030000Z: "
	tests := []struct {
		name   string
		change func(m *Manifest)
		want   string // the whole message of the only problem
	}{
		{"version missing", func(m *Manifest) { m.Version = 0 }, prefix + "version: missing"},
		{"version newer", func(m *Manifest) { m.Version = 3 }, prefix + "version: unsupported version 3: this agent reads versions 1 and 2; use an agent that knows version 3"},
		{"ambiguous names in version 2", func(m *Manifest) { m.AmbiguousTables = []string{"a.b.c"} }, prefix + "tables: ambiguous names only come from version 1 manifests"},
		{"id missing", func(m *Manifest) { m.ID = ""; m.DumpKey = "" }, "manifest: id: missing"},
		{"id malformed", func(m *Manifest) { m.ID = "2026-11-24"; m.DumpKey = DumpKey(m.ID, false) },
			`manifest "2026-11-24": id: not a UTC time of the form 20060102T150405Z`},
		{"id not the start time", func(m *Manifest) { m.Started = m.Started.Add(time.Second) },
			prefix + "id: does not match started (2026-11-24T03:00:01Z): the id is the start time in UTC"},
		{"started missing", func(m *Manifest) { m.Started = time.Time{} }, prefix + "started: missing"},
		{"finished missing", func(m *Manifest) { m.Finished = time.Time{} }, prefix + "finished: missing"},
		{"finished before started", func(m *Manifest) { m.Finished = m.Started.Add(-time.Second) }, prefix + "finished: before started"},
		{"container missing", func(m *Manifest) { m.Source.Container = "" }, prefix + "source.container: missing"},
		{"role unknown", func(m *Manifest) { m.Source.Role = "master" }, prefix + `source.role: "master" is neither "primary" nor "replica"`},
		{"server version missing", func(m *Manifest) { m.Source.ServerVersion = "" }, prefix + "source.server_version: missing"},
		{"gtid malformed", func(m *Manifest) { m.GTID = "0-1" }, prefix + `gtid: "0-1" is not a MariaDB GTID list (domain-server-sequence, comma-separated)`},
		{"dump key of another id", func(m *Manifest) { m.DumpKey = DumpKey("20261123T030000Z", false) },
			prefix + `dump_key: "20261123T030000Z/dump.sql.zst", want "20261124T030000Z/dump.sql.zst" for id 20261124T030000Z and encrypted=false`},
		{"encrypted but plain dump key", func(m *Manifest) { m.Encrypted = true },
			prefix + `dump_key: "20261124T030000Z/dump.sql.zst", want "20261124T030000Z/dump.sql.zst.age" for id 20261124T030000Z and encrypted=true`},
		{"encrypted dump key but not encrypted", func(m *Manifest) { m.DumpKey = DumpKey(m.ID, true) },
			prefix + `dump_key: "20261124T030000Z/dump.sql.zst.age", want "20261124T030000Z/dump.sql.zst" for id 20261124T030000Z and encrypted=false`},
		{"raw bytes zero", func(m *Manifest) { m.RawBytes = 0 }, prefix + "raw_bytes: must be positive (got 0)"},
		{"stored bytes negative", func(m *Manifest) { m.StoredBytes = -1 }, prefix + "stored_bytes: must be positive (got -1)"},
		{"sha256 missing", func(m *Manifest) { m.SHA256 = "" }, prefix + "sha256: not 64 lower-case hex digits"},
		{"sha256 short", func(m *Manifest) { m.SHA256 = m.SHA256[:63] }, prefix + "sha256: not 64 lower-case hex digits"},
		{"sha256 upper case", func(m *Manifest) { m.SHA256 = strings.ToUpper(m.SHA256) }, prefix + "sha256: not 64 lower-case hex digits"},
		{"sha256 not hex", func(m *Manifest) { m.SHA256 = strings.Repeat("g", 64) }, prefix + "sha256: not 64 lower-case hex digits"},
		{"tables missing", func(m *Manifest) { m.Tables = nil }, prefix + "tables: missing (an empty list when the dump holds no tables)"},
		{"table without database", func(m *Manifest) { m.Tables[TableName{Table: "orders"}] = TableInfo{} }, prefix + "tables[``.`orders`]: the database and the table must both be named"},
		{"database without table", func(m *Manifest) { m.Tables[TableName{Database: "app"}] = TableInfo{} }, prefix + "tables[`app`.``]: the database and the table must both be named"},
		{"negative rows", func(m *Manifest) { m.Tables[tn("app.users")] = TableInfo{Rows: -1} }, prefix + `tables[app.users].rows: negative (-1)`},
		{"negative rows, dotted database", func(m *Manifest) { m.Tables[TableName{"shop.archive", "t"}] = TableInfo{Rows: -2} }, prefix + "tables[`shop.archive`.`t`].rows: negative (-2)"},
		{"tools missing", func(m *Manifest) { m.Tools = nil }, ""}, // two problems, checked below
		{"agent version empty", func(m *Manifest) { m.Tools[ToolAgent] = "" }, prefix + `tools["agent"]: empty version`},
		{"dump tool missing", func(m *Manifest) { delete(m.Tools, ToolMariaDBDump) }, prefix + `tools["mariadb-dump"]: missing`},
		{"tool without name", func(m *Manifest) { m.Tools[""] = "1.0" }, prefix + "tools: a version without a tool name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validManifest()
			tt.change(&m)
			err := m.Validate()
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			if !errors.Is(err, ErrInvalidManifest) {
				t.Errorf("errors.Is(err, ErrInvalidManifest) = false for %v", err)
			}
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Fatalf("error %v is not a *ManifestError", err)
			}
			if tt.want != "" && err.Error() != tt.want {
				t.Errorf("Validate() =\n  %s\nwant\n  %s", err, tt.want)
			}
		})
	}

	if err := validManifest().Validate(); err != nil {
		t.Errorf("validManifest().Validate() = %v", err)
	}
	empty := validManifest()
	empty.Tables = map[TableName]TableInfo{}
	empty.GTID = ""
	empty.StackCommit = ""
	if err := empty.Validate(); err != nil {
		t.Errorf("a manifest without tables, gtid and stack commit: %v", err)
	}
}

func TestManifestValidateReportsEveryProblem(t *testing.T) {
	err := Manifest{}.Validate()
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Validate() = %v, want a joined error", err)
	}
	fields := map[string]bool{}
	for _, e := range joined.Unwrap() {
		var me *ManifestError
		if !errors.As(e, &me) {
			t.Fatalf("%v is not a *ManifestError", e)
		}
		fields[me.Field] = true
	}
	for _, f := range []string{"version", "id", "started", "finished", "source.container", "source.role",
		"source.server_version", "raw_bytes", "stored_bytes", "sha256", "tables",
		`tools["mariadb-dump"]`, `tools["agent"]`} {
		if !fields[f] {
			t.Errorf("no problem reported for %s; got %v", f, err)
		}
	}
}

func TestDecodeManifest(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeManifest(golden)
	if err != nil {
		t.Fatalf("DecodeManifest(testdata/manifest.json): %v", err)
	}
	if !reflect.DeepEqual(m, validManifest()) {
		t.Errorf("decoded %+v\nwant %+v", m, validManifest())
	}

	// Each case edits the golden file.
	edit := func(old, new string) []byte {
		if !bytes.Contains(golden, []byte(old)) {
			t.Fatalf("testdata/manifest.json does not contain %q", old)
		}
		return bytes.Replace(golden, []byte(old), []byte(new), 1)
	}
	const prefix = "manifest 20261124T030000Z: "
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "manifest: not a JSON object: empty"},
		{"null", []byte("null"), "manifest: version: missing"},
		{"array", []byte("[]"), "manifest: not a JSON object: a JSON array, want an object"},
		{"truncated", golden[:len(golden)/2], "manifest: not a JSON object: unexpected EOF"},
		{"wrong type in nested field", edit(`"rows": 5000`, `"rows": 5e3`), prefix + "tables.rows: a JSON number 5e3, want an integer"},
		{"unknown field", edit(`"version": 2,`, `"version": 2, "compression": "gzip",`), prefix + `unknown field "compression"`},
		{"unknown nested field", edit(`"role": "replica",`, `"role": "replica", "host": "db2",`), prefix + `unknown field "host"`},
		{"unknown field in a table", edit(`"rows": 5000`, `"rows": 5000, "engine": "InnoDB"`), prefix + `unknown field "engine"`},
		{"trailing data", append(bytes.Clone(golden), []byte("{}")...), prefix + "trailing data after the JSON object"},
		{"newer version", edit(`"version": 2,`, `"version": 3, "compression": "gzip",`),
			prefix + "version: unsupported version 3: this agent reads versions 1 and 2; use an agent that knows version 3"},
		{"wrong type", edit(`"raw_bytes": 1073741824`, `"raw_bytes": "1 GiB"`), prefix + "raw_bytes: a JSON string, want an integer"},
		{"bad sha256", edit(`"sha256": "9f86`, `"sha256": "`), prefix + "sha256: not 64 lower-case hex digits"},
		{"bad time", edit(`"finished": "2026-11-24T03:04:12Z"`, `"finished": "yesterday"`),
			prefix + `parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`},
		{"tables as version 1 writes them", edit(`"tables": [`, `"tables": {"app.x": {"rows": 1}}, "t": [`), prefix + "tables: a JSON object, want an array"},
		{"table listed twice", edit(`"table": "orders"`, `"table": "empty"`), prefix + "tables[1]: app.empty is listed twice"},
		{"table without database", edit(`"database": "app",`, `"database": "",`), prefix + "tables[``.`empty`]: the database and the table must both be named"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeManifest(tt.in)
			if err == nil {
				t.Fatalf("DecodeManifest succeeded: %+v", m)
			}
			if !errors.Is(err, ErrInvalidManifest) {
				t.Errorf("errors.Is(err, ErrInvalidManifest) = false for %v", err)
			}
			if tt.want != "" && err.Error() != tt.want {
				t.Errorf("DecodeManifest error =\n  %s\nwant\n  %s", err, tt.want)
			}
			if !reflect.DeepEqual(m, Manifest{}) {
				t.Errorf("DecodeManifest returned a manifest with its error: %+v", m)
			}
		})
	}
}

// Version 1 manifests (tables keyed "db.table") decode into the same form; a key with more than
// one dot does not say where the database's name ends: it is kept aside, never guessed.
func TestDecodeManifestVersion1(t *testing.T) {
	v1, err := os.ReadFile(filepath.Join("testdata", "manifest_v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := validManifest()
	want.Version = manifestV1
	m, err := DecodeManifest(v1)
	if err != nil {
		t.Fatalf("DecodeManifest(testdata/manifest_v1.json): %v", err)
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("decoded %+v\nwant %+v", m, want)
	}
	if err := m.Restorable(); err != nil {
		t.Errorf("an unambiguous version 1 manifest is restorable: %v", err)
	}
	if _, err := EncodeManifest(m); err == nil {
		t.Error("EncodeManifest wrote a version 1 manifest: only the current version is written")
	}

	const prefix = "manifest 20261124T030000Z: "
	withTables := func(tables string) []byte {
		i, j := bytes.Index(v1, []byte(`"tables": {`)), bytes.Index(v1, []byte(`"tools": {`))
		if i < 0 || j < i {
			t.Fatal("testdata/manifest_v1.json: no tables before tools")
		}
		return slices.Concat(v1[:i], []byte(`"tables": `+tables+`, `), v1[j:])
	}
	for _, tc := range []struct {
		name      string
		tables    string
		want      map[TableName]TableInfo
		ambiguous []string
		err       string // of DecodeManifest
	}{
		{"plain", `{"app.t": {"rows": 3}}`, map[TableName]TableInfo{{"app", "t"}: {Rows: 3}}, nil, ""},
		{"backtick", "{\"a`b.t\": {\"rows\": 1}}", map[TableName]TableInfo{{"a`b", "t"}: {Rows: 1}}, nil, ""},
		{"dotted database", `{"shop.archive.t": {"rows": 2}, "shop.x": {"rows": 1}}`,
			map[TableName]TableInfo{{"shop", "x"}: {Rows: 1}}, []string{"shop.archive.t"}, ""},
		{"no tables", `{}`, map[TableName]TableInfo{}, nil, ""},
		{"no dot", `{"orders": {}}`, nil, nil, prefix + "tables[`orders`.``]: the database and the table must both be named"},
		{"empty table", `{"app.": {}}`, nil, nil, prefix + "tables[`app`.``]: the database and the table must both be named"},
		{"tables missing", `null`, nil, nil, prefix + "tables: missing (an empty list when the dump holds no tables)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeManifest(withTables(tc.tables))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m.Tables, tc.want) || !slices.Equal(m.AmbiguousTables, tc.ambiguous) {
				t.Fatalf("tables %v, ambiguous %q; want %v, %q", m.Tables, m.AmbiguousTables, tc.want, tc.ambiguous)
			}
			err = m.Restorable()
			if len(tc.ambiguous) > 0 {
				if !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), `"shop.archive.t"`) || !strings.Contains(err.Error(), "does not guess") {
					t.Fatalf("Restorable() = %v, want ErrAmbiguous naming the table", err)
				}
			} else if err != nil {
				t.Fatalf("Restorable() = %v", err)
			}
		})
	}
}

// The manifest's JSON in `agent backup --json` and `agent backups --json` is its version 2
// form, and reads back through UnmarshalJSON.
func TestManifestJSON(t *testing.T) {
	m := validManifest()
	m.Tables[TableName{"shop.archive", "t`1"}] = TableInfo{Rows: 4}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`{"database":"shop.archive","table":"t`+"`"+`1","rows":4}`)) {
		t.Errorf("json.Marshal: tables are not entries of database and table: %s", b)
	}
	var back Manifest
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Errorf("json round trip:\n got %+v\nwant %+v", back, m)
	}
}

func TestCompareTables(t *testing.T) {
	m := Manifest{Tables: tables(map[string]TableInfo{
		"app.orders": {Rows: 10, Checksum: "111"},
		"app.users":  {Rows: 5, Checksum: "222"},
		"app.t":      {Rows: 1},
		"app.t2":     {Rows: 2},
	})}
	tests := []struct {
		name     string
		restored map[string]TableInfo
		want     []string
	}{
		{"identical", map[string]TableInfo{
			"app.orders": {Rows: 10, Checksum: "111"},
			"app.users":  {Rows: 5, Checksum: "222"},
			"app.t":      {Rows: 1},
			"app.t2":     {Rows: 2},
		}, nil},
		{"restored checksum where backup has none is not compared", map[string]TableInfo{
			"app.orders": {Rows: 10, Checksum: "111"},
			"app.users":  {Rows: 5, Checksum: "222"},
			"app.t":      {Rows: 1, Checksum: "999"},
			"app.t2":     {Rows: 2},
		}, nil},
		{"everything differs", map[string]TableInfo{
			"app.orders": {Rows: 9, Checksum: "110"},
			"app.users":  {Rows: 5},
			"app.t2":     {Rows: 2},
			"app.zz":     {Rows: 3},
			"app.a":      {Rows: 0},
		}, []string{
			"app.a: not in the backup (restored 0 rows)",
			"app.orders: rows: backup 10, restored 9",
			"app.orders: checksum: backup 111, restored 110",
			"app.t: missing after restore (backup has 1 rows)",
			"app.users: checksum: backup 222, restored none",
			"app.zz: not in the backup (restored 3 rows)",
		}},
		{"nothing restored", nil, []string{
			"app.orders: missing after restore (backup has 10 rows)",
			"app.t: missing after restore (backup has 1 rows)",
			"app.t2: missing after restore (backup has 2 rows)",
			"app.users: missing after restore (backup has 5 rows)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.CompareTables(tables(tt.restored))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("CompareTables =\n  %q\nwant\n  %q", got, tt.want)
			}
		})
	}
}

// tables keys plain "db.table" names as TableNames.
func tables(in map[string]TableInfo) map[TableName]TableInfo {
	if in == nil {
		return nil
	}
	out := map[TableName]TableInfo{}
	for k, v := range in {
		out[tn(k)] = v
	}
	return out
}
