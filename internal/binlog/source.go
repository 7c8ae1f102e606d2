package binlog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// source is the database as the archiver reads it: a fake in tests, go-mysql otherwise.
type source interface {
	// open starts following addr's binary log after position from.
	open(ctx context.Context, addr string, from Position) (eventStream, error)
	// position returns addr's @@gtid_binlog_pos.
	position(ctx context.Context, addr string) (Position, error)
}

// eventStream is one replication connection.
type eventStream interface {
	next(ctx context.Context) (*replication.BinlogEvent, error)
	close()
}

// errNotServable is the server's refusal to send its binary log from the position asked
// (MariaDB error 1236 before the first transaction); refusalOf says why.
type errNotServable struct {
	from Position
	msg  string
}

func (e *errNotServable) Error() string {
	return fmt.Sprintf("the server cannot send its binary log from %s: %s", e.from, e.msg)
}

// refusal is why a server refused to send its binary log from a position.
type refusal int

const (
	refusalOther    refusal = iota // anything else (binary log not open, ...): retried as any error
	refusalPurged                  // the position is in its history, its binary logs from there are purged
	refusalDiverged                // the position is not in its history
)

// refusalOf reads the message of a MariaDB error 1236, as MariaDB's sql/sql_repl.cc words it
// (check_slave_start_position, gtid_find_binlog_file, init_binlog_sender, send_event_to_slave).
func refusalOf(msg string) refusal {
	switch {
	case strings.Contains(msg, "required binlog files have been purged"),
		strings.Contains(msg, "Could not find first log file name in binary log index file"):
		return refusalPurged
	case strings.Contains(msg, "which is not in the master's binlog"), // the GTID's server never logged it
		strings.Contains(msg, "The binlog on the master is missing the GTID"): // in a hole, strict mode
		return refusalDiverged
	}
	return refusalOther
}

// mysqlSource follows a MariaDB server with go-mysql's BinlogSyncer, by GTID, as a replica
// would (without semi-synchronous acknowledgements: a commit never waits for the archive).
type mysqlSource struct {
	user, password string
	serverID       uint32
	tls            *tls.Config
	heartbeat      time.Duration
	readTimeout    time.Duration
	log            *slog.Logger
}

func (s *mysqlSource) open(ctx context.Context, addr string, from Position) (eventStream, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("database address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("database address %q: bad port", addr)
	}
	d := &dialer{timeout: s.readTimeout}
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: s.serverID, Flavor: mysql.MariaDBFlavor, Host: host, Port: uint16(port),
		User: s.user, Password: s.password, TLSConfig: s.tls,
		// Events are archived as received: only the Format_description event is decoded by
		// the syncer; the archiver decodes GTID and query events itself, with go-mysql's types.
		RawModeEnabled: true, VerifyChecksum: true,
		// The archiver reconnects itself, asking for the primary's address each time.
		DisableRetrySync: true,
		HeartbeatPeriod:  s.heartbeat, ReadTimeout: s.readTimeout,
		// Annotate-rows events name the statement that changed the rows: kept in the archive.
		DumpCommandFlag: replication.BINLOG_SEND_ANNOTATE_ROWS_EVENT,
		Dialer:          d.dial,
		Logger:          slog.New(quiet{s.log.Handler()}),
		EventCacheCount: 1024,
	})
	set, err := mysql.ParseMariadbGTIDSet(from.String())
	if err != nil {
		return nil, fmt.Errorf("GTID position %s: %w", from, err)
	}
	st, err := syncer.StartSyncGTID(set)
	if err != nil {
		d.closed.Store(true)
		syncer.Close()
		return nil, fmt.Errorf("start replication from %s at %s: %w", addr, from, err)
	}
	return &syncerStream{syncer: syncer, st: st, dialer: d, from: from}, nil
}

func (s *mysqlSource) position(ctx context.Context, addr string) (Position, error) {
	d := &dialer{timeout: s.readTimeout}
	c, err := client.ConnectWithDialer(ctx, "tcp", addr, s.user, s.password, "", d.dial, func(c *client.Conn) error {
		c.SetTLSConfig(s.tls)
		c.ReadTimeout = s.readTimeout
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	defer c.Close()
	r, err := c.Execute("SELECT @@GLOBAL.gtid_binlog_pos")
	if err != nil {
		return nil, fmt.Errorf("read @@gtid_binlog_pos of %s: %w", addr, err)
	}
	text, err := r.GetString(0, 0)
	if err != nil {
		return nil, fmt.Errorf("read @@gtid_binlog_pos of %s: %w", addr, err)
	}
	return ParsePosition(text)
}

type syncerStream struct {
	syncer *replication.BinlogSyncer
	st     *replication.BinlogStreamer
	dialer *dialer
	from   Position
	begun  bool // a transaction was received
}

// next returns the next event. An error 1236 before the first transaction is a refusal of the
// start position: the server sends its Rotate and Format_description events before it finds,
// in the binary log, that the GTID asked for is missing (in GTID strict mode).
func (s *syncerStream) next(ctx context.Context) (*replication.BinlogEvent, error) {
	ev, err := s.st.GetEvent(ctx)
	var myErr *mysql.MyError
	if err != nil && !s.begun && errors.As(err, &myErr) && myErr.Code == mysql.ER_MASTER_FATAL_ERROR_READING_BINLOG {
		return nil, &errNotServable{from: s.from, msg: myErr.Message}
	}
	if err == nil && ev.Header.EventType == replication.MARIADB_GTID_EVENT {
		s.begun = true
	}
	return ev, err
}

// close ends the connection at once. BinlogSyncer.Close would open a new connection to KILL the
// old one, which waits for a frozen server; the dialer refuses that, and the server ends the
// dump thread itself (and when a replica with the same server id registers again).
func (s *syncerStream) close() {
	s.dialer.closed.Store(true)
	s.syncer.Close()
}

// dialer bounds connecting by a timeout and refuses once the stream is closed.
type dialer struct {
	timeout time.Duration
	closed  atomic.Bool
}

var errStreamClosed = errors.New("binlog stream closed")

func (d *dialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.closed.Load() {
		return nil, errStreamClosed
	}
	nd := net.Dialer{Timeout: d.timeout}
	return nd.DialContext(ctx, network, addr)
}

// quiet passes on go-mysql's warnings and errors only: its information lines (every connection,
// rotation and closing) would drown the agent's own.
type quiet struct{ slog.Handler }

func (q quiet) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && q.Handler.Enabled(ctx, l)
}

func (q quiet) WithAttrs(attrs []slog.Attr) slog.Handler { return quiet{q.Handler.WithAttrs(attrs)} }
func (q quiet) WithGroup(name string) slog.Handler       { return quiet{q.Handler.WithGroup(name)} }
