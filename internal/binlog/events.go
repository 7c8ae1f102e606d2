package binlog

import (
	"bytes"
	"fmt"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/hastack/hastack/internal/mariadb"
)

// Event layout, from go-mysql: every event has a 19-byte header; with binlog_checksum=CRC32
// (MariaDB's default) it ends with a 4-byte CRC32 of everything before it.
const (
	eventHeaderLen = replication.EventHeaderSize
	crcLen         = replication.BinlogChecksumLength
)

// binlogMagic starts every binary log file.
var binlogMagic = string(replication.BinLogFileHeader)

// format is what a Format_description event says about the events after it. Two events with
// the same format describe the same encoding, though their bytes differ (creation time).
type format struct {
	version    uint16
	server     string
	headerLen  uint8
	postHeader string
	checksum   byte
}

func formatOf(fde *replication.FormatDescriptionEvent) format {
	return format{fde.Version, fde.ServerVersion, fde.EventHeaderLength, string(fde.EventTypeHeaderLengths), fde.ChecksumAlgorithm}
}

func (f format) crc() bool { return f.checksum == replication.BINLOG_CHECKSUM_ALG_CRC32 }

func (f format) checksumName() string {
	if f.crc() {
		return checksumCRC32
	}
	return checksumNone
}

// txn is one whole transaction: its events exactly as the server sent them.
type txn struct {
	gtid   mariadb.GTID
	time   time.Time // commit time: the timestamp of its last event
	events int
	raw    []byte
}

// assembler groups events into whole transactions, by MariaDB's own rule (the replica's I/O
// thread and the dump thread use it to know where an event group ends): a GTID event starts a
// group; a standalone group (DDL: FL_STANDALONE) ends with its first query or incident event;
// any other ends with an XID event, an XA PREPARE event or a query that is exactly COMMIT or
// ROLLBACK.
//
// Events outside a group carry no transaction (rotations, the binary log's Format_description,
// GTID list and checkpoint events, heartbeats, stop events) and are dropped: a segment's Start
// position says what a GTID list would, and its own Format_description event describes it.
// Annotate-rows events (the statement that made a row change) are inside groups and kept:
// mariadb-binlog shows them, and replaying ignores them.
type assembler struct {
	crc        bool // events end with a CRC32
	cur        *txn
	standalone bool
}

// metaEvents are the events that may come between transactions; none is archived.
var metaEvents = map[replication.EventType]bool{
	replication.ROTATE_EVENT:                    true,
	replication.STOP_EVENT:                      true,
	replication.HEARTBEAT_EVENT:                 true,
	replication.HEARTBEAT_LOG_EVENT_V2:          true,
	replication.IGNORABLE_EVENT:                 true,
	replication.MARIADB_GTID_LIST_EVENT:         true,
	replication.MARIADB_BINLOG_CHECKPOINT_EVENT: true,
	replication.MARIADB_START_ENCRYPTION_EVENT:  true,
}

func (a *assembler) inTransaction() bool { return a.cur != nil }

// add takes the next event (not a Format_description event) and returns the transaction it
// completes, if any.
func (a *assembler) add(ev *replication.BinlogEvent) (*txn, error) {
	h := ev.Header
	body, err := eventBody(ev.RawData, a.crc)
	if err != nil {
		return nil, err
	}
	switch {
	case h.EventType == replication.MARIADB_GTID_EVENT:
		if a.cur != nil {
			return nil, fmt.Errorf("transaction %s has no end: transaction %s starts", a.cur.gtid, gtidOf(h, body))
		}
		g, flags, err := decodeGTID(h, body)
		if err != nil {
			return nil, err
		}
		a.cur = &txn{gtid: g, events: 1, raw: bytes.Clone(ev.RawData)}
		a.standalone = flags&replication.BINLOG_MARIADB_FL_STANDALONE != 0
		return nil, nil
	case h.EventType == replication.HEARTBEAT_EVENT || h.EventType == replication.HEARTBEAT_LOG_EVENT_V2:
		return nil, nil // the dump thread's, never part of a transaction
	case metaEvents[h.EventType] || a.cur == nil && h.Flags&replication.LOG_EVENT_IGNORABLE_F != 0:
		if a.cur != nil {
			return nil, fmt.Errorf("%s event inside transaction %s", h.EventType, a.cur.gtid)
		}
		return nil, nil
	case a.cur == nil:
		return nil, fmt.Errorf("%s event outside a transaction (no GTID event before it)", h.EventType)
	}
	a.cur.events++
	a.cur.raw = append(a.cur.raw, ev.RawData...)
	end, err := a.ends(h.EventType, body)
	if err != nil || !end {
		return nil, err
	}
	t := a.cur
	t.time = time.Unix(int64(h.Timestamp), 0).UTC()
	a.cur = nil
	return t, nil
}

// ends says whether an event of type t ends the current group.
func (a *assembler) ends(t replication.EventType, body []byte) (bool, error) {
	if a.standalone {
		return t == replication.QUERY_EVENT || t == replication.MARIADB_QUERY_COMPRESSED_EVENT || t == replication.INCIDENT_EVENT, nil
	}
	switch t {
	case replication.XID_EVENT, replication.XA_PREPARE_LOG_EVENT:
		return true, nil
	case replication.QUERY_EVENT:
		q, err := queryText(body)
		if err != nil {
			return false, err
		}
		// Exactly these, as MariaDB's Query_log_event::peek_is_commit_rollback.
		return string(q) == "COMMIT" || string(q) == "ROLLBACK", nil
	}
	return false, nil
}

// eventBody is an event's bytes after its header and before its checksum.
func eventBody(raw []byte, crc bool) ([]byte, error) {
	n := eventHeaderLen
	if crc {
		n += crcLen
	}
	if len(raw) < n {
		return nil, fmt.Errorf("event of %d bytes: too short", len(raw))
	}
	return raw[eventHeaderLen : len(raw)-(n-eventHeaderLen)], nil
}

// decodeGTID decodes a MariaDB GTID event with go-mysql, after checking the length its decoder
// assumes.
func decodeGTID(h *replication.EventHeader, body []byte) (mariadb.GTID, byte, error) {
	const fixed = 8 + 4 + 1 // sequence number, domain, flags
	if len(body) < fixed || body[12]&replication.BINLOG_MARIADB_FL_GROUP_COMMIT_ID != 0 && len(body) < fixed+8 {
		return mariadb.GTID{}, 0, fmt.Errorf("GTID event of %d bytes: too short", len(body))
	}
	var e replication.MariadbGTIDEvent
	if err := e.Decode(body); err != nil {
		return mariadb.GTID{}, 0, fmt.Errorf("GTID event: %w", err)
	}
	return mariadb.GTID{Domain: e.GTID.DomainID, Server: h.ServerID, Seq: e.GTID.SequenceNumber}, e.Flags, nil
}

// gtidOf names a GTID event for an error message.
func gtidOf(h *replication.EventHeader, body []byte) string {
	g, _, err := decodeGTID(h, body)
	if err != nil {
		return "(unreadable)"
	}
	return g.String()
}

// queryText returns a query event's statement, decoded by go-mysql after checking the lengths
// its decoder assumes.
func queryText(body []byte) ([]byte, error) {
	const fixed = 4 + 4 + 1 + 2 + 2 // thread id, execution time, schema length, error code, status length
	if len(body) < fixed {
		return nil, fmt.Errorf("query event of %d bytes: too short", len(body))
	}
	schema := int(body[8])
	status := int(body[11]) | int(body[12])<<8
	if len(body) < fixed+status+schema+1 {
		return nil, fmt.Errorf("query event of %d bytes: shorter than its lengths say", len(body))
	}
	var e replication.QueryEvent
	if err := e.Decode(body); err != nil {
		return nil, fmt.Errorf("query event: %w", err)
	}
	return e.Query, nil
}
