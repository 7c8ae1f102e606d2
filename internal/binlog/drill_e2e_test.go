//go:build e2e

package binlog

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/docker"
	"github.com/hastack/hastack/internal/mariadb"
)

// A point-in-time restore drill against real MariaDB 11.8 (the stack's image): a dump taken
// while rows are written, then inserts, deletes, updates, a multi-table transaction, one DDL and
// a foreign key's cascade and a trigger, archived; backup.Drill restores the dump into a fresh server, replays
// the archive up to a second through mariadb-binlog (ApplyBinlog) and checks every table against
// what the archive says: the dump's rows plus the rows written minus those deleted, and the
// digests. The result is compared with the source as it was at that second; a replay that
// changes a value behind the archive's back fails the drill by its digest.
//
//	go test -count=1 -tags e2e -run TestDrillEndToEnd -v ./internal/binlog/
func TestDrillEndToEnd(t *testing.T) {
	requireImage(t)
	ctx := context.Background()
	src := startServer(t, "drill-src", 1)
	// mariadb-install-db's accounts at the container's host name stop mariadb-dump --system=users.
	for _, account := range strings.Fields(src.sql(t, "SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.user WHERE Host = @@hostname")) {
		src.sql(t, "SET sql_log_bin=0; DROP USER "+account)
	}
	src.sql(t, "SET sql_log_bin=0; CREATE USER arch@'%' IDENTIFIED BY 'arch'; GRANT REPLICATION SLAVE ON *.* TO arch@'%';"+
		"CREATE USER w@'%' IDENTIFIED BY 'w'; GRANT ALL ON *.* TO w@'%'")
	src.sql(t, "CREATE DATABASE app;"+
		"CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(64), n TINYINT UNSIGNED, b BLOB, c CHAR(5));"+
		"CREATE TABLE app.u (id BIGINT UNSIGNED PRIMARY KEY, s SMALLINT, m MEDIUMINT, txt TEXT CHARACTER SET utf8mb4);"+
		"CREATE TABLE app.d (id INT PRIMARY KEY, at DATETIME);"+
		"CREATE TABLE app.x (id INT PRIMARY KEY);"+
		"CREATE TABLE app.parent (id INT PRIMARY KEY);"+
		"CREATE TABLE app.child (id INT PRIMARY KEY, p INT, FOREIGN KEY (p) REFERENCES app.parent (id) ON DELETE CASCADE);"+
		"INSERT INTO app.t (id, v, n, c) WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 200) SELECT i, CONCAT('row ', i), i % 7, 'c' FROM s;"+
		"INSERT INTO app.u (id, s, m, txt) WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 50) SELECT i, -i, i * 1000, REPEAT('ü', i) FROM s;"+
		"INSERT INTO app.d WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20) SELECT i, '2026-12-01 10:00:00' + INTERVAL i MINUTE FROM s;"+
		"INSERT INTO app.x VALUES (1), (2), (3);"+
		"INSERT INTO app.parent VALUES (1), (2), (3), (4), (5);"+
		"INSERT INTO app.child WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20) SELECT i, i % 5 + 1 FROM s;"+
		// The trigger's rows are logged as row events; replayed, they must not run it again.
		"CREATE TABLE app.audit (id INT AUTO_INCREMENT PRIMARY KEY, tid INT);"+
		"CREATE TRIGGER app.t_audit AFTER INSERT ON app.t FOR EACH ROW INSERT INTO app.audit (tid) VALUES (NEW.id)")
	db, err := sql.Open("mysql", "w:w@tcp("+src.addr+")/")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// The archive, from the server's position now.
	st, keys := newMemStore(), testKeys(t)
	a, err := New(Options{Address: func(context.Context) (string, error) { return src.addr, nil }, User: "arch", Password: "arch", Store: st, Keys: keys,
		OnProblem: func(p Problem) { t.Errorf("problem: %+v", p) }})
	if err != nil {
		t.Fatal(err)
	}
	actx, stopArchiver := context.WithCancel(ctx)
	archived := make(chan struct{})
	go func() { a.Run(actx); close(archived) }()
	stop := func() { stopArchiver(); <-archived }
	t.Cleanup(stop)
	waitFor(t, "the archiver to connect", func() bool { return a.Stats().Connected })

	// The dump, taken while rows are written (100 a second): some are in it, the rest replayed.
	w := &writer{db: db}
	writing := make(chan struct{})
	go func() { w.rows(t, 1001, 1200, 100, 2); close(writing) }()
	time.Sleep(500 * time.Millisecond)
	m, err := backup.Run(ctx, backup.Options{Primary: src.name}, drillE2EDocker{}, st)
	if err != nil {
		t.Fatal(err)
	}
	<-writing
	t.Logf("backup %s at GTID %s: %d rows of app.t", m.ID, m.GTID, m.Tables[backup.TableName{Database: "app", Table: "t"}].Rows)

	// Up to second T: inserts, deletes, updates, a multi-table transaction, a DDL, a cascade.
	sleepToSecond(200 * time.Millisecond)
	src.sql(t, "INSERT INTO app.t VALUES (2001, 'x1', 1, X'00FF', NULL), (2002, 'x2', 255, NULL, 'ab'), (2003, '', 0, '', 'abc  ');"+
		"DELETE FROM app.t WHERE id BETWEEN 10 AND 19;"+
		"UPDATE app.t SET v = CONCAT(v, '!'), n = n + 1 WHERE id % 5 = 0;"+
		"INSERT INTO app.u VALUES (18446744073709551615, -32768, -8388608, 'ünïcödé 🙂'), (77, NULL, 8388607, NULL);"+
		"UPDATE app.u SET txt = CONCAT(IFNULL(txt, ''), ' ✓'), s = -1 WHERE id < 20;"+
		"DELETE FROM app.u WHERE id = 3;"+
		"INSERT INTO app.d VALUES (100, NOW()), (101, NULL); DELETE FROM app.d WHERE id < 5;"+
		"BEGIN; INSERT INTO app.t (id, v) VALUES (2004, 'multi'); INSERT INTO app.u VALUES (88, 1, 1, 'multi'); DELETE FROM app.d WHERE id = 10; COMMIT;"+
		"ALTER TABLE app.x ADD COLUMN note VARCHAR(20) DEFAULT 'x'; INSERT INTO app.x (id) VALUES (100);"+
		"DELETE FROM app.parent WHERE id = 1")
	at := time.Now().Truncate(time.Second)
	tables := []string{"t", "u", "d", "x", "parent", "child", "audit"}
	truth := map[string]string{}
	for _, tb := range tables {
		truth[tb] = drillE2ESum(t, src, tb)
	}
	time.Sleep(time.Until(at.Add(2100 * time.Millisecond)))
	// After T: not replayed.
	src.sql(t, "INSERT INTO app.t (id, v) VALUES (3001, 'late'), (3002, 'late'); DELETE FROM app.u WHERE id = 77; UPDATE app.t SET v = 'late' WHERE id < 50")
	caughtUp(t, a, src)
	stop()
	c, err := List(ctx, st, ListOptions{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}

	engine, err := docker.New()
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	from, err := ParsePosition(m.GTID)
	if err != nil {
		t.Fatal(err)
	}
	drill := func(name string, apply func(s mariadb.ContainerServer) func(context.Context, io.Reader) error) (backup.DrillReport, *server, error) {
		s := startServer(t, name, 9)
		target := mariadb.ContainerServer{Engine: engine, Container: s.name}
		rep, err := backup.Drill(ctx, backup.DrillOptions{Backup: m, Auth: backup.Authenticity{Status: backup.AuthUnsigned}, AllowUnsigned: true,
			Reader: st, Scratch: target, Replay: DrillReplay(c, ReplayOptions{From: from, Objects: st}, at, apply(target))})
		return rep, s, err
	}

	rep, scratch, err := drill("drill-scratch", func(s mariadb.ContainerServer) func(context.Context, io.Reader) error { return s.ApplyBinlog })
	if err != nil {
		t.Fatal(err)
	}
	p := rep.PointInTime
	t.Logf("drill to %s: %d transactions (%s .. %s), %d segments, %d bytes, stream SHA-256 %s", at.Format(time.TimeOnly), p.Transactions, p.FirstGTID, p.LastGTID,
		p.Segments, p.Bytes, p.StreamSHA256)
	got := map[string]DrillTableE2E{}
	for _, tb := range p.Tables {
		got[tb.Table] = DrillTableE2E(tb)
		t.Logf("  %-12s dump %4d  +%3d  -%3d  updated %3d  = %4d rows  digest: %s", tb.Table, tb.DumpRows, tb.Written, tb.Deleted, tb.Updated, tb.Rows, tb.Digest)
	}
	for _, u := range p.Unknown {
		t.Logf("  not checked: %s: %s", u.Table, u.Why)
	}
	// Every table as the source had it at T, checked or not.
	for _, tb := range tables {
		if s := drillE2ESum(t, scratch, tb); s != truth[tb] {
			t.Errorf("app.%s restored to T: (rows, checksum) %s; the source had %s", tb, s, truth[tb])
		}
	}
	// The archive's counts: the dump's rows plus its deltas are the source's rows at T.
	for _, tb := range []string{"t", "u", "d", "parent", "audit"} {
		g := got["app."+tb]
		if rows := strings.Fields(truth[tb])[0]; fmt.Sprint(g.DumpRows+g.Written-g.Deleted) != rows || fmt.Sprint(g.Rows) != rows {
			t.Errorf("app.%s: dump %d + %d - %d, restored %d; the source had %s rows", tb, g.DumpRows, g.Written, g.Deleted, g.Rows, rows)
		}
	}
	if got["app.t"].Digest != "checked" || got["app.u"].Digest != "checked" || got["app.audit"].Digest != "checked" ||
		!strings.Contains(got["app.d"].Digest, "DATETIME") || p.Digests != 4 {
		t.Errorf("digests: t %q, u %q, d %q, %d checked", got["app.t"].Digest, got["app.u"].Digest, got["app.d"].Digest, p.Digests)
	}
	unknown := map[string]string{}
	for _, u := range p.Unknown {
		unknown[u.Table] = u.Why
	}
	if !strings.Contains(unknown["app.x"], "ALTER TABLE app.x") || !strings.Contains(unknown["app.child"], "ON DELETE CASCADE from app.parent") || len(unknown) != 2 {
		t.Errorf("unknown tables: %v", unknown)
	}

	// A replay that changes a value the archive does not have: the rows match, the digest does not.
	_, _, err = drill("drill-tampered", func(s mariadb.ContainerServer) func(context.Context, io.Reader) error {
		return func(ctx context.Context, r io.Reader) error {
			if err := s.ApplyBinlog(ctx, r); err != nil {
				return err
			}
			_, err := s.Query(ctx, "UPDATE app.u SET txt = 'tampered' WHERE id = 88")
			return err
		}
	})
	if err == nil || !strings.Contains(err.Error(), "app.u: digest") {
		t.Fatalf("a tampered replay: %v", err)
	}
	t.Logf("a tampered replay fails: %v", err)
}

// DrillTableE2E is backup.DrillTable, by another name for the map.
type DrillTableE2E backup.DrillTable

// drillE2ESum is a table's rows and a checksum of them, as "rows checksum".
func drillE2ESum(t *testing.T, s *server, table string) string {
	t.Helper()
	cols := s.sql(t, "SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = '"+table+"'")
	return strings.Join(strings.Fields(s.sql(t, fmt.Sprintf("SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS('|', %s))), 0) FROM app.%s", cols, table))), " ")
}

// drillE2EDocker runs the dump with docker exec (backup.Database).
type drillE2EDocker struct{}

func (drillE2EDocker) Ready(ctx context.Context, container string) (bool, error) { return false, nil } // only the replica is asked

func (drillE2EDocker) StartDump(ctx context.Context, container string, cmd []string) (backup.Dump, error) {
	c := exec.CommandContext(ctx, "docker", append([]string{"exec", container}, cmd...)...)
	d := &drillE2EDump{cmd: c}
	c.Stderr = &d.stderr
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	d.out = out
	return d, nil
}

type drillE2EDump struct {
	cmd    *exec.Cmd
	out    io.ReadCloser
	stderr strings.Builder
}

func (d *drillE2EDump) Output() io.Reader { return d.out }
func (d *drillE2EDump) Stop()             { d.out.Close() }
func (d *drillE2EDump) Wait(ctx context.Context) error {
	if err := d.cmd.Wait(); err != nil {
		return fmt.Errorf("%w: %s", err, d.stderr.String())
	}
	return nil
}
