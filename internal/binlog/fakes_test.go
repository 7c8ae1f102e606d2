package binlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/mariadb"
)

// memStore is a backup store in memory: Store and backup.ObjectReader.
type memStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	gets    []string
	// failPut, when set, may fail a Put or Upload of a key (after storing nothing).
	failPut func(key string) error
	// failGet, when set, may fail a read of a key (it is counted in gets).
	failGet func(key string) error
	// hang, when set, may make an operation ("list", "get", "put") on a key hang until its
	// context ends, as a store that stopped answering does.
	hang func(op, key string) bool
}

// hung waits for the end of ctx if hang says so.
func (m *memStore) hung(ctx context.Context, op, key string) error {
	if m.hang == nil || !m.hang(op, key) {
		return nil
	}
	<-ctx.Done()
	return fmt.Errorf("%s %s: %w", op, key, ctx.Err())
}

func newMemStore() *memStore { return &memStore{objects: map[string][]byte{}} }

func (m *memStore) List(ctx context.Context) ([]backup.Object, error) {
	if err := m.hung(ctx, "list", ""); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []backup.Object
	for k, v := range m.objects {
		out = append(out, backup.Object{Key: k, Size: int64(len(v))})
	}
	slices.SortFunc(out, func(a, b backup.Object) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (m *memStore) Get(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	rc, n, _, err := m.Open(ctx, key, "")
	return rc, n, err
}

func (m *memStore) Open(ctx context.Context, key, ifMatch string) (io.ReadCloser, int64, string, error) {
	if err := m.hung(ctx, "get", key); err != nil {
		return nil, 0, "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets = append(m.gets, key)
	if m.failGet != nil {
		if err := m.failGet(key); err != nil {
			return nil, 0, "", fmt.Errorf("get %s: %w", key, err)
		}
	}
	b, ok := m.objects[key]
	if !ok {
		return nil, 0, "", fmt.Errorf("get %s: %w", key, backup.ErrNotFound)
	}
	etag := etagOf(b)
	if ifMatch != "" && ifMatch != etag {
		return nil, 0, "", fmt.Errorf("get %s: changed", key)
	}
	return io.NopCloser(bytes.NewReader(bytes.Clone(b))), int64(len(b)), etag, nil
}

func etagOf(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:8]) }

func (m *memStore) Upload(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	return int64(len(b)), m.Put(ctx, key, b, contentType)
}

func (m *memStore) Put(ctx context.Context, key string, data []byte, contentType string) error {
	if err := m.hung(ctx, "put", key); err != nil {
		return err
	}
	if m.failPut != nil {
		if err := m.failPut(key); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[key] = bytes.Clone(data)
	return nil
}

// dataGets counts the reads of segment data objects, by key.
func (m *memStore) dataGets() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := map[string]int{}
	for _, k := range m.gets {
		if _, suffix, ok := parseKey(k); ok && suffix != manifestSuffix && suffix != signatureSuffix {
			n[k]++
		}
	}
	return n
}

func (m *memStore) keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ks []string
	for k := range m.objects {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// corrupt flips a byte in the middle of an object.
func (m *memStore) corrupt(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := bytes.Clone(m.objects[key])
	b[len(b)/2] ^= 0xff
	m.objects[key] = b
}

// Binary log events made by hand, with real CRC32 checksums, read back by go-mysql's parser.

// realFDE is a Format_description event as MariaDB 11.8.9 sent it at the start of a dump
// (checksum CRC32).
const realFDE = "09a8166b0f01000000fc000000000000000000040031312e382e392d4d6172696144422d302b646562313375312066726f6d2044656269616e2d6c6f67000000000000000000000000000013380d000800120004040404120000e400041a08000000080808020000000a0a0a0000000000000a0a0a0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000041304000d0808080a0a0a016d0ca362"

func fdeBytes(t testing.TB) []byte {
	b, err := hex.DecodeString(realFDE)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// otherFDE is realFDE claiming another server version (another format), checksum fixed.
func otherFDE(t testing.TB) []byte {
	b := fdeBytes(t)
	copy(b[eventHeaderLen+2:], "12.0.0-MariaDB")
	return withCRC(b[:len(b)-crcLen])
}

func withCRC(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// event builds an event of type typ with body, logged at ts by server.
func event(typ replication.EventType, server uint32, ts time.Time, flags uint16, body []byte) []byte {
	size := eventHeaderLen + len(body) + crcLen
	b := make([]byte, 0, size)
	b = binary.LittleEndian.AppendUint32(b, uint32(ts.Unix()))
	b = append(b, byte(typ))
	b = binary.LittleEndian.AppendUint32(b, server)
	b = binary.LittleEndian.AppendUint32(b, uint32(size))
	b = binary.LittleEndian.AppendUint32(b, 0) // log position: not used by the archive
	b = binary.LittleEndian.AppendUint16(b, flags)
	b = append(b, body...)
	return withCRC(b)
}

func gtidEvent(g mariadb.GTID, flags byte, ts time.Time) []byte {
	body := binary.LittleEndian.AppendUint64(nil, g.Seq)
	body = binary.LittleEndian.AppendUint32(body, g.Domain)
	body = append(body, flags)
	body = append(body, make([]byte, 6)...)
	return event(replication.MARIADB_GTID_EVENT, g.Server, ts, replication.LOG_EVENT_SUPPRESS_USE_F, body)
}

func queryEvent(server uint32, ts time.Time, query string) []byte {
	body := binary.LittleEndian.AppendUint32(nil, 7) // thread id
	body = binary.LittleEndian.AppendUint32(body, 0) // execution time
	body = append(body, 3)                           // schema length
	body = binary.LittleEndian.AppendUint16(body, 0) // error code
	body = binary.LittleEndian.AppendUint16(body, 0) // status variables length
	body = append(body, "app\x00"...)
	body = append(body, query...)
	return event(replication.QUERY_EVENT, server, ts, 0, body)
}

func xidEvent(server uint32, ts time.Time) []byte {
	return event(replication.XID_EVENT, server, ts, 0, binary.LittleEndian.AppendUint64(nil, 99))
}

// rowsEvent is an opaque row event: the archive never decodes rows.
func rowsEvent(server uint32, ts time.Time, payload string) []byte {
	return event(replication.WRITE_ROWS_EVENTv1, server, ts, 0, []byte(payload))
}

func metaEvent(typ replication.EventType, server uint32) []byte {
	return event(typ, server, time.Unix(0, 0), replication.LOG_EVENT_ARTIFICIAL_F, []byte("mariadb-bin.000001"))
}

// rowTxn is a transaction of one row change ending with an XID event.
func rowTxn(g mariadb.GTID, ts time.Time, payload string) [][]byte {
	return [][]byte{
		gtidEvent(g, 0, ts),
		event(replication.MARIADB_ANNOTATE_ROWS_EVENT, g.Server, ts, 0, []byte("INSERT INTO t VALUES ("+payload+")")),
		event(replication.TABLE_MAP_EVENT, g.Server, ts, 0, []byte("table map")),
		rowsEvent(g.Server, ts, payload),
		xidEvent(g.Server, ts),
	}
}

// ddlTxn is a standalone transaction.
func ddlTxn(g mariadb.GTID, ts time.Time, query string) [][]byte {
	return [][]byte{gtidEvent(g, replication.BINLOG_MARIADB_FL_STANDALONE, ts), queryEvent(g.Server, ts, query)}
}

// parseEvents parses raw events (the first a Format_description event) with go-mysql.
func parseEvents(t testing.TB, raws ...[]byte) []*replication.BinlogEvent {
	t.Helper()
	p := replication.NewBinlogParser()
	p.SetFlavor("mariadb")
	p.SetRawMode(true)
	p.SetVerifyChecksum(true)
	var out []*replication.BinlogEvent
	for _, raw := range raws {
		ev, err := p.Parse(raw)
		if err != nil {
			t.Fatalf("parse a test event: %v", err)
		}
		out = append(out, ev)
	}
	return out
}

func gtid(s string) mariadb.GTID {
	g, err := ParseGTID(s)
	if err != nil {
		panic(err)
	}
	return g
}

func pos(s string) Position {
	p, err := ParsePosition(s)
	if err != nil {
		panic(err)
	}
	return p
}

// fakeServer is a database's binary log history for the fake source.
type fakeServer struct {
	mu      sync.Mutex
	fde     []byte
	txns    []fakeTxn
	purged  int // transactions before this index are purged
	changed chan struct{}
	// dropAfter, when > 0, cuts the next stream after that many events.
	dropAfter int
	opens     int
	down      bool
	kills     int // streams opened before the last kill fail
	// refuse, when set, is the message of a MariaDB error 1236 refusing every stream.
	refuse string
}

// kill stops the server: its streams fail, connections are refused (until restart).
func (s *fakeServer) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = true
	s.kills++
	close(s.changed)
	s.changed = make(chan struct{})
}

type fakeTxn struct {
	gtid   mariadb.GTID
	events [][]byte
}

func newFakeServer(t testing.TB) *fakeServer {
	return &fakeServer{fde: fdeBytes(t), changed: make(chan struct{})}
}

// restart accepts connections again.
func (s *fakeServer) restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = false
}

func (s *fakeServer) commit(g mariadb.GTID, events [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.txns = append(s.txns, fakeTxn{g, events})
	close(s.changed)
	s.changed = make(chan struct{})
}

// position after the first n transactions.
func (s *fakeServer) positionAfter(n int) Position {
	var p Position
	for _, t := range s.txns[:n] {
		p = withGTID(p, t.gtid)
	}
	return p
}

func (s *fakeServer) current() Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.positionAfter(len(s.txns))
}

// fakeSource serves fake servers by address.
type fakeSource struct {
	t       testing.TB
	mu      sync.Mutex
	servers map[string]*fakeServer
}

func (f *fakeSource) server(addr string) *fakeServer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.servers[addr]
}

func (f *fakeSource) position(ctx context.Context, addr string) (Position, error) {
	s := f.server(addr)
	if s == nil {
		return nil, fmt.Errorf("no server at %s", addr)
	}
	return s.current(), nil
}

func (f *fakeSource) open(ctx context.Context, addr string, from Position) (eventStream, error) {
	s := f.server(addr)
	if s == nil {
		return nil, fmt.Errorf("connect to %s: refused", addr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, fmt.Errorf("connect to %s: refused", addr)
	}
	s.opens++
	start := -1
	for i := s.purged; i <= len(s.txns); i++ {
		if s.positionAfter(i).Equal(from) {
			start = i
		}
	}
	st := &fakeStream{t: f.t, srv: s, at: start, dropAfter: s.dropAfter, kills: s.kills}
	s.dropAfter = 0
	if msg := s.refusal(from, start); msg != "" {
		st.err = &errNotServable{from: from, msg: msg}
	}
	st.parser = replication.NewBinlogParser()
	st.parser.SetFlavor("mariadb")
	st.parser.SetRawMode(true)
	st.parser.SetVerifyChecksum(true)
	st.queue = [][]byte{metaEvent(replication.ROTATE_EVENT, 1), s.fde, metaEvent(replication.MARIADB_GTID_LIST_EVENT, 1)}
	return st, nil
}

// refusal is the message of MariaDB's error 1236 for a stream from position from (start is
// the transaction after it, -1 when not found among the unpurged ones), "" when it is sent
// (sql/sql_repl.cc: check_slave_start_position, gtid_find_binlog_file).
func (s *fakeServer) refusal(from Position, start int) string {
	switch {
	case s.refuse != "":
		return s.refuse
	case start >= 0:
		return ""
	}
	for i := 0; i < s.purged; i++ {
		if s.positionAfter(i).Equal(from) {
			return "Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged."
		}
	}
	cur := s.positionAfter(len(s.txns))
	for _, g := range from {
		if !cur.Includes(g) || !s.has(g) {
			msg := "Error: connecting slave requested to start from GTID " + g.String() + ", which is not in the master's binlog"
			if cur.seqOf(g.Domain) >= g.Seq {
				msg += ". Since the master's binlog contains GTIDs with higher sequence numbers, it probably means that the slave has diverged due to executing extra erroneous transactions"
			}
			return msg
		}
	}
	return "Error: connecting slave requested to start from GTID " + from.String() + ", which is not in the master's binlog"
}

func (s *fakeServer) has(g mariadb.GTID) bool {
	for _, t := range s.txns {
		if t.gtid == g {
			return true
		}
	}
	return false
}

type fakeStream struct {
	t         testing.TB
	srv       *fakeServer
	at        int // next transaction to send
	queue     [][]byte
	err       error
	parser    *replication.BinlogParser
	sent      int
	dropAfter int
	kills     int
	closed    bool
}

var errFakeDropped = errors.New("connection dropped")

func (s *fakeStream) nextRaw(ctx context.Context) ([]byte, error) {
	for {
		if s.err != nil {
			return nil, s.err
		}
		if s.dropAfter > 0 && s.sent >= s.dropAfter {
			return nil, errFakeDropped
		}
		if len(s.queue) > 0 {
			e := s.queue[0]
			s.queue = s.queue[1:]
			s.sent++
			return e, nil
		}
		s.srv.mu.Lock()
		if s.srv.kills != s.kills {
			s.srv.mu.Unlock()
			return nil, errFakeDropped
		}
		if s.at < len(s.srv.txns) {
			s.queue = append(s.queue, s.srv.txns[s.at].events...)
			s.at++
			s.srv.mu.Unlock()
			continue
		}
		changed := s.srv.changed
		s.srv.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		}
	}
}

func (s *fakeStream) next(ctx context.Context) (*replication.BinlogEvent, error) {
	raw, err := s.nextRaw(ctx)
	if err != nil {
		return nil, err
	}
	if replication.EventType(raw[4]) == replication.ROTATE_EVENT {
		// Artificial and without a checksum in a real stream; only its type matters here.
		return &replication.BinlogEvent{RawData: raw, Header: &replication.EventHeader{EventType: replication.ROTATE_EVENT, ServerID: 1, EventSize: uint32(len(raw))}}, nil
	}
	return s.parser.Parse(raw)
}

func (s *fakeStream) close() { s.closed = true }

// buildSegment assembles transactions (each a list of raw events) into a segment after start,
// as the archiver does.
func buildSegment(t testing.TB, start Position, arrived time.Time, txns ...[][]byte) *segment {
	t.Helper()
	return buildSegmentWith(t, fdeBytes(t), start, arrived, txns...)
}

func buildSegmentWith(t testing.TB, fde []byte, start Position, arrived time.Time, txns ...[][]byte) *segment {
	t.Helper()
	raws := [][]byte{fde}
	for _, tx := range txns {
		raws = append(raws, tx...)
	}
	evs := parseEvents(t, raws...)
	fd := evs[0].Event.(*replication.FormatDescriptionEvent)
	enc := encoding{fde: fde, format: formatOf(fd), serverID: evs[0].Header.ServerID}
	asm := assembler{crc: enc.format.crc()}
	seg := newSegment(start)
	for _, ev := range evs[1:] {
		tx, err := asm.add(ev)
		if err != nil {
			t.Fatal(err)
		}
		if tx != nil {
			if err := seg.add(tx, enc, arrived); err != nil {
				t.Fatal(err)
			}
		}
	}
	if asm.inTransaction() {
		t.Fatal("a test transaction has no end")
	}
	return seg
}

// nextWritten is writtenAfter for tests, which never reach the largest writing time.
func nextWritten(now time.Time, latest int64) time.Time {
	w, err := writtenAfter(now, latest)
	if err != nil {
		panic(err)
	}
	return w
}

// latestWritten is the latest writing time (Unix nanoseconds) among the segment keys of objs,
// for tests that trust their store.
func latestWritten(objs []backup.Object) int64 {
	var latest int64
	for _, o := range objs {
		if k, _, ok := parseKey(o.Key); ok && k.written > latest {
			latest = k.written
		}
	}
	return latest
}
