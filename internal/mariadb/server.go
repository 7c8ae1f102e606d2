package mariadb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Status is what a server says about itself in one probe.
type Status struct {
	ReadOnly      bool
	BinlogPos     GTIDList // @@gtid_binlog_pos: the last transaction logged, per domain
	BinlogState   GTIDList // @@gtid_binlog_state: the last per domain and server
	CurrentPos    GTIDList // @@gtid_current_pos: the last applied or logged
	SemiSyncOn    bool     // Rpl_semi_sync_master_status: commits wait for a replica now
	SemiSyncSlave bool     // Rpl_semi_sync_slave_status: this replica acknowledges
	Replica       *ReplicaStatus
}

// ReplicaStatus is the useful part of SHOW SLAVE STATUS; nil in Status when the server has no
// replication configured.
type ReplicaStatus struct {
	MasterHost   string
	IORunning    string // "Yes", "No" or "Connecting"
	SQLRunning   string
	IOPos        GTIDList // Gtid_IO_Pos: received from the primary
	LagSeconds   int64    // Seconds_Behind_Master; -1 when NULL
	LastIOErrno  int
	LastIOError  string
	LastSQLError string
}

// Replicating tells whether both threads run and receive from host.
func (r *ReplicaStatus) Replicating(host string) bool {
	return r != nil && r.MasterHost == host && r.IORunning == "Yes" && r.SQLRunning == "Yes"
}

// Server is one MariaDB server reached over TCP with an account that may administer
// replication (READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, SLAVE
// MONITOR, BINLOG MONITOR, RELOAD) and reads no data.
type Server struct {
	Addr  string  // host, port 3306
	db    *sql.DB // probes: every read bounded by the probe timeout
	admin *sql.DB // actions: STOP SLAVE may wait a second or more for a dead primary
}

// ActionTimeout bounds the I/O of one administrative statement (a promotion's STOP SLAVE waits
// for the dead primary's connection, rpl_semi_sync_slave_kill_conn_timeout).
const ActionTimeout = 10 * time.Second

func init() {
	// The driver logs connection errors on its own; they are returned, wrapped, to the caller.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
}

// Open prepares a Server; it connects on first use. A probe's I/O (connect, read, write) is
// bounded by probeTimeout, so a hung server costs at most that; an action's by ActionTimeout.
func Open(addr, user, password string, probeTimeout time.Duration) (*Server, error) {
	open := func(timeout time.Duration) (*sql.DB, error) {
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd = user, password
		cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(addr, "3306")
		cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = min(timeout, probeTimeout), timeout, timeout
		cfg.InterpolateParams = true
		connector, err := mysql.NewConnector(cfg)
		if err != nil {
			return nil, fmt.Errorf("mariadb %s: %w", addr, err)
		}
		db := sql.OpenDB(connector)
		db.SetMaxOpenConns(2)
		db.SetMaxIdleConns(2)
		db.SetConnMaxLifetime(time.Minute)
		db.SetConnMaxIdleTime(5 * time.Second)
		return db, nil
	}
	db, err := open(probeTimeout)
	if err != nil {
		return nil, err
	}
	admin, err := open(ActionTimeout)
	if err != nil {
		return nil, err
	}
	return &Server{Addr: addr, db: db, admin: admin}, nil
}

// Close closes the connections.
func (s *Server) Close() error { return errors.Join(s.db.Close(), s.admin.Close()) }

// Status probes the server.
func (s *Server) Status(ctx context.Context) (Status, error) {
	var st Status
	var ro int
	var binPos, binState, curPos string
	err := s.db.QueryRowContext(ctx, "SELECT @@read_only, @@gtid_binlog_pos, @@gtid_binlog_state, @@gtid_current_pos").
		Scan(&ro, &binPos, &binState, &curPos)
	if err != nil {
		return st, s.wrap("read its state", err)
	}
	st.ReadOnly = ro != 0
	if st.BinlogPos, err = ParseGTIDList(binPos); err != nil {
		return st, s.wrap("parse @@gtid_binlog_pos", err)
	}
	if st.BinlogState, err = ParseGTIDList(binState); err != nil {
		return st, s.wrap("parse @@gtid_binlog_state", err)
	}
	if st.CurrentPos, err = ParseGTIDList(curPos); err != nil {
		return st, s.wrap("parse @@gtid_current_pos", err)
	}
	vars, err := s.rows(ctx, "SHOW GLOBAL STATUS WHERE Variable_name IN ('Rpl_semi_sync_master_status', 'Rpl_semi_sync_slave_status')")
	if err != nil {
		return st, s.wrap("read the semi-sync status", err)
	}
	for _, v := range vars {
		on := v["Value"] == "ON"
		switch v["Variable_name"] {
		case "Rpl_semi_sync_master_status":
			st.SemiSyncOn = on
		case "Rpl_semi_sync_slave_status":
			st.SemiSyncSlave = on
		}
	}
	repl, err := s.rows(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return st, s.wrap("SHOW SLAVE STATUS", err)
	}
	if len(repl) > 0 {
		if st.Replica, err = parseSlaveStatus(repl[0]); err != nil {
			return st, s.wrap("parse SHOW SLAVE STATUS", err)
		}
	}
	return st, nil
}

// parseSlaveStatus reads the columns of one SHOW SLAVE STATUS row.
func parseSlaveStatus(row map[string]string) (*ReplicaStatus, error) {
	r := &ReplicaStatus{
		MasterHost:   row["Master_Host"],
		IORunning:    row["Slave_IO_Running"],
		SQLRunning:   row["Slave_SQL_Running"],
		LagSeconds:   -1,
		LastIOError:  row["Last_IO_Error"],
		LastSQLError: row["Last_SQL_Error"],
	}
	var err error
	if r.IOPos, err = ParseGTIDList(row["Gtid_IO_Pos"]); err != nil {
		return nil, fmt.Errorf("Gtid_IO_Pos: %w", err)
	}
	if v := row["Seconds_Behind_Master"]; v != "" && v != "NULL" {
		if r.LagSeconds, err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, fmt.Errorf("Seconds_Behind_Master %q: %w", v, err)
		}
	}
	if v := row["Last_IO_Errno"]; v != "" {
		if r.LastIOErrno, err = strconv.Atoi(v); err != nil {
			return nil, fmt.Errorf("Last_IO_Errno %q: %w", v, err)
		}
	}
	return r, nil
}

// SetReadOnly sets read_only; turning it on waits for the commits in progress.
func (s *Server) SetReadOnly(ctx context.Context, on bool) error {
	v := "OFF"
	if on {
		v = "ON"
	}
	return s.exec(ctx, "set read_only="+v, "SET GLOBAL read_only = "+v)
}

// Promote makes a replica the primary: it applies everything it has received (waiting at most
// applyTimeout), stops applying, and accepts writes with semi-synchronous commits; then it stops
// receiving and forgets its primary. It must only be called once the old primary is fenced (or,
// in a switchover, read-only and fully received): nothing more can arrive, so the position
// received is final. Stopping the receiving thread comes last because it waits for the thread's
// connect-retry sleep or its connection to an unreachable primary (measured: 1 s, and 2.3 s for
// a primary cut off), which writes need not wait for. An error after the server accepts writes
// is returned as *LeftoverError: it is the primary then, and ForgetPrimary finishes the job.
func (s *Server) Promote(ctx context.Context, applyTimeout time.Duration) error {
	st, err := s.Status(ctx)
	if err != nil {
		return err
	}
	if st.Replica != nil && len(st.Replica.IOPos) > 0 {
		if st.Replica.SQLRunning != "Yes" {
			// A promotion interrupted after it stopped applying: apply the rest first.
			if err := s.exec(ctx, "apply again", "START SLAVE SQL_THREAD"); err != nil {
				return err
			}
		}
		if err := s.WaitApplied(ctx, st.Replica.IOPos, applyTimeout); err != nil {
			return fmt.Errorf("apply the relay log before the promotion: %w", err)
		}
	}
	for _, step := range []struct{ what, q string }{
		{"stop applying", "STOP SLAVE SQL_THREAD"},
		{"turn semi-sync on", "SET GLOBAL rpl_semi_sync_master_enabled = ON"},
		{"accept writes", "SET GLOBAL read_only = OFF"},
	} {
		if err := s.exec(ctx, step.what, step.q); err != nil {
			return err
		}
	}
	if err := s.ForgetPrimary(ctx); err != nil {
		return &LeftoverError{Err: err}
	}
	return nil
}

// LeftoverError is a promotion that made the server writable but could not clear its old
// replication (ForgetPrimary).
type LeftoverError struct{ Err error }

func (e *LeftoverError) Error() string {
	return "promoted, but its old replication is not cleared yet: " + e.Err.Error()
}

func (e *LeftoverError) Unwrap() error { return e.Err }

// ForgetPrimary stops replication and forgets the primary it replicated from (a primary's
// leftover of its promotion).
func (s *Server) ForgetPrimary(ctx context.Context) error {
	for _, step := range []struct{ what, q string }{
		{"stop replication", "STOP SLAVE"},
		{"forget the old primary", "RESET SLAVE ALL"},
	} {
		if err := s.exec(ctx, step.what, step.q); err != nil {
			return err
		}
	}
	return nil
}

// ErrNotApplied is returned by WaitApplied when the server did not reach the position in time.
var ErrNotApplied = errors.New("position not applied in time")

// WaitApplied waits until the server has applied pos, at most timeout, in steps shorter than
// the connection's read timeout.
func (s *Server) WaitApplied(ctx context.Context, pos GTIDList, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		step := min(time.Until(deadline), 500*time.Millisecond)
		if step <= 0 {
			return fmt.Errorf("mariadb %s: %s: %w", s.Addr, pos, ErrNotApplied)
		}
		var r sql.NullInt64
		err := s.admin.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, ?)", pos.String(), step.Seconds()).Scan(&r)
		if err != nil {
			return s.wrap("wait for "+pos.String(), err)
		}
		if r.Valid && r.Int64 == 0 {
			return nil
		}
	}
}

// ReplicateFrom makes the server a read-only replica of primary by GTID (its own last
// transactions, @@gtid_current_pos, are where it starts), acknowledging semi-synchronously.
func (s *Server) ReplicateFrom(ctx context.Context, primary, user, password string) error {
	for _, step := range []struct{ what, q string }{
		{"turn read-only", "SET GLOBAL read_only = ON"},
		{"turn the primary side of semi-sync off", "SET GLOBAL rpl_semi_sync_master_enabled = OFF"},
		{"stop replication", "STOP SLAVE"},
		{"point at " + primary, fmt.Sprintf("CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = 3306, MASTER_USER = %s, MASTER_PASSWORD = %s, MASTER_USE_GTID = current_pos, MASTER_CONNECT_RETRY = 1",
			quote(primary), quote(user), quote(password))},
		{"start replication", "START SLAVE"},
	} {
		if err := s.exec(ctx, step.what, step.q); err != nil {
			return err
		}
	}
	return nil
}

// RestartSemiSync turns the primary side of semi-synchronous replication off and on again. It
// frees a binlog dump thread that MariaDB 11.8 can leave hanging ("Waiting to finalize
// termination") after a replica's connection broke, which keeps the replica from connecting
// again (measured: a replica cut from the network and reconnected).
func (s *Server) RestartSemiSync(ctx context.Context) error {
	if err := s.exec(ctx, "turn semi-sync off", "SET GLOBAL rpl_semi_sync_master_enabled = OFF"); err != nil {
		return err
	}
	return s.exec(ctx, "turn semi-sync on", "SET GLOBAL rpl_semi_sync_master_enabled = ON")
}

// StopReplication stops the replica's threads (a quarantined server replicates nothing).
func (s *Server) StopReplication(ctx context.Context) error {
	return s.exec(ctx, "stop replication", "STOP SLAVE")
}

// quote is a single-quoted SQL string literal (CHANGE MASTER takes no placeholders).
func quote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`).Replace(v) + "'"
}

// exec runs an administrative statement. Each is idempotent, so one that failed on a pooled
// connection the server had closed (it restarted) is sent once more on a new one.
func (s *Server) exec(ctx context.Context, what, q string) error {
	_, err := s.admin.ExecContext(ctx, q)
	if errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, driver.ErrBadConn) {
		_, err = s.admin.ExecContext(ctx, q)
	}
	if err != nil {
		return s.wrap(what, err)
	}
	return nil
}

func (s *Server) rows(ctx context.Context, q string) ([]map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []map[string]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make(map[string]string, len(cols))
		for i, c := range cols {
			if vals[i].Valid {
				row[c] = vals[i].String
			} else {
				row[c] = "NULL"
			}
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// Error is a failed statement; Refused tells that the server answered (with an error), as
// opposed to not answering at all.
type Error struct {
	Addr, What string
	Err        error
}

func (e *Error) Error() string { return fmt.Sprintf("mariadb %s: %s: %v", e.Addr, e.What, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Answered tells whether the server sent an answer (a MySQL error) rather than nothing: a
// server that refuses a statement is alive.
func (e *Error) Answered() bool {
	var me *mysql.MySQLError
	return errors.As(e.Err, &me)
}

func (s *Server) wrap(what string, err error) error {
	return &Error{Addr: s.Addr, What: what, Err: err}
}

// Answered tells whether err (from a Server) means the server answered with an error.
func Answered(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Answered()
}
