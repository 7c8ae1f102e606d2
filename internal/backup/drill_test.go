package backup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"testing"
	"time"
)

// pitServer is a scratch server for point-in-time drills: the restore fake, which also answers
// the columns, digest and foreign key queries from its fields.
type pitServer struct {
	*fakeServer
	columns map[TableName][][2]string // name, DATA_TYPE
	digests map[TableName]string      // SUM of the row hashes, as the server would give it
	fks     []map[string]string
	queries []string
}

var digestQuery = regexp.MustCompile("SELECT ([0-9]+) AS i, COUNT\\(\\*\\) AS n, COALESCE\\(SUM\\(.*?\\),0\\) AS d FROM (`(?:[^`]|``)*`)\\.(`(?:[^`]|``)*`)")

func (p *pitServer) Query(ctx context.Context, q string) ([]map[string]string, error) {
	p.queries = append(p.queries, q)
	var rows []map[string]string
	switch {
	case strings.Contains(q, "FROM information_schema.COLUMNS"):
		for name, cols := range p.columns {
			if !strings.Contains(q, "("+quoteString(name.Database)+","+quoteString(name.Table)+")") {
				continue
			}
			for i, c := range cols {
				rows = append(rows, map[string]string{"db": name.Database, "t": name.Table, "pos": fmt.Sprint(i + 1), "c": c[0], "type": c[1], "gen": "NEVER"})
			}
		}
	case digestQuery.MatchString(q):
		for _, m := range digestQuery.FindAllStringSubmatch(q, -1) {
			name := TableName{Database: unquoteName(m[2]), Table: unquoteName(m[3])}
			rows = append(rows, map[string]string{"i": m[1], "n": fmt.Sprint(p.tables[name]), "d": p.digests[name]})
		}
	case strings.Contains(q, "information_schema.REFERENTIAL_CONSTRAINTS"):
		rows = p.fks
	default:
		return p.fakeServer.Query(ctx, q)
	}
	return rows, nil
}

// pitFixture is a drill of the restore fixture's backup (app.visits 6 rows, app.empty,
// app.we`ird 2, shop.visits 1) to a point where the archive writes 3 rows of app.visits,
// deletes 1 and updates 2, and alters shop.visits.
func pitFixture(t *testing.T) (DrillOptions, *pitServer, *ArchiveChanges) {
	t.Helper()
	o, _, _, _ := restoreFixture(t)
	scratch := &pitServer{
		fakeServer: &fakeServer{name: "hastack-drill-1", tables: maps.Clone(o.Target.(*fakeServer).tables), accounts: []Account{{"root", "localhost"}}},
		columns:    map[TableName][][2]string{tn("app.visits"): {{"id", "bigint"}, {"server", "varchar"}}},
		digests:    map[TableName]string{tn("app.visits"): "18446744073709551620"}, // 2^64 + 4: digest 4
	}
	visits := ArchiveChanges{
		Transactions: 6, FirstGTID: "0-1-11", LastGTID: "0-1-16", Segments: 2, Bytes: 4096, StreamSHA256: "ab12",
		Tables: map[TableName]TableChange{
			tn("app.visits"):  {Written: 3, Deleted: 1, Updated: 2, Columns: []ColumnKind{ColumnInt64, ColumnBytes}, Digest: 1<<64 - 1},
			tn("shop.visits"): {Written: 5},
		},
		Unknown: map[TableName]string{tn("shop.visits"): "DDL in the replay (transaction 0-1-15): ALTER TABLE visits ADD c INT"},
	}
	changes := &visits
	replay := &DrillReplay{Point: time.Date(2026, 12, 1, 14, 3, 27, 0, time.UTC),
		Expect: func(context.Context) (ArchiveChanges, error) { return *changes, nil },
		Apply: func(context.Context) (ArchiveChanges, error) {
			if scratch.loaded == "" {
				t.Error("replayed before the load")
			}
			scratch.tables[tn("app.visits")] += 2
			scratch.tables[tn("shop.visits")] = 100 // the DDL: not checked
			scratch.digests[tn("app.visits")] = "3" // 4 + (2^64 - 1), modulo 2^64
			return *changes, nil
		}}
	return DrillOptions{Backup: o.Backup, Auth: o.Auth, Reader: o.Reader, Scratch: scratch, Replay: replay}, scratch, changes
}

func TestDrillToAPointInTime(t *testing.T) {
	o, _, _ := pitFixture(t)
	var steps []string
	o.Progress = func(p RestoreProgress) {
		if len(steps) == 0 || steps[len(steps)-1] != p.Step {
			steps = append(steps, p.Step)
		}
	}
	rep, err := Drill(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(steps, ","); got != "archive,load,check,replay,check" {
		t.Fatalf("steps %s", got)
	}
	p := rep.PointInTime
	if p == nil || p.Transactions != 6 || p.LastGTID != "0-1-16" || p.StreamSHA256 != "ab12" || p.Digests != 1 || rep.Rows != 8+0+2+100 {
		t.Fatalf("report %+v, point %+v", rep, p)
	}
	var visits *DrillTable
	for i, tb := range p.Tables {
		if tb.Table == "app.visits" {
			visits = &p.Tables[i]
		}
	}
	if len(p.Tables) != 3 || visits == nil || *visits != (DrillTable{Table: "app.visits", DumpRows: 6, Written: 3, Deleted: 1, Updated: 2, Rows: 8, Digest: "checked"}) {
		t.Fatalf("tables %+v", p.Tables)
	}
	if len(p.Unknown) != 1 || p.Unknown[0].Table != "shop.visits" || !strings.Contains(p.Unknown[0].Why, "ALTER TABLE") {
		t.Fatalf("unknown %+v", p.Unknown)
	}
}

// afterApply runs f after the fixture's replay.
func afterApply(o *DrillOptions, f func()) {
	apply := o.Replay.Apply
	o.Replay.Apply = func(ctx context.Context) (ArchiveChanges, error) {
		ch, err := apply(ctx)
		f()
		return ch, err
	}
}

func tableOf(rep DrillReport, name string) DrillTable {
	for _, t := range rep.PointInTime.Tables {
		if t.Table == name {
			return t
		}
	}
	return DrillTable{}
}

func TestDrillToAPointInTimeFindsDifferences(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(o *DrillOptions, s *pitServer, c *ArchiveChanges)
		want   string // in the error; "" for none
		check  func(t *testing.T, rep DrillReport)
	}{
		{name: "rows", want: "app.visits: rows: the dump has 6, the archive writes 3 and deletes 1: want 8, restored 9",
			change: func(o *DrillOptions, s *pitServer, c *ArchiveChanges) {
				afterApply(o, func() { s.tables[tn("app.visits")]++ })
			}},
		{name: "digest", want: "app.visits: digest: the replay changed it by 0000000000000000, the archive's row images by ffffffffffffffff",
			change: func(o *DrillOptions, s *pitServer, c *ArchiveChanges) {
				afterApply(o, func() { s.digests[tn("app.visits")] = "4" })
			}},
		{name: "a table the dump does not have", want: "app.new: not in the backup",
			change: func(o *DrillOptions, s *pitServer, c *ArchiveChanges) {
				afterApply(o, func() { s.tables[tn("app.new")] = 1 })
			}},
		{name: "the archive changed between its reads", want: "but 6 (SHA-256 ab12) were verified before it",
			change: func(o *DrillOptions, s *pitServer, c *ArchiveChanges) {
				apply := o.Replay.Apply
				o.Replay.Apply = func(ctx context.Context) (ArchiveChanges, error) {
					ch, err := apply(ctx)
					ch.StreamSHA256 = "cd34"
					return ch, err
				}
			}},
		{name: "columns the digest does not take",
			change: func(o *DrillOptions, s *pitServer, c *ArchiveChanges) {
				s.columns[tn("app.visits")][1][1] = "datetime"
				s.digests[tn("app.visits")] = "999" // not looked at
			},
			check: func(t *testing.T, rep DrillReport) {
				if d := tableOf(rep, "app.visits").Digest; rep.PointInTime.Digests != 0 || !strings.Contains(d, "column server is datetime") {
					t.Errorf("digest: %q", d)
				}
			}},
		{name: "a foreign key cascades from a table with deletes",
			change: func(o *DrillOptions, s *pitServer, c *ArchiveChanges) {
				s.fks = []map[string]string{{"db": "app", "t": "we`ird", "pdb": "app", "pt": "visits", "del": "CASCADE", "upd": "RESTRICT"}}
				afterApply(o, func() { s.tables[tn("app.we`ird")] = 0 })
			},
			check: func(t *testing.T, rep DrillReport) {
				u := rep.PointInTime.Unknown
				if len(u) != 2 || u[0].Table != "`app`.`we``ird`" || !strings.Contains(u[0].Why, "ON DELETE CASCADE from app.visits") {
					t.Errorf("unknown %+v", u)
				}
			}},
		{name: "everything unknown",
			change: func(o *DrillOptions, s *pitServer, c *ArchiveChanges) {
				c.Everything = "the archive holds a statement that changes rows it cannot attribute to tables"
				afterApply(o, func() { s.tables[tn("app.empty")] = 42 })
			},
			check: func(t *testing.T, rep DrillReport) {
				if p := rep.PointInTime; !strings.Contains(p.NotChecked, "cannot attribute") || len(p.Tables) != 0 {
					t.Errorf("point %+v", p)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, s, c := pitFixture(t)
			tc.change(&o, s, c)
			rep, err := Drill(context.Background(), o)
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if tc.check != nil {
				tc.check(t, rep)
			}
		})
	}
}

// A segment that does not verify fails the drill before the dump is loaded.
func TestDrillToAPointInTimeVerifiesTheArchiveFirst(t *testing.T) {
	o, s, _ := pitFixture(t)
	corrupt := errors.New("binlog segment binlog/1-6-1 is corrupt: SHA-256 of binlog/1-6-1.binlog.zst is 00, the manifest says 11")
	o.Replay.Expect = func(context.Context) (ArchiveChanges, error) { return ArchiveChanges{}, corrupt }
	if _, err := Drill(context.Background(), o); !errors.Is(err, corrupt) || s.loaded != "" || !strings.Contains(err.Error(), "to 2026-12-01 14:03:27 UTC") {
		t.Fatalf("err = %v, loaded %d bytes", err, len(s.loaded))
	}
}

// RowHash renders a row as the digest SQL does: HEX of an integer's low bits, MD5 of bytes, N.
func TestRowHash(t *testing.T) {
	kinds := []ColumnKind{ColumnInt8, ColumnInt32, ColumnInt64, ColumnBytes, ColumnBytes}
	// CONCAT_WS(',', 'FD', 'FFFFFFFF', '0', MD5('abc'), 'N'): the first 15 hex digits of its MD5.
	h, err := RowHash(kinds, []any{int8(-3), int32(-1), int64(0), "abc", nil})
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(0xad4eaffc73668b5); h != want {
		t.Fatalf("RowHash = %x, want %x", h, want)
	}
	// Signed or not, the same bits hash the same; []byte as string.
	if h2, _ := RowHash(kinds, []any{uint8(253), uint32(1<<32 - 1), uint64(0), []byte("abc"), nil}); h2 != h {
		t.Fatalf("unsigned values hash %x, signed %x", h2, h)
	}
	if _, err := RowHash(kinds[:1], []any{"x"}); err == nil {
		t.Fatal("a string in an integer column was hashed")
	}
	cols := []serverColumn{{Name: "a", Kind: ColumnInt8}, {Name: "b`", Kind: ColumnBytes}}
	if got, want := digestSQL(cols), "CAST(CONV(LEFT(MD5(CONCAT_WS(',',IFNULL(HEX(`a` & 255),'N'),IFNULL(MD5(`b```),'N'))),15),16,10) AS UNSIGNED)"; got != want {
		t.Fatalf("digestSQL = %s", got)
	}
}
