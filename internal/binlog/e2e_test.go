//go:build e2e

package binlog

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	_ "github.com/go-sql-driver/mysql"

	"github.com/hastack/hastack/internal/backup"
)

// The archive against a real MariaDB 11.8 (the stack's image): archive while rows are written,
// kill and restart the archiver mid-way, read the archive back to a time and to a GTID into
// fresh servers through mariadb-binlog, and compare rows; a corrupt segment is refused. It
// also measures the archive's lag under about 500 writes a second.
//
//	go test -count=1 -tags e2e -run TestArchiveEndToEnd -v ./internal/binlog/
func TestArchiveEndToEnd(t *testing.T) {
	requireImage(t)
	ctx := context.Background()
	src, db := startSource(t, "src")

	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	keys := testKeys(t)
	st := newMemStore()
	var (
		mu     sync.Mutex
		stored []storedSegment
	)
	opts := Options{
		Address: func(context.Context) (string, error) { return src.addr, nil },
		User:    "arch", Password: "arch",
		Store: st, Recipients: []age.Recipient{id.Recipient()}, Keys: keys,
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		OnProblem: func(p Problem) { t.Errorf("problem: %+v", p) },
		OnSegment: func(m Manifest) {
			mu.Lock()
			stored = append(stored, storedSegment{first: m.First().Seq, last: m.Last().Seq, at: time.Now()})
			mu.Unlock()
		},
	}
	run := func() (*Archiver, func()) {
		a, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { a.Run(ctx); close(done) }()
		var once sync.Once
		stop := func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop) // before the containers' removal: cleanups run last first
		return a, stop
	}
	// The archive starts empty, at the server's empty position: it holds the schema too.
	a, stop := run()
	waitFor(t, "the archiver to connect", func() bool { return a.Stats().Connected })
	src.sql(t, "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(64), n INT)")
	w := &writer{db: db}

	// Kill the archiver while rows are being written (150 a second), start it again a second
	// later.
	written := make(chan struct{})
	go func() { w.rows(t, 1, 600, 150, 8); close(written) }()
	time.Sleep(1700 * time.Millisecond)
	killedAt := a.Stats()
	stop()
	time.Sleep(time.Second)
	a, stop = run()
	<-written
	caughtUp(t, a, src)
	t.Logf("archiver killed at %s with %d transactions received and not stored; restarted", killedAt.End, killedAt.Pending)

	// Batch X, all committed by second T; other kinds of transactions among them.
	sleepToSecond(200 * time.Millisecond)
	w.rows(t, 601, 630, 0, 8)
	src.sql(t, "UPDATE app.t SET n = n + 1 WHERE id <= 10; DELETE FROM app.t WHERE id BETWEEN 11 AND 15;"+
		"BEGIN; INSERT INTO app.t VALUES (631, 'multi', 1), (632, 'multi', 2); UPDATE app.t SET v = 'multi!' WHERE id = 631; COMMIT;"+
		"ALTER TABLE app.t ADD COLUMN note VARCHAR(20) DEFAULT 'x'")
	at := time.Now().Truncate(time.Second)
	lastX := 632
	time.Sleep(time.Until(at.Add(2100 * time.Millisecond)))
	// Batch Y: after T, one connection (GTIDs in the order of the rows); the GTID stop is one
	// of them.
	w.rows(t, 633, 660, 0, 1)
	stopRow := 645
	stopGTID, err := ParseGTID(w.gtid(stopRow))
	if err != nil {
		t.Fatal(err)
	}

	// The lag under about 500 writes a second for 10 s.
	mu.Lock()
	stored = nil
	mu.Unlock()
	start := time.Now()
	w.rows(t, 1001, 6000, 500, 8)
	rate := 5000 / time.Since(start).Seconds()
	caughtUp(t, a, src)

	// A frozen primary is noticed within seconds; the archive resumes when it thaws.
	if out, err := exec.Command("docker", "pause", src.name).CombinedOutput(); err != nil {
		t.Fatalf("docker pause: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "unpause", src.name).Run() }) // if the test stops while it is paused
	paused := time.Now()
	for a.Stats().Connected && time.Since(paused) < 15*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	noticed := time.Since(paused)
	if a.Stats().Connected {
		t.Fatalf("a frozen server not noticed in %s", noticed)
	}
	time.Sleep(2 * time.Second)
	if out, err := exec.Command("docker", "unpause", src.name).CombinedOutput(); err != nil {
		t.Fatalf("docker unpause: %v %s", err, out)
	}
	w.rows(t, 6001, 6010, 0, 1)
	caughtUp(t, a, src)
	t.Logf("a frozen server was noticed after %s; archiving resumed %s after it thawed", noticed.Round(100*time.Millisecond), time.Since(paused.Add(noticed+2*time.Second)).Round(100*time.Millisecond))
	stop()
	mu.Lock()
	lags := w.lags(stored, 1001, 6000)
	mu.Unlock()
	t.Logf("lag, commit to segment stored, %d writes at %.0f/s: p50 %s, p99 %s, max %s", len(lags), rate, percentile(lags, 50), percentile(lags, 99), percentile(lags, 100))

	// The whole archive: one chain, every transaction once.
	c, err := List(ctx, st, ListOptions{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	end := pos(src.sql(t, "SELECT @@gtid_binlog_pos"))
	if len(c.Holes) != 0 || len(c.Superseded) != 0 || !c.End().Equal(end) {
		t.Fatalf("chain: holes %v, superseded %d, end %s (server at %s)", c.Holes, len(c.Superseded), c.End(), end)
	}
	for _, r := range c.Rejected {
		if !strings.Contains(r.Problem, "no manifest") {
			t.Fatalf("rejected %s: %s", r.Key, r.Problem)
		}
	}
	var all bytes.Buffer
	ro := ReplayOptions{Objects: st, Identities: []age.Identity{id}}
	if _, err := WriteStream(ctx, &all, c, ro); err != nil {
		t.Fatal(err)
	}
	gtids, _ := streamGTIDs(t, all.Bytes())
	for i, g := range gtids {
		if want := fmt.Sprintf("0-1-%d", i+1); g != want {
			t.Fatalf("transaction %d of the archive is %s, want %s: a gap or a duplicate", i, g, want)
		}
	}
	if uint64(len(gtids)) != end[0].Seq {
		t.Fatalf("%d transactions archived, the server has %d", len(gtids), end[0].Seq)
	}
	t.Logf("archive: %d segments, %d transactions, %d rejected (incomplete), every GTID once", len(c.Segments), len(gtids), len(c.Rejected))

	// mariadb-binlog reads a segment as it is stored, checksums verified.
	seg := c.Segments[len(c.Segments)/2]
	plain, err := OpenSegment(ctx, st, seg, ro.Identities)
	if err != nil {
		t.Fatal(err)
	}
	out, stderr := src.pipe(t, plain, "mariadb-binlog --verify-binlog-checksum -")
	if n := strings.Count(out, "GTID 0-1-"); n != int(seg.Manifest.Transactions) || stderr != "" {
		t.Fatalf("mariadb-binlog read %d of %d transactions of %s; stderr %q", n, seg.Manifest.Transactions, seg.Key, stderr)
	}

	// Replay to T, and to a GTID, into fresh servers.
	want := func(maxID int) string {
		return src.sql(t, fmt.Sprintf("SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS('|', id, v, n))), 0) FROM app.t WHERE id <= %d", maxID))
	}
	for _, tc := range []struct {
		name  string
		stop  Stop
		maxID int
	}{
		{"time", Stop{Time: at}, lastX},
		{"gtid", Stop{GTID: stopGTID}, stopRow},
	} {
		dst := startServer(t, "dst-"+tc.name, 3)
		ro := ro
		ro.Stop = tc.stop
		pr, pw := io.Pipe()
		var sel Selection
		go func() {
			var err error
			sel, err = WriteStream(ctx, pw, c, ro)
			pw.CloseWithError(err)
		}()
		dst.pipeFrom(t, pr, "set -o pipefail; mariadb-binlog - | mariadb")
		got := dst.sql(t, "SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS('|', id, v, n))), 0) FROM app.t")
		if w := want(tc.maxID); got != w {
			t.Errorf("replay to %s: the restored table has (rows, checksum) %s, the source had %s up to row %d", tc.stop, got, w, tc.maxID)
		}
		t.Logf("replay to %s: %d transactions (%s to %s, committed %s to %s), rows and checksum %s as the source's up to row %d",
			tc.stop, sel.Transactions, sel.FirstGTID, sel.LastGTID, sel.FirstTime.Format(time.TimeOnly), sel.LastTime.Format(time.TimeOnly), got, tc.maxID)
	}

	// A corrupt segment is refused before anything is written, by name.
	st.corrupt(dataKey(seg.Key, true))
	var none bytes.Buffer
	_, err = WriteStream(ctx, &none, c, ro)
	if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), seg.Key) || none.Len() != 0 {
		t.Fatalf("a corrupt segment: %v, %d bytes written", err, none.Len())
	}
	t.Logf("corrupt segment refused: %v", err)
}

type storedSegment struct {
	first, last uint64
	at          time.Time
}

// writer writes rows and remembers each one's GTID and commit instant.
type writer struct {
	db    *sql.DB
	mu    sync.Mutex
	gtids map[int]string
	at    map[int]time.Time
}

// rows inserts rows from..to, each its own transaction, perSecond of them a second (0: as fast
// as conns connections go).
func (w *writer) rows(t *testing.T, from, to, perSecond, conns int) {
	t.Helper()
	w.mu.Lock()
	if w.gtids == nil {
		w.gtids, w.at = map[int]string{}, map[int]time.Time{}
	}
	w.mu.Unlock()
	ids := make(chan int)
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := w.db.Conn(context.Background())
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			for id := range ids {
				if _, err := conn.ExecContext(context.Background(), "INSERT INTO app.t (id, v, n) VALUES (?, ?, ?)", id, fmt.Sprintf("row %d", id), id%7); err != nil {
					errs <- err
					return
				}
				done := time.Now()
				var g string
				if err := conn.QueryRowContext(context.Background(), "SELECT @@last_gtid").Scan(&g); err != nil {
					errs <- err
					return
				}
				w.mu.Lock()
				w.gtids[id], w.at[id] = g, done
				w.mu.Unlock()
			}
		}()
	}
	start := time.Now()
	for id := from; id <= to; id++ {
		if perSecond > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(id-from) * time.Second / time.Duration(perSecond))))
		}
		select {
		case ids <- id:
		case err := <-errs:
			t.Fatalf("write row %d: %v", id, err)
		}
	}
	close(ids)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("write rows: %v", err)
	default:
	}
}

func (w *writer) gtid(id int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gtids[id]
}

// lags are, for rows from..to, the time from their commit to their segment being stored.
func (w *writer) lags(stored []storedSegment, from, to int) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var lags []time.Duration
	for id := from; id <= to; id++ {
		g, err := ParseGTID(w.gtids[id])
		if err != nil {
			continue
		}
		for _, s := range stored {
			if g.Seq >= s.first && g.Seq <= s.last {
				lags = append(lags, s.at.Sub(w.at[id]))
				break
			}
		}
	}
	return lags
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))].Round(time.Millisecond)
}

func caughtUp(t *testing.T, a *Archiver, s *server) {
	t.Helper()
	want := s.sql(t, "SELECT @@gtid_binlog_pos")
	deadline := time.Now().Add(30 * time.Second)
	for a.Stats().End.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("the archive is at %s, the server at %s", a.Stats().End, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sleepToSecond(after time.Duration) {
	next := time.Now().Truncate(time.Second).Add(time.Second + after)
	time.Sleep(time.Until(next))
}

// startSource starts the server the archive follows, with its accounts: arch (REPLICATION
// SLAVE, the archiver's) and w (the writers'), and a pool of the writers' connections.
func startSource(t *testing.T, role string) (*server, *sql.DB) {
	t.Helper()
	src := startServer(t, role, 1)
	src.sql(t, "SET sql_log_bin=0; CREATE USER arch@'%' IDENTIFIED BY 'arch'; GRANT REPLICATION SLAVE ON *.* TO arch@'%';"+
		"CREATE USER w@'%' IDENTIFIED BY 'w'; GRANT ALL ON *.* TO w@'%'")
	db, err := sql.Open("mysql", "w:w@tcp("+src.addr+")/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(16)
	return src, db
}

// server is a MariaDB container of the stack's image.
type server struct {
	name, addr string
}

func requireImage(t *testing.T) {
	if exec.Command("docker", "image", "inspect", "hastack/mariadb").Run() == nil {
		return
	}
	if out, err := exec.Command("docker", "build", "-q", "-t", "hastack/mariadb", "../../stack/mariadb").CombinedOutput(); err != nil {
		t.Fatalf("build hastack/mariadb (run scripts/bootstrap first): %v\n%s", err, out)
	}
}

func startServer(t *testing.T, role string, serverID int) *server {
	t.Helper()
	name := fmt.Sprintf("binlog-e2e-%s-%d", role, time.Now().UnixNano())
	cmd := fmt.Sprintf("mariadb-install-db --auth-root-authentication-method=normal >/dev/null && "+
		"exec mariadbd --log-bin --binlog-format=ROW --server-id=%d --gtid-strict-mode=ON", serverID)
	if out, err := exec.Command("docker", "run", "-d", "--name", name, "-p", "127.0.0.1::3306", "--entrypoint", "sh", "hastack/mariadb", "-c", cmd).CombinedOutput(); err != nil {
		t.Fatalf("start %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	deadline := time.Now().Add(time.Minute)
	for exec.Command("docker", "exec", name, "mariadb-admin", "ping").Run() != nil {
		if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "logs", name).CombinedOutput()
			t.Fatalf("%s did not start:\n%s", name, logs)
		}
		time.Sleep(300 * time.Millisecond)
	}
	out, err := exec.Command("docker", "port", name, "3306/tcp").Output()
	if err != nil {
		t.Fatalf("port of %s: %v", name, err)
	}
	return &server{name: name, addr: strings.TrimSpace(strings.Split(string(out), "\n")[0])}
}

func (s *server) sql(t *testing.T, q string) string {
	t.Helper()
	out, err := exec.Command("docker", "exec", s.name, "mariadb", "-N", "-B", "-e", q).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", s.name, q, err, out)
	}
	return strings.TrimSpace(string(out))
}

// pipe runs a shell command in the container with in as its standard input.
func (s *server) pipe(t *testing.T, in []byte, command string) (stdout, stderr string) {
	t.Helper()
	return s.pipeFrom(t, bytes.NewReader(in), command)
}

func (s *server) pipeFrom(t *testing.T, in io.Reader, command string) (string, string) {
	t.Helper()
	cmd := exec.Command("docker", "exec", "-i", s.name, "bash", "-c", command)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %s: %v\n%s", s.name, command, err, errOut.String())
	}
	return out.String(), errOut.String()
}
