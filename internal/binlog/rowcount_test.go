package binlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/mariadb"
)

// Row events made by hand as MariaDB 11.8 writes them (version 1 row events, 6-byte table ids),
// for a test table app.t (id INT, v VARCHAR(64), n TINYINT, b BLOB) and others.

type testTable struct {
	id         uint64
	db, name   string
	types      []byte
	meta       []byte // the table map's metadata block
	encodeCell func(col int, v any) []byte
}

var tableT = testTable{id: 70, db: "app", name: "t",
	types: []byte{mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_BLOB},
	meta:  []byte{64, 0, 2}, // VARCHAR(64): max length 64 (2 bytes); BLOB: 2-byte length
	encodeCell: func(col int, v any) []byte {
		switch col {
		case 0:
			return binary.LittleEndian.AppendUint32(nil, uint32(v.(int32)))
		case 1:
			return append([]byte{byte(len(v.(string)))}, v.(string)...)
		case 2:
			return []byte{byte(v.(int8))}
		}
		return append(binary.LittleEndian.AppendUint16(nil, uint16(len(v.([]byte)))), v.([]byte)...)
	},
}

// tableD has a DATETIME2 column: counted, not digested.
var tableD = testTable{id: 71, db: "app", name: "d",
	types: []byte{mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_DATETIME2},
	meta:  []byte{0},
	encodeCell: func(col int, v any) []byte {
		if col == 0 {
			return binary.LittleEndian.AppendUint32(nil, uint32(v.(int32)))
		}
		return []byte{0x99, 0xb9, 0x02, 0x00, 0x00} // 2026-12-01 00:00:00, more or less
	},
}

func (tb testTable) mapEvent(server uint32, ts time.Time) []byte {
	body := binary.LittleEndian.AppendUint64(nil, tb.id)[:6]
	body = append(body, 1, 0) // flags
	body = append(body, byte(len(tb.db)))
	body = append(body, tb.db+"\x00"...)
	body = append(body, byte(len(tb.name)))
	body = append(body, tb.name+"\x00"...)
	body = append(body, byte(len(tb.types)))
	body = append(body, tb.types...)
	body = append(body, byte(len(tb.meta)))
	body = append(body, tb.meta...)
	body = append(body, bytes.Repeat([]byte{0xff}, (len(tb.types)+7)/8)...) // every column nullable
	return event(replication.TABLE_MAP_EVENT, server, ts, 0, body)
}

// image encodes a full row image: the null bitmap, then the values.
func (tb testTable) image(row []any) []byte {
	nulls := make([]byte, (len(row)+7)/8)
	var vals []byte
	for i, v := range row {
		if v == nil {
			nulls[i/8] |= 1 << (i % 8)
			continue
		}
		vals = append(vals, tb.encodeCell(i, v)...)
	}
	return append(nulls, vals...)
}

// rowsEvent is a version 1 row event of typ with rows (for an update: before, after, ...).
func (tb testTable) rowsEvent(typ replication.EventType, server uint32, ts time.Time, rows ...[]any) []byte {
	body := binary.LittleEndian.AppendUint64(nil, tb.id)[:6]
	body = append(body, 1, 0) // STMT_END_F
	body = append(body, byte(len(tb.types)))
	bitmap := bytes.Repeat([]byte{0xff}, (len(tb.types)+7)/8)
	body = append(body, bitmap...)
	if typ == replication.UPDATE_ROWS_EVENTv1 {
		body = append(body, bitmap...)
	}
	for _, r := range rows {
		body = append(body, tb.image(r)...)
	}
	return event(typ, server, ts, 0, body)
}

// rowsTxn is a transaction of row events on tables, ending with an XID event.
func rowsTxn(g mariadb.GTID, ts time.Time, events ...[]byte) [][]byte {
	return append(append([][]byte{gtidEvent(g, 0, ts)}, events...), xidEvent(g.Server, ts))
}

func (tb testTable) change(typ replication.EventType, ts time.Time, rows ...[]any) [][]byte {
	return [][]byte{tb.mapEvent(1, ts), tb.rowsEvent(typ, 1, ts, rows...)}
}

func flat(parts ...[][]byte) [][]byte {
	var out [][]byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// tallyArchive stores txns (each a transaction's events) as one segment from the empty position.
func tallyArchive(t *testing.T, txns ...[][]byte) (*Chain, ReplayOptions) {
	t.Helper()
	st := newMemStore()
	keys := testKeys(t)
	s := buildSegment(t, nil, t0, txns...)
	if _, _, err := s.write(context.Background(), st, writeOptions{keys: keys, server: Server{Address: "db:3306"}}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return listed(t, st, ListOptions{Keys: keys}), ReplayOptions{Objects: st}
}

func rowHash(t *testing.T, row []any) uint64 {
	t.Helper()
	h, err := backup.RowHash([]backup.ColumnKind{backup.ColumnInt32, backup.ColumnBytes, backup.ColumnInt8, backup.ColumnBytes}, row)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestTallyCountsRowsAndDigests(t *testing.T) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	r1 := []any{int32(1), "one", int8(-3), []byte("blob")}
	r2 := []any{int32(2), "two", nil, []byte{}}
	r2b := []any{int32(2), "two!", int8(7), nil}
	r3 := []any{int32(-3), "", int8(127), []byte{0, 1}}
	myisam := tableT
	myisam.id, myisam.name = 72, "myisam"
	c, ro := tallyArchive(t,
		rowsTxn(gtid("0-1-1"), at(1), flat(tableT.change(replication.WRITE_ROWS_EVENTv1, at(1), r1, r2, r3))...),
		rowsTxn(gtid("0-1-2"), at(2), flat(tableT.change(replication.DELETE_ROWS_EVENTv1, at(2), r1))...),
		rowsTxn(gtid("0-1-3"), at(3), flat(
			tableT.change(replication.UPDATE_ROWS_EVENTv1, at(3), r2, r2b),
			tableD.change(replication.WRITE_ROWS_EVENTv1, at(3), []any{int32(1), "x"}, []any{int32(2), "x"}))...),
		ddlTxn(gtid("0-1-4"), at(4), "ALTER TABLE `x` ADD COLUMN note VARCHAR(20) /* a comment */"),
		[][]byte{gtidEvent(gtid("0-1-5"), 0, at(5)), myisam.mapEvent(1, at(5)), myisam.rowsEvent(replication.WRITE_ROWS_EVENTv1, 1, at(5), r1),
			queryEvent(1, at(5), "ROLLBACK")},
		rowsTxn(gtid("0-1-6"), at(9), flat(tableT.change(replication.WRITE_ROWS_EVENTv1, at(9), r1))...),
	)
	ro.Stop = Stop{Time: at(5)}
	var stream bytes.Buffer
	sel, ch, err := WriteStreamTally(context.Background(), &stream, c, ro)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(stream.Bytes())
	if sel.Transactions != 5 || ch.Transactions != 5 || ch.LastGTID != "0-1-5" || ch.StreamSHA256 != hex.EncodeToString(sum[:]) || ch.Bytes != int64(stream.Len()) || ch.Everything != "" {
		t.Fatalf("selection %+v, changes %+v", sel, ch)
	}
	tt := ch.Tables[backup.TableName{Database: "app", Table: "t"}]
	want := rowHash(t, r1) + rowHash(t, r2) + rowHash(t, r3) - rowHash(t, r1) - rowHash(t, r2) + rowHash(t, r2b)
	if tt.Written != 3 || tt.Deleted != 1 || tt.Updated != 1 || tt.Delta() != 2 || tt.Digest != want || len(tt.Columns) != 4 || tt.NoDigest != "" {
		t.Fatalf("app.t: %+v (digest want %x)", tt, want)
	}
	td := ch.Tables[backup.TableName{Database: "app", Table: "d"}]
	if td.Written != 2 || td.Columns != nil || !strings.Contains(td.NoDigest, "column 2 is DATETIME") {
		t.Fatalf("app.d: %+v", td)
	}
	if why := ch.Unknown[backup.TableName{Database: "app", Table: "x"}]; !strings.Contains(why, "DDL in the replay (transaction 0-1-4): ALTER TABLE `x` ADD COLUMN") {
		t.Fatalf("app.x: %q", why)
	}
	if why := ch.Unknown[backup.TableName{Database: "app", Table: "myisam"}]; !strings.Contains(why, "ROLLBACK") {
		t.Fatalf("app.myisam: %q", why)
	}
	if len(ch.Unknown) != 2 || ch.Unknown[backup.TableName{Database: "app", Table: "t"}] != "" {
		t.Fatalf("unknown: %v", ch.Unknown)
	}

	// Tally reads the same, writing nothing; WriteStream wrote the same stream.
	var plain bytes.Buffer
	if _, err := WriteStream(context.Background(), &plain, c, ro); err != nil || !bytes.Equal(plain.Bytes(), stream.Bytes()) {
		t.Fatalf("WriteStream: %v, the same stream: %v", err, bytes.Equal(plain.Bytes(), stream.Bytes()))
	}
	_, again, err := Tally(context.Background(), c, ro)
	if err != nil || again.StreamSHA256 != ch.StreamSHA256 || again.Tables[backup.TableName{Database: "app", Table: "t"}].Digest != tt.Digest {
		t.Fatalf("Tally: %v, %+v", err, again)
	}
}

func TestTallyCannotAttributeAStatement(t *testing.T) {
	c, ro := tallyArchive(t,
		rowsTxn(gtid("0-1-1"), t0, flat(tableT.change(replication.WRITE_ROWS_EVENTv1, t0, []any{int32(1), "a", int8(1), []byte("b")}))...),
		[][]byte{gtidEvent(gtid("0-1-2"), 0, t0), queryEvent(1, t0, "BEGIN"), queryEvent(1, t0, "INSERT INTO t VALUES (2)"), queryEvent(1, t0, "COMMIT")},
	)
	_, ch, err := Tally(context.Background(), c, ro)
	if err != nil || !strings.Contains(ch.Everything, "INSERT INTO t VALUES (2) (transaction 0-1-2)") || !strings.Contains(ch.Everything, "binlog_format") {
		t.Fatalf("err %v, everything %q", err, ch.Everything)
	}
}

func TestTallySaysWhenRowsDoNotDecode(t *testing.T) {
	// The fakes' row events are opaque: their table map does not decode.
	c, ro := tallyArchive(t, rowTxn(gtid("0-1-1"), t0, "x"))
	_, ch, err := Tally(context.Background(), c, ro)
	if err != nil || !strings.Contains(ch.Everything, "does not decode") || ch.StreamSHA256 == "" {
		t.Fatalf("err %v, changes %+v", err, ch)
	}
}

func TestDrillReplayAppliesWhatItTallied(t *testing.T) {
	r := []any{int32(1), "a", int8(1), []byte("b")}
	c, ro := tallyArchive(t,
		rowsTxn(gtid("0-1-1"), t0.Add(time.Second), flat(tableT.change(replication.WRITE_ROWS_EVENTv1, t0.Add(time.Second), r))...),
		rowsTxn(gtid("0-1-2"), t0.Add(3*time.Second), flat(tableT.change(replication.DELETE_ROWS_EVENTv1, t0.Add(3*time.Second), r))...),
	)
	ctx := context.Background()
	var applied bytes.Buffer
	calls := 0
	apply := func(ctx context.Context, in io.Reader) error {
		calls++
		_, err := io.Copy(&applied, in)
		return err
	}
	d := DrillReplay(c, ro, t0.Add(2*time.Second), apply)
	want, err := d.Expect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Apply(ctx)
	sum := sha256.Sum256(applied.Bytes())
	if err != nil || calls != 1 || got.StreamSHA256 != want.StreamSHA256 || want.StreamSHA256 != hex.EncodeToString(sum[:]) || got.Transactions != 1 ||
		got.Tables[backup.TableName{Database: "app", Table: "t"}].Written != 1 {
		t.Fatalf("apply: %v, %d calls; got %+v, want %+v", err, calls, got, want)
	}

	// Nothing to replay: nothing applied.
	calls = 0
	if got, err := DrillReplay(c, ro, t0, apply).Apply(ctx); err != nil || calls != 0 || got.Transactions != 0 {
		t.Fatalf("no transaction: %v, %d calls, %+v", err, calls, got)
	}
	// The database fails: its error, and the stream stops.
	boom := errors.New("ERROR 1062 (23000): Duplicate entry")
	if _, err := DrillReplay(c, ro, t0.Add(time.Hour), func(context.Context, io.Reader) error { return boom }).Apply(ctx); !errors.Is(err, boom) {
		t.Fatalf("a failing apply: %v", err)
	}
}

func TestDrillWindow(t *testing.T) {
	st, _, lo := testArchive(t) // 0-1-1..0-1-9 committed at t0+seq s; segments 1-3, 4-6, 7-9
	c := listed(t, st, lo)
	dump := func(id string, gtid string, started time.Time) backup.Entry {
		return backup.Entry{ID: id, Complete: true, Manifest: &backup.Manifest{ID: id, GTID: gtid, Started: started}}
	}
	entries := []backup.Entry{ // newest first
		dump("c", "0-1-5", t0.Add(5*time.Second)),
		dump("b", "0-1-2", t0.Add(2500*time.Millisecond)),
		dump("a", "1-1-5", t0.Add(time.Second)), // another replication domain: not in the archive
		{ID: "x", Complete: false},
	}
	w, err := NewDrillWindow(entries, c)
	if err != nil || w.Oldest != "b" || !w.From.Equal(t0.Add(2500*time.Millisecond)) || !w.To.Equal(t0.Add(9*time.Second)) {
		t.Fatalf("window %+v, %v", w, err)
	}
	var asked int64
	first := w.Random(func(n int64) int64 { asked = n; return 0 })
	last := w.Random(func(n int64) int64 { return n - 1 })
	if asked != 7 || !first.Equal(t0.Add(3*time.Second)) || !last.Equal(t0.Add(9*time.Second)) {
		t.Fatalf("random: %d seconds, first %s, last %s", asked, first, last)
	}

	// A hole after 0-1-3: only a backup after it can be replayed from.
	st2 := newMemStore()
	o := writeOptions{keys: lo.Keys, server: Server{Address: "db:3306"}}
	writeTestSegment(t, st2, o, 0, 3, t0.Add(time.Minute))
	writeTestSegment(t, st2, o, 4, 9, t0.Add(2*time.Minute))
	holed := listed(t, st2, lo)
	if holed.ReplayableFrom(pos("0-1-2")) || !holed.ReplayableFrom(pos("0-1-5")) || !holed.ReplayableFrom(pos("0-1-9")) || holed.ReplayableFrom(pos("0-1-10")) {
		t.Fatal("ReplayableFrom across a hole")
	}
	if w, err := NewDrillWindow(entries, holed); err != nil || w.Oldest != "c" {
		t.Fatalf("window with a hole: %+v, %v", w, err)
	}
	if _, err := NewDrillWindow(entries[1:], holed); err == nil || !strings.Contains(err.Error(), "without a hole") {
		t.Fatalf("no backup before the hole: %v", err)
	}
	// Nothing committed after the backup: the window is its time.
	w, err = NewDrillWindow([]backup.Entry{dump("z", "0-1-9", t0.Add(time.Hour))}, c)
	if err != nil || !w.To.Equal(w.From) || !w.Random(func(int64) int64 { return 0 }).Equal(t0.Add(time.Hour)) {
		t.Fatalf("an idle archive: %+v, %v", w, err)
	}
}

// Account and privilege statements are told, each with its transaction: a restore keeps the
// target's accounts, so it refuses to replay them unless told to.
func TestTallyListsAccountChanges(t *testing.T) {
	c, ro := tallyArchive(t,
		rowsTxn(gtid("0-1-1"), t0, flat(tableT.change(replication.WRITE_ROWS_EVENTv1, t0, []any{int32(1), "a", int8(1), []byte("b")}))...),
		[][]byte{gtidEvent(gtid("0-1-2"), replication.BINLOG_MARIADB_FL_STANDALONE, t0), queryEvent(1, t0, "CREATE USER 'bob'@'%' identified  by 'hunter2'")},
		[][]byte{gtidEvent(gtid("0-1-3"), replication.BINLOG_MARIADB_FL_STANDALONE, t0), queryEvent(1, t0, "GRANT SELECT ON app.* TO 'bob'@'%'")},
		[][]byte{gtidEvent(gtid("0-1-4"), replication.BINLOG_MARIADB_FL_STANDALONE, t0), queryEvent(1, t0, "SET PASSWORD FOR 'bob'@'%' = PASSWORD('s3cret')")},
	)
	_, ch, err := Tally(context.Background(), c, ro)
	// The passwords, as MariaDB logs them, are left out.
	want := []string{"CREATE USER 'bob'@'%' IDENTIFIED ... (transaction 0-1-2)", "GRANT SELECT ON app.* TO 'bob'@'%' (transaction 0-1-3)",
		"SET PASSWORD FOR 'bob'@'%' = ... (transaction 0-1-4)"}
	if err != nil || !slices.Equal(ch.Accounts, want) || ch.Everything != "" {
		t.Fatalf("err %v, accounts %q (want %q), everything %q", err, ch.Accounts, want, ch.Everything)
	}
}
