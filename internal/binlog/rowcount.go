package binlog

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"slices"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/hastack/hastack/internal/backup"
)

// WriteStreamTally is WriteStream, and it also says what the stream's transactions change in
// each table, as the archive has them (backup.ArchiveChanges): it reads the stream as it is
// written with go-mysql's parser, whose table map events name the tables of the row events. A
// WRITE_ROWS event adds its rows to its table's count, a DELETE_ROWS event takes its rows away,
// an UPDATE_ROWS event changes no count; every row image also enters the table's digest
// (backup.RowHash), where its columns allow. A table that a DDL statement of the replay
// touches (CREATE, DROP, TRUNCATE, RENAME, ALTER ...) is unknown, as are the tables a
// transaction that ended with ROLLBACK (or an XA transaction) changed; a statement that changes
// rows but cannot be attributed to tables (one logged as text: binlog_format is not ROW) or an
// event it cannot read makes every table unknown. The stream's SHA-256 identifies what was
// replayed.
func WriteStreamTally(ctx context.Context, w io.Writer, c *Chain, o ReplayOptions) (Selection, backup.ArchiveChanges, error) {
	t := newTally()
	sel, err := WriteStream(ctx, io.MultiWriter(w, t), c, o)
	return sel, t.result(sel), err
}

// Tally is WriteStreamTally without writing the stream anywhere: it verifies every segment the
// replay needs, as WriteStream does, and says what the replay would change.
func Tally(ctx context.Context, c *Chain, o ReplayOptions) (Selection, backup.ArchiveChanges, error) {
	return WriteStreamTally(ctx, io.Discard, c, o)
}

// tally reads a replay stream as it is written: an io.Writer that never fails.
// maxAccounts bounds the account statements a tally keeps: enough to say what they are.
const maxAccounts = 20

type tally struct {
	parser     *replication.BinlogParser
	sum        hash.Hash
	buf        []byte // the start of the next event
	magic      bool   // the binary log magic was read
	txns       int64
	txn        txnState
	tables     map[backup.TableName]*tableTally
	unknown    map[backup.TableName]string
	unknownDBs map[string]string
	accounts   []string // account statements, with their transactions (the first maxAccounts)
	everything string
	rowsErr    error // set when a rows event's rows do not decode
}

// txnState is the transaction being read.
type txnState struct {
	open, standalone, xa bool
	gtid                 string
	touched              map[backup.TableName]bool // tables its row events change
}

type tableTally struct {
	backup.TableChange
	shaped bool // Columns or NoDigest was decided by its first row event
}

func newTally() *tally {
	t := &tally{sum: sha256.New(), tables: map[backup.TableName]*tableTally{}, unknown: map[backup.TableName]string{}, unknownDBs: map[string]string{}}
	t.parser = replication.NewBinlogParser()
	t.parser.SetFlavor("mariadb")
	t.parser.SetVerifyChecksum(true)
	// A rows event whose rows do not decode makes its table unknown, not every table: the
	// header (with the table) is decoded first.
	t.parser.SetRowsEventDecodeFunc(func(e *replication.RowsEvent, data []byte) error {
		pos, err := e.DecodeHeader(data)
		if err != nil {
			return err
		}
		if err := e.DecodeData(pos, data); err != nil {
			t.rowsErr, e.Rows = err, nil
		}
		return nil
	})
	return t
}

func (t *tally) Write(p []byte) (int, error) {
	t.sum.Write(p)
	if t.everything != "" {
		return len(p), nil // nothing more to learn from it
	}
	t.buf = append(t.buf, p...)
	off := 0
	if !t.magic {
		if len(t.buf) < len(binlogMagic) {
			return len(p), nil
		}
		if string(t.buf[:len(binlogMagic)]) != binlogMagic {
			t.fail("the replay stream is not a binary log (no magic number)")
			return len(p), nil
		}
		t.magic, off = true, len(binlogMagic)
	}
	for len(t.buf)-off >= eventHeaderLen {
		size := int(binary.LittleEndian.Uint32(t.buf[off+9:]))
		if size < eventHeaderLen {
			t.fail(fmt.Sprintf("an event of the replay stream says it is %d bytes long", size))
			return len(p), nil
		}
		if len(t.buf)-off < size {
			break
		}
		t.event(t.buf[off : off+size])
		if t.everything != "" {
			return len(p), nil // fail dropped the buffer
		}
		off += size
	}
	t.buf = t.buf[:copy(t.buf, t.buf[off:])]
	return len(p), nil
}

// fail makes every table unknown.
func (t *tally) fail(why string) {
	if t.everything == "" {
		t.everything = why
	}
	t.buf = nil
}

func (t *tally) event(raw []byte) {
	// go-mysql's decoders index the bytes they are given; the stream was verified, but a
	// decoder's panic must not end the drill.
	defer func() {
		if r := recover(); r != nil {
			t.fail(fmt.Sprintf("an event of transaction %s does not decode: %v", t.txn.gtid, r))
		}
	}()
	ev, err := t.parser.Parse(raw)
	if err != nil {
		t.fail(fmt.Sprintf("an event of transaction %s does not decode: %v", t.txn.gtid, err))
		return
	}
	switch e := ev.Event.(type) {
	case *replication.FormatDescriptionEvent, *replication.TableMapEvent, *replication.MariadbAnnotateRowsEvent, *replication.IntVarEvent:
	case *replication.MariadbGTIDEvent:
		t.begin(e)
	case *replication.RowsEvent:
		t.rows(e)
	case *replication.QueryEvent:
		t.query(string(e.Schema), string(e.Query))
	case *replication.XIDEvent:
		t.end(false)
	default:
		switch ev.Header.EventType {
		case replication.XA_PREPARE_LOG_EVENT:
			t.txn.xa = true
			t.end(false)
		case replication.RAND_EVENT, replication.USER_VAR_EVENT:
			// Context of a statement logged as text, which says what it does.
		default:
			t.fail(fmt.Sprintf("transaction %s has a %s event, which the drill does not know", t.txn.gtid, ev.Header.EventType))
		}
	}
}

func (t *tally) begin(e *replication.MariadbGTIDEvent) {
	if t.txn.open {
		t.end(false)
	}
	t.txns++
	t.txn = txnState{open: true, standalone: e.Flags&replication.BINLOG_MARIADB_FL_STANDALONE != 0,
		gtid: fmt.Sprintf("%d-%d-%d", e.GTID.DomainID, e.GTID.ServerID, e.GTID.SequenceNumber), touched: map[backup.TableName]bool{}}
}

// end closes the current transaction; rolledBack: it ended with ROLLBACK.
func (t *tally) end(rolledBack bool) {
	why := ""
	switch {
	case rolledBack:
		why = fmt.Sprintf("transaction %s, which ended with ROLLBACK (a non-transactional table?), changed it", t.txn.gtid)
	case t.txn.xa:
		why = fmt.Sprintf("XA transaction %s changed it (prepared, and committed or rolled back apart)", t.txn.gtid)
	}
	if why != "" {
		for name := range t.txn.touched {
			t.unknownTable(name, why)
		}
	}
	t.txn = txnState{gtid: t.txn.gtid}
}

func (t *tally) query(schema, q string) {
	e := statementEffect(schema, q)
	switch {
	case e.commit:
		t.end(false)
		return
	case e.rollback:
		t.end(true)
		return
	case e.rollbackTo:
		for name := range t.txn.touched {
			t.unknownTable(name, fmt.Sprintf("a ROLLBACK TO SAVEPOINT in transaction %s undid some of its changes", t.txn.gtid))
		}
	case e.xa:
		t.txn.xa = true
	case e.everything != "":
		t.fail(fmt.Sprintf("%s (transaction %s)", e.everything, t.txn.gtid))
		return
	case e.account && len(t.accounts) < maxAccounts:
		t.accounts = append(t.accounts, fmt.Sprintf("%s (transaction %s)", abbreviate(withoutSecrets(q)), t.txn.gtid))
	}
	why := fmt.Sprintf("DDL in the replay (transaction %s): %s", t.txn.gtid, abbreviate(q))
	for _, name := range e.tables {
		t.unknownTable(name, why)
	}
	for _, db := range e.databases {
		if t.unknownDBs[db] == "" {
			t.unknownDBs[db] = why
		}
	}
	if t.txn.standalone {
		t.end(false)
	}
}

func (t *tally) unknownTable(name backup.TableName, why string) {
	if t.unknown[name] == "" {
		t.unknown[name] = why
	}
}

func (t *tally) rows(e *replication.RowsEvent) {
	name := backup.TableName{Database: string(e.Table.Schema), Table: string(e.Table.Table)}
	if t.txn.touched != nil {
		t.txn.touched[name] = true
	}
	if err := t.rowsErr; err != nil {
		t.rowsErr = nil
		t.unknownTable(name, fmt.Sprintf("its row events do not decode (transaction %s): %v", t.txn.gtid, err))
		return
	}
	tt := t.tables[name]
	if tt == nil {
		tt = &tableTally{}
		t.tables[name] = tt
	}
	kind := e.Type()
	n := int64(len(e.Rows))
	switch kind {
	case replication.EnumRowsEventTypeInsert:
		tt.Written += n
	case replication.EnumRowsEventTypeDelete:
		tt.Deleted += n
	case replication.EnumRowsEventTypeUpdate:
		tt.Updated += n / 2 // a before and an after image each
	default:
		t.unknownTable(name, fmt.Sprintf("transaction %s has a rows event of a kind the drill does not know", t.txn.gtid))
		return
	}
	t.digest(tt, e, kind)
}

// digest adds the row images of e to its table's digest, or decides it cannot have one.
func (t *tally) digest(tt *tableTally, e *replication.RowsEvent, kind replication.EnumRowsEventType) {
	if tt.shaped && tt.Columns == nil {
		return
	}
	kinds, why := columnKinds(e.Table)
	switch {
	case why != "":
	case tt.shaped && !slices.Equal(kinds, tt.Columns):
		why = "its row images change shape within the replay"
	case e.ColumnCount != e.Table.ColumnCount || slices.ContainsFunc(e.SkippedColumns, func(s []int) bool { return len(s) > 0 }):
		why = "its row images are not full (binlog_row_image is not FULL)"
	}
	tt.shaped = true
	for i, row := range e.Rows {
		if why != "" {
			break
		}
		h, err := backup.RowHash(kinds, row)
		if err != nil {
			why = fmt.Sprintf("a row image does not digest: %v", err)
			break
		}
		switch {
		case kind == replication.EnumRowsEventTypeInsert, kind == replication.EnumRowsEventTypeUpdate && i%2 == 1:
			tt.Digest += h
		default:
			tt.Digest -= h
		}
	}
	if why != "" {
		tt.Columns, tt.NoDigest, tt.Digest = nil, why, 0
		return
	}
	tt.Columns = kinds
}

// columnKinds are the digest kinds of a table map's columns, or why it has none.
func columnKinds(tm *replication.TableMapEvent) ([]backup.ColumnKind, string) {
	kinds := make([]backup.ColumnKind, len(tm.ColumnType))
	for i, tp := range tm.ColumnType {
		var meta uint16
		if i < len(tm.ColumnMeta) {
			meta = tm.ColumnMeta[i]
		}
		k, name := columnKind(tp, meta)
		if k == "" {
			return nil, fmt.Sprintf("column %d is %s, whose values the binary log and the server render differently", i+1, name)
		}
		kinds[i] = k
	}
	return kinds, ""
}

// columnKind is the digest kind of a column of binary log type tp, or the type's name.
func columnKind(tp byte, meta uint16) (backup.ColumnKind, string) {
	if tp == mysql.MYSQL_TYPE_STRING && meta >= 256 {
		// The real type is in the metadata (CHAR, BINARY, ENUM, SET), as go-mysql reads it.
		if b0 := byte(meta >> 8); b0&0x30 != 0x30 {
			tp = b0 | 0x30
		} else {
			tp = b0
		}
	}
	switch tp {
	case mysql.MYSQL_TYPE_TINY:
		return backup.ColumnInt8, ""
	case mysql.MYSQL_TYPE_SHORT:
		return backup.ColumnInt16, ""
	case mysql.MYSQL_TYPE_INT24:
		return backup.ColumnInt24, ""
	case mysql.MYSQL_TYPE_LONG:
		return backup.ColumnInt32, ""
	case mysql.MYSQL_TYPE_LONGLONG:
		return backup.ColumnInt64, ""
	case mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_STRING, mysql.MYSQL_TYPE_BLOB:
		return backup.ColumnBytes, ""
	}
	if name, ok := typeNames[tp]; ok {
		return "", name
	}
	return "", fmt.Sprintf("of binary log type %d", tp)
}

var typeNames = map[byte]string{
	mysql.MYSQL_TYPE_DECIMAL: "DECIMAL", mysql.MYSQL_TYPE_NEWDECIMAL: "DECIMAL", mysql.MYSQL_TYPE_FLOAT: "FLOAT",
	mysql.MYSQL_TYPE_DOUBLE: "DOUBLE", mysql.MYSQL_TYPE_TIMESTAMP: "TIMESTAMP", mysql.MYSQL_TYPE_TIMESTAMP2: "TIMESTAMP",
	mysql.MYSQL_TYPE_DATE: "DATE", mysql.MYSQL_TYPE_NEWDATE: "DATE", mysql.MYSQL_TYPE_TIME: "TIME", mysql.MYSQL_TYPE_TIME2: "TIME",
	mysql.MYSQL_TYPE_DATETIME: "DATETIME", mysql.MYSQL_TYPE_DATETIME2: "DATETIME", mysql.MYSQL_TYPE_YEAR: "YEAR",
	mysql.MYSQL_TYPE_BIT: "BIT", mysql.MYSQL_TYPE_ENUM: "ENUM", mysql.MYSQL_TYPE_SET: "SET", mysql.MYSQL_TYPE_JSON: "JSON",
	mysql.MYSQL_TYPE_GEOMETRY: "GEOMETRY",
}

// result is what the stream said, once written.
func (t *tally) result(sel Selection) backup.ArchiveChanges {
	if t.txn.open {
		t.end(false)
	}
	c := backup.ArchiveChanges{Transactions: sel.Transactions, Segments: len(sel.Segments), Bytes: sel.Bytes,
		Tables: map[backup.TableName]backup.TableChange{}, Unknown: t.unknown, UnknownDatabases: t.unknownDBs, Accounts: t.accounts, Everything: t.everything}
	if sel.Transactions > 0 {
		c.FirstGTID, c.LastGTID, c.FirstTime, c.LastTime = sel.FirstGTID.String(), sel.LastGTID.String(), sel.FirstTime, sel.LastTime
		c.StreamSHA256 = hex.EncodeToString(t.sum.Sum(nil))
	}
	if c.Everything == "" && (t.txns != sel.Transactions || len(t.buf) > 0) {
		c.Everything = fmt.Sprintf("the drill read %d transactions in the replay stream, which has %d", t.txns, sel.Transactions)
	}
	for name, tt := range t.tables {
		c.Tables[name] = tt.TableChange
	}
	return c
}
