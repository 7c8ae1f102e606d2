//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// archiveSpan is `agent backups --archive --json`.
type archiveSpan struct {
	Segments int               `json:"segments"`
	To       string            `json:"to_gtid"`
	Holes    []json.RawMessage `json:"holes"`
	Rejected int               `json:"rejected"`
}

// archiveSetup is a backup store, an agent configuration with the archive on, and the archive
// run as `agent archive` (killed at the end of the test).
type archiveSetup struct {
	backupSetup
	t   *testing.T
	ctx context.Context
	bin string
	dir string
	cmd *exec.Cmd
}

func newArchiveSetup(t *testing.T, ctx context.Context) *archiveSetup {
	t.Helper()
	a := &archiveSetup{backupSetup: newBackupSetup(t), t: t, ctx: ctx, bin: buildAgent(t), dir: t.TempDir()}
	a.config = filepath.Join(a.dir, "agent.yml")
	os.WriteFile(filepath.Join(a.dir, "s3.secret"), []byte(s3Secret+"\n"), 0o600)
	if err := os.WriteFile(a.config, []byte(fmt.Sprintf(`source: {url: /nonexistent}
compose: {project: %s}
state_dir: %s
alerts: {alertmanager_url: "http://127.0.0.1:%s"}
backup:
  replica: %s
  primary: %s
  manifest_key_file: %s
  s3: {endpoint: %s, bucket: backups, prefix: e2e/, path_style: true, access_key_id: %s, secret_access_key_file: %s}
  archive: {enabled: true, flush_interval: 500ms}
database:
  password_file: %s
  repl_password_file: %s
`, project, filepath.Join(a.dir, "state"), alertmgrPort, c("db_slave"), c("db_master"), a.keyFile, a.endpoint, s3Access,
		filepath.Join(a.dir, "s3.secret"), filepath.Join(st.dir, "secrets/db/agent_password"), filepath.Join(st.dir, "secrets/db/repl_password"))), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if a.cmd != nil {
			a.cmd.Process.Kill()
		}
		if t.Failed() {
			out, _ := os.ReadFile(filepath.Join(a.dir, "archive.log"))
			t.Logf("agent archive log:\n%s", tail(string(out), 40))
		}
	})
	return a
}

// start starts `agent archive` (its log appended to archive.log).
func (a *archiveSetup) start() *exec.Cmd {
	logf, err := os.OpenFile(filepath.Join(a.dir, "archive.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		a.t.Fatal(err)
	}
	cmd := exec.Command(a.bin, "archive", "--config", a.config, "--log-format", "text")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	go func() { cmd.Wait(); logf.Close() }()
	a.cmd = cmd
	return cmd
}

// span is `agent backups --archive --json`.
func (a *archiveSetup) span() archiveSpan {
	a.t.Helper()
	out, err := exec.CommandContext(a.ctx, a.bin, "backups", "--archive", "--json", "--config", a.config).Output()
	var s archiveSpan
	if err != nil || json.Unmarshal(out, &s) != nil {
		a.t.Fatalf("agent backups --archive --json: %v\n%s", err, out)
	}
	return s
}

// following waits until `agent archive` streams the primary's binary log (its log says so).
func (a *archiveSetup) following() {
	a.t.Helper()
	if err := eventually(30*time.Second, 200*time.Millisecond, func() error {
		b, _ := os.ReadFile(filepath.Join(a.dir, "archive.log"))
		if !strings.Contains(string(b), "following the binary log") {
			return fmt.Errorf("agent archive does not follow the primary yet")
		}
		return nil
	}); err != nil {
		a.t.Fatal(err)
	}
}

// caughtUp waits until the archive ends where the primary's binary log does (a second or so
// after its last commit).
func (a *archiveSetup) caughtUp(primary string) archiveSpan {
	a.t.Helper()
	var s archiveSpan
	pos := st.rootSQL(a.t, a.ctx, primary, "SELECT @@GLOBAL.gtid_binlog_pos")
	if err := eventually(30*time.Second, 500*time.Millisecond, func() error {
		if s = a.span(); s.To != pos {
			return fmt.Errorf("the archive ends at %q, the primary %s at %q", s.To, primary, pos)
		}
		return nil
	}); err != nil {
		a.t.Fatal(err)
	}
	return s
}

// testPointInTimeRestore: the binlog archive runs (`agent archive`, killed and started again
// in the middle of the writes); a writer commits rows with their commit times; a table is
// dropped; `agent restore --at` the second before brings back exactly the rows committed up to
// then, on the primary and the replica; `--to-gtid` likewise; a corrupt segment is refused,
// named, before the database is touched.
func testPointInTimeRestore(t *testing.T, ctx context.Context) {
	a := newArchiveSetup(t, ctx)
	b := a.backupSetup
	archiver := a.start()
	caughtUp := func() archiveSpan { t.Helper(); return a.caughtUp("db_master") }

	st.rootSQL(t, ctx, "db_master", "CREATE TABLE app.pitr (id INT PRIMARY KEY AUTO_INCREMENT, v INT, at DATETIME(6)) ENGINE=InnoDB")
	base := b.backup(t, ctx)

	// The writer: 90 rows, one transaction each, about 25 a second, each with its commit time
	// and GTID. The archive is killed after the first third and started again after the second.
	type row struct {
		id       int
		at, done time.Time // the INSERT's start (NOW(6) in it) and a moment after its commit
		gtid     string
	}
	write := func(n int) []row {
		var script strings.Builder
		for i := 0; i < n; i++ {
			script.WriteString("INSERT INTO app.pitr (v, at) VALUES (1, NOW(6)); SELECT LAST_INSERT_ID(), (SELECT at FROM app.pitr WHERE id = LAST_INSERT_ID()), @@last_gtid, NOW(6); DO SLEEP(0.04);\n")
		}
		out := st.rootSQL(t, ctx, "db_master", script.String())
		var rows []row
		for _, line := range strings.Split(out, "\n") {
			f := strings.Split(line, "\t")
			if len(f) != 4 {
				t.Fatalf("writer: %q", line)
			}
			id, _ := strconv.Atoi(f[0])
			at, err := time.ParseInLocation("2006-01-02 15:04:05.000000", f[1], time.UTC)
			done, derr := time.ParseInLocation("2006-01-02 15:04:05.000000", f[3], time.UTC)
			if err != nil || derr != nil {
				t.Fatalf("writer: %q: %v %v", line, err, derr)
			}
			rows = append(rows, row{id, at, done, f[2]})
		}
		return rows
	}
	var rows []row
	rows = append(rows, write(30)...)
	archiver.Process.Kill() // SIGKILL: no chance to store what it holds
	rows = append(rows, write(30)...)
	a.start()
	rows = append(rows, write(30)...)
	s := caughtUp()
	if len(s.Holes) != 0 || s.Rejected != 0 {
		t.Fatalf("after the kill and restart: %d holes, %d rejected segments", len(s.Holes), s.Rejected)
	}
	t.Logf("archive: %d segments up to %s", s.Segments, s.To)

	// The damage, a second after the last row.
	time.Sleep(1100 * time.Millisecond)
	st.rootSQL(t, ctx, "db_master", "DROP TABLE app.pitr")
	caughtUp()

	// The point: the last whole second before the 60th row's second (the server's clock is
	// the host's). Expected: every row committed at or before it.
	// A row whose statement began in the stop's second but whose commit (fsync, the replica's
	// acknowledgement) reached the next was not committed by then, and the archive dates it
	// by its commit: such a second is ambiguous for this check, so an earlier one is taken.
	stop := rows[59].at.Truncate(time.Second).Add(-time.Second)
	straddles := func(stop time.Time) bool {
		for _, r := range rows {
			if !r.at.Truncate(time.Second).After(stop) && r.done.Truncate(time.Second).After(stop) {
				return true
			}
		}
		return false
	}
	for i := 0; i < 3 && straddles(stop); i++ {
		stop = stop.Add(-time.Second)
	}
	var want []int
	for _, r := range rows {
		if !r.at.Truncate(time.Second).After(stop) {
			want = append(want, r.id)
		}
	}
	if len(want) < 20 || len(want) >= len(rows) {
		t.Fatalf("the stop %s selects %d of %d rows: the writer's pace is off", stop, len(want), len(rows))
	}
	check := func(what string, want []int) {
		t.Helper()
		wantLine := fmt.Sprintf("%d\t%d", len(want), want[len(want)-1])
		for _, svc := range []string{"db_master", "db_slave"} {
			if got := st.rootSQL(t, ctx, svc, "SELECT COUNT(*), MAX(id) FROM app.pitr"); got != wantLine {
				t.Errorf("%s: %s has %q rows (count, max id), want %q", what, svc, got, wantLine)
			}
		}
		m, r := st.rootSQL(t, ctx, "db_master", "CHECKSUM TABLE app.pitr EXTENDED"), st.rootSQL(t, ctx, "db_slave", "CHECKSUM TABLE app.pitr EXTENDED")
		if m != r {
			t.Errorf("%s: checksums differ: db_master %q, db_slave %q", what, m, r)
		}
	}
	at := stop.Format(time.RFC3339)
	out, err := b.agent(t, ctx, "restore", "--at", at, "--dry-run")
	if err != nil || !strings.Contains(out, base.ID) || !strings.Contains(out, "transactions after") {
		t.Fatalf("restore --at %s --dry-run: %v\n%s", at, err, out)
	}
	out, err = b.agent(t, ctx, "restore", "--at", at, "--yes")
	if err != nil || !strings.Contains(out, "replayed from the binlog archive") {
		t.Fatalf("restore --at %s: %v\n%s", at, err, out)
	}
	t.Logf("restore --at %s: %s", at, grepLines(out, "restored "))
	check("restore --at "+at, want)

	// To a GTID: up to and including the 45th row.
	out, err = b.agent(t, ctx, "restore", "--to-gtid", rows[44].gtid, "--yes")
	if err != nil {
		t.Fatalf("restore --to-gtid %s: %v\n%s", rows[44].gtid, err, out)
	}
	ids := make([]int, 45)
	for i := range ids {
		ids[i] = rows[i].id
	}
	check("restore --to-gtid "+rows[44].gtid, ids)

	// A corrupt segment is refused, named, before anything is touched.
	caughtUp()
	before := st.rootSQL(t, ctx, "db_master", "SELECT COUNT(*) FROM app.pitr")
	segs, _ := filepath.Glob(b.objectPath("binlog/*.binlog.zst"))
	if len(segs) < 2 {
		t.Fatalf("%d segment objects in the store", len(segs))
	}
	// The one with the first row: every restore after the backup reads it. Its name is
	// <start>-<end>-<written>, the positions as sequence numbers (one replication domain).
	first, _ := strconv.ParseUint(rows[0].gtid[strings.LastIndex(rows[0].gtid, "-")+1:], 10, 64)
	var victim string
	for _, f := range segs {
		var start, end, written uint64
		if n, _ := fmt.Sscanf(filepath.Base(f), "%d-%d-%d", &start, &end, &written); n == 3 && start < first && first <= end {
			victim = f
		}
	}
	if victim == "" {
		t.Fatalf("no segment holds %s: %v", rows[0].gtid, segs)
	}
	data, _ := os.ReadFile(victim)
	os.WriteFile(victim, flipByte(data, len(data)/2), 0o644)
	out, err = b.agent(t, ctx, "restore", "--at", at, "--yes")
	key := strings.TrimSuffix(filepath.Base(victim), ".binlog.zst")
	if err == nil || !strings.Contains(out, key) || !strings.Contains(out, "nothing was touched") {
		t.Errorf("restore with a corrupt segment %s: %v\n%s", key, err, out)
	}
	if got := st.rootSQL(t, ctx, "db_master", "SELECT COUNT(*) FROM app.pitr"); got != before {
		t.Errorf("a refused restore changed app.pitr: %s rows, %s before", got, before)
	}
	st.rootSQL(t, ctx, "db_master", "DROP TABLE IF EXISTS app.pitr")
}

// testArchiveAcrossFailover: the archive runs while writers load the page and the primary is
// killed; the watch fails over; the archive follows the new primary by GTID. Then a restore of
// the backup taken before, replayed to the new primary's last transaction into a fresh
// container, holds exactly what the new primary holds: nothing was lost from the archive, and
// nothing it has is foreign to the database.
func testArchiveAcrossFailover(t *testing.T, ctx context.Context) {
	w := startDBWatch(t)
	if rep := w.waitSettled(t, ctx, 2*time.Minute); rep.primary() != "db_master" {
		t.Fatalf("before the fault the primary is %s, want db_master", rep.primary())
	}
	defer w.restorePair(t, ctx)
	a := newArchiveSetup(t, ctx)
	base := a.backup(t, ctx)
	a.start()
	// Nothing is committed after the backup yet, so the archive is empty: wait for it to follow.
	a.following()

	lctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wr writers
	wwg := wr.run(lctx, 2)
	time.Sleep(3 * time.Second)
	kill := dbFaults()[0] // killed: the fault that can leave an unacknowledged write behind
	kill.inject(t, ctx, "db_master")
	if err := eventually(30*time.Second, 200*time.Millisecond, func() error {
		r, err := w.status(ctx)
		if err != nil {
			return err
		}
		if p := r.primary(); p != "db_slave" {
			return fmt.Errorf("the primary is %s", p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // writes on the new primary
	stopLoad()
	wwg.Wait()
	rep, reseeded := w.settleOrReseed(t, ctx, "db_master", kill.mayDiverge)
	s := a.caughtUp(rep.primary())
	if len(s.Holes) != 0 || s.Rejected != 0 {
		t.Errorf("after the failover the archive has %d holes and %d rejected segments", len(s.Holes), s.Rejected)
	}
	last := s.To[strings.LastIndex(s.To, ",")+1:]
	out, err := a.agent(t, ctx, "restore", "--target", "new", "--to-gtid", last, "--yes", "--json")
	if err != nil {
		t.Fatalf("restore --target new --to-gtid %s: %v\n%s", last, err, out)
	}
	var r struct {
		Target   string `json:"target"`
		Replayed string `json:"replayed"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &r); err != nil {
		t.Fatalf("restore --json: %v\n%s", err, out)
	}
	defer exec.Command("docker", "rm", "-fv", r.Target).Run()
	sum := func(container string) string {
		out, err := st.run(ctx, "docker", "exec", container, "sh", "-c",
			`mariadb -N -B -e "SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS('|', id, server, client))), 0) FROM app.visits"`)
		if err != nil {
			t.Fatalf("%s: %v", container, err)
		}
		return strings.TrimSpace(out)
	}
	primary := strings.TrimSpace(st.rootSQL(t, ctx, rep.primary(), "SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS('|', id, server, client))), 0) FROM app.visits"))
	if got := sum(r.Target); got != primary {
		t.Errorf("the backup %s plus the archive up to %s holds app.visits (rows, checksum) %s; the new primary %s holds %s", base.ID, last, got, rep.primary(), primary)
	}
	t.Logf("failover under load (%d writes acknowledged, old primary re-seeded: %v): backup %s + archive to %s = the new primary's app.visits (%s); %s",
		len(wr.acked), reseeded, base.ID, last, primary, r.Replayed)

	// db_master the primary again, as the later steps expect.
	if out, err := w.cli(ctx, "switchover"); err != nil {
		t.Fatalf("agent db switchover: %v\n%s", err, out)
	}
	w.waitSettled(t, ctx, 2*time.Minute)
}
