package mariadb

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"
)

// What mariadb-binlog 11.8 printed for one transaction (trimmed).
const binlogSQL = `/*!40019 SET @@session.max_delayed_threads=0*/;
DELIMITER /*!*/;
# at 1234
#261207 13:20:01 server id 1  end_log_pos 1276 CRC32 0x1a2b3c4d 	GTID 0-1-3 trans
/*M!100101 SET @@session.skip_parallel_replication=0*//*!*/;
/*M!100001 SET @@session.gtid_domain_id=0*//*!*/;
/*M!100001 SET @@session.server_id=1*//*!*/;
/*M!100001 SET @@session.gtid_seq_no=3*//*!*/;
START TRANSACTION
/*!*/;
BINLOG '
cQFVaRMBAAAAMgAAAMYBAAAAAB8AAAAAAAEAA2FwcAABdAACAw8C/AMCAQH7qZHw
'/*!*/;
COMMIT/*!*/;
`

func TestStripTransactionIDs(t *testing.T) {
	var out bytes.Buffer
	if err := StripTransactionIDs(strings.NewReader(binlogSQL), &out); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(strings.Replace(binlogSQL, "/*M!100001 SET @@session.server_id=1*//*!*/;\n", "", 1),
		"/*M!100001 SET @@session.gtid_seq_no=3*//*!*/;\n", "", 1)
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	// The domain stays: the transaction keeps its replication domain.
	if !strings.Contains(out.String(), "gtid_domain_id=0") {
		t.Error("the domain line was left out")
	}
}

// A line longer than the reader's buffer passes whole, even when its tail looks like a line
// to leave out; reads of one byte at a time change nothing.
func TestStripTransactionIDsLongLinesAndShortReads(t *testing.T) {
	long := strings.Repeat("A", 200<<10) + "/*M!100001 SET @@session.gtid_seq_no=3*//*!*/;\n"
	header := "#261207 13:20:02 server id 1  end_log_pos 1400 CRC32 0x00000000 \tGTID 0-1-4 trans\n"
	in := long + header + "/*M!100001 SET @@session.gtid_seq_no=4*//*!*/;\nCOMMIT/*!*/;\n"
	var out bytes.Buffer
	if err := StripTransactionIDs(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	if want := long + header + "COMMIT/*!*/;\n"; out.String() != want {
		t.Errorf("long line: got %d bytes, want %d", out.Len(), len(want))
	}
	out.Reset()
	if err := StripTransactionIDs(iotest.OneByteReader(strings.NewReader(binlogSQL)), &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "gtid_seq_no") || strings.Contains(out.String(), "server_id") || !strings.Contains(out.String(), "COMMIT") {
		t.Errorf("one byte at a time:\n%s", out.String())
	}
}

// Only the session lines right after a GTID event's header go: a look-alike anywhere else (a
// statement's own text, a DDL's comment on a line of its own) is kept, and so is a last line
// without a newline.
func TestStripTransactionIDsKeepsLookAlikes(t *testing.T) {
	for _, in := range []string{
		"SELECT '/*M!100001 SET @@session.server_id=1*//*!*/;'\n/*M!100001 SET @@session.server_id=1*//*!*/;",
		"ALTER TABLE t COMMENT '\n/*M!100001 SET @@session.gtid_seq_no=9*//*!*/;\n'/*!*/;\n",
		"# at 1234\n/*M!100001 SET @@session.server_id=1*//*!*/;\n",
		// the run after a header ends at the first other line
		"#261207 13:20:01 server id 1  end_log_pos 1 CRC32 0x0 \tGTID 0-1-3 ddl\nCREATE TABLE t (a INT) COMMENT '\n/*M!100001 SET @@session.server_id=1*//*!*/;\n'/*!*/;\n",
	} {
		var out bytes.Buffer
		if err := StripTransactionIDs(strings.NewReader(in), &out); err != nil {
			t.Fatal(err)
		}
		if out.String() != in {
			t.Errorf("got %q, want it unchanged", out.String())
		}
	}
}
