//go:build e2e

package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/hastack/hastack/internal/loadgen"
)

// dbWatch is `agent db watch` on the stack under test, with its own state directory and
// configuration; its alerts go to the test stack's own Alertmanager.
type dbWatch struct {
	bin, cfg string
	cmd      *exec.Cmd
	log      string
}

func startDBWatch(t *testing.T) *dbWatch {
	t.Helper()
	dir := t.TempDir()
	w := &dbWatch{bin: buildAgent(t), cfg: filepath.Join(dir, "agent.yml"), log: filepath.Join(dir, "watch.log")}
	cfg := fmt.Sprintf(`source:
  url: %s
compose:
  project: %s
state_dir: %s
work_dir: %s
alerts:
  alertmanager_url: http://127.0.0.1:%s
database:
  failover: auto
  password_file: %s
  repl_password_file: %s
`, filepath.Join(dir, "no-repository"), project, filepath.Join(dir, "state"), filepath.Join(dir, "releases"), alertmgrPort,
		filepath.Join(st.dir, "secrets/db/agent_password"), filepath.Join(st.dir, "secrets/db/repl_password"))
	if err := os.WriteFile(w.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(w.log)
	if err != nil {
		t.Fatal(err)
	}
	w.cmd = exec.Command(w.bin, "db", "watch", "--config", w.cfg, "--log-format", "text")
	w.cmd.Stdout, w.cmd.Stderr = logf, logf
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { w.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			w.cmd.Process.Kill()
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(w.log)
			t.Logf("agent db watch log:\n%s", tail(string(b), 60))
		}
	})
	return w
}

// cli runs `agent db ARGS --config ...`.
func (w *dbWatch) cli(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, w.bin, append(append([]string{"db"}, args...), "--config", w.cfg)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type dbServer struct {
	Service    string `json:"service"`
	Role       string `json:"role"`
	Up         bool   `json:"up"`
	ReadOnly   bool   `json:"read_only"`
	SemiSync   bool   `json:"semi_sync_active"`
	IO         string `json:"replica_io_running"`
	SQL        string `json:"replica_sql_running"`
	LagSeconds *int64 `json:"lag_seconds"`
}

type dbReport struct {
	Servers []dbServer `json:"servers"`
}

func (w *dbWatch) status(ctx context.Context) (dbReport, error) {
	var rep dbReport
	out, err := w.cli(ctx, "status", "--json")
	if err != nil {
		return rep, fmt.Errorf("agent db status: %v: %s", err, out)
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rep); err != nil {
		return rep, fmt.Errorf("agent db status --json: %v: %s", err, out)
	}
	return rep, nil
}

// primary returns the service the agent names the primary.
func (r dbReport) primary() string {
	for _, s := range r.Servers {
		if s.Role == "primary" {
			return s.Service
		}
	}
	return ""
}

// settled tells whether the pair is whole: the primary writable with semi-sync, the other a
// replica in sync.
func (r dbReport) settled() error {
	if len(r.Servers) != 2 {
		return fmt.Errorf("%d servers", len(r.Servers))
	}
	p, q := r.Servers[0], r.Servers[1]
	switch {
	case p.Role != "primary" || !p.Up || p.ReadOnly || !p.SemiSync:
		return fmt.Errorf("primary %s: up %v read-only %v semi-sync %v", p.Service, p.Up, p.ReadOnly, p.SemiSync)
	case q.Role != "replica" || !q.Up || !q.ReadOnly || q.IO != "Yes" || q.SQL != "Yes" || q.LagSeconds == nil || *q.LagSeconds != 0:
		return fmt.Errorf("replica %s: role %s up %v read-only %v IO %q SQL %q", q.Service, q.Role, q.Up, q.ReadOnly, q.IO, q.SQL)
	}
	return nil
}

func (w *dbWatch) waitSettled(t *testing.T, ctx context.Context, timeout time.Duration) dbReport {
	t.Helper()
	var rep dbReport
	if err := eventually(timeout, 500*time.Millisecond, func() error {
		var err error
		if rep, err = w.status(ctx); err != nil {
			return err
		}
		return rep.settled()
	}); err != nil {
		t.Fatalf("the database pair did not settle: %v", err)
	}
	return rep
}

// restorePair, after a failure, makes the pair what the later steps expect (db_master the
// primary, db_slave its replica) as an operator would, so that one failure does not fail them
// all: a quarantined server is re-seeded, and the roles are switched back.
func (w *dbWatch) restorePair(t *testing.T, ctx context.Context) {
	if !t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	rep, err := w.status(ctx)
	if err != nil {
		t.Logf("restoring the pair: %v", err)
		return
	}
	for _, s := range rep.Servers {
		if s.Role == "quarantined" {
			out, err := w.cli(ctx, "reseed", s.Service)
			t.Logf("restoring the pair: agent db reseed %s: %v\n%s", s.Service, err, out)
		}
	}
	if err := eventually(2*time.Minute, time.Second, func() error {
		if rep, err = w.status(ctx); err != nil {
			return err
		}
		return rep.settled()
	}); err != nil {
		t.Logf("restoring the pair: %v", err)
		return
	}
	if rep.primary() != "db_master" {
		out, err := w.cli(ctx, "switchover")
		t.Logf("restoring the pair: agent db switchover: %v\n%s", err, out)
	}
}

// settleOrReseed waits for the pair to settle after a fault of the primary old. When old comes
// back quarantined (its history diverged) and the fault can cause that, it is re-seeded the way
// the operator is told to (agent db reseed); otherwise quarantine is a failure.
func (w *dbWatch) settleOrReseed(t *testing.T, ctx context.Context, old string, mayDiverge bool) (dbReport, bool) {
	t.Helper()
	var rep dbReport
	quarantined := false
	if err := eventually(2*time.Minute, 500*time.Millisecond, func() error {
		var err error
		if rep, err = w.status(ctx); err != nil {
			return err
		}
		for _, s := range rep.Servers {
			if s.Service == old && s.Role == "quarantined" {
				quarantined = true
				return nil
			}
		}
		return rep.settled()
	}); err != nil {
		t.Fatalf("the database pair did not settle: %v", err)
	}
	if !quarantined {
		return rep, false
	}
	if !mayDiverge {
		t.Fatalf("%s came back diverged and was quarantined: this fault must not lose its history", old)
	}
	t.Logf("%s committed a write in flight that its replica never received (semi-sync fell back while it was cut off): quarantined; re-seeding it", old)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if out, err := w.cli(rctx, "reseed", old); err != nil {
		t.Fatalf("agent db reseed %s: %v\n%s", old, err, out)
	}
	return w.waitSettled(t, ctx, time.Minute), true
}

// writers record visits through the page (2 s per request, no retry) and remember every
// acknowledged visit id: an acknowledged write must survive any failover.
type writers struct {
	mu       sync.Mutex
	acked    []int64
	failures []time.Time // when each failed write ended
	okSent   []time.Time // when each acknowledged write was sent
	okDone   []time.Time // and when it was acknowledged
}

func (wr *writers) run(ctx context.Context, n int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			client := httpsClient(loadgen.DefaultTimeout)
			for ctx.Err() == nil {
				sent := time.Now()
				id, err := writeVisit(ctx, client)
				if ctx.Err() != nil {
					return
				}
				wr.mu.Lock()
				if err != nil {
					wr.failures = append(wr.failures, time.Now())
				} else {
					wr.acked = append(wr.acked, id)
					wr.okSent = append(wr.okSent, sent)
					wr.okDone = append(wr.okDone, time.Now())
				}
				wr.mu.Unlock()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	return &wg
}

func writeVisit(ctx context.Context, client *http.Client) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, siteURL("/?format=json"), nil)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var p pageResult
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return 0, err
	}
	if resp.StatusCode != 200 || p.VisitID == 0 {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return p.VisitID, nil
}

// writesBack is how long after t writes were accepted again: the first write sent after the
// last failure since t was acknowledged then (0: no write failed since t). ok is false while no
// write sent after the last failure has been acknowledged yet.
func (wr *writers) writesBack(t time.Time) (time.Duration, bool) {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	last := time.Time{}
	for _, f := range wr.failures {
		if f.After(t) && f.After(last) {
			last = f
		}
	}
	if last.IsZero() {
		return 0, true
	}
	for i, sent := range wr.okSent {
		if !sent.Before(last) {
			return wr.okDone[i].Sub(t), true
		}
	}
	return 0, false
}

func (wr *writers) failuresBetween(a, b time.Time) int {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	n := 0
	for _, f := range wr.failures {
		if !f.Before(a) && !f.After(b) {
			n++
		}
	}
	return n
}

// missingOn returns the acknowledged visit ids that the service's database does not have.
func (wr *writers) missingOn(t *testing.T, ctx context.Context, service string) []int64 {
	wr.mu.Lock()
	acked := slices.Clone(wr.acked)
	wr.mu.Unlock()
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged at all")
	}
	slices.Sort(acked)
	out := st.rootSQL(t, ctx, service, fmt.Sprintf("SELECT id FROM app.visits WHERE id >= %d", acked[0]))
	have := map[int64]bool{}
	for _, l := range strings.Fields(out) {
		id, _ := strconv.ParseInt(l, 10, 64)
		have[id] = true
	}
	var missing []int64
	for _, id := range acked {
		if !have[id] {
			missing = append(missing, id)
		}
	}
	return missing
}

// writableSampler asks both servers directly (the agent's account, from the host) whether they
// take writes, every 100 ms, 300 ms per question, independently of the agent's own view: the
// fencing must never let both take writes at once. A round asks A, B, then A again, and counts
// both writable only if all three answers say so (A demoted and B promoted between two
// questions is a clean handover, not two writable servers).
type writableSampler struct {
	mu     sync.Mutex
	rounds int
	both   []time.Time
}

func sampleWritable(ctx context.Context, t *testing.T) (*writableSampler, *sync.WaitGroup) {
	t.Helper()
	pw := st.secret(t, "db/agent_password")
	var dbs []*sql.DB
	for _, ip := range []string{dataNetPrefix + ".21", dataNetPrefix + ".22"} {
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = "agent", pw, "tcp", ip+":3306"
		cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
		connector, err := mysql.NewConnector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(connector)
		db.SetMaxOpenConns(1)
		dbs = append(dbs, db)
	}
	writable := func(db *sql.DB) bool {
		qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		var ro int
		return db.QueryRowContext(qctx, "SELECT @@read_only").Scan(&ro) == nil && ro == 0
	}
	s := &writableSampler{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			for _, db := range dbs {
				db.Close()
			}
		}()
		for i := 0; ctx.Err() == nil && i < 20000; i++ {
			a, b := dbs[i%2], dbs[1-i%2]
			at := time.Now()
			both := writable(a) && writable(b) && writable(a)
			s.mu.Lock()
			s.rounds++
			if both {
				s.both = append(s.both, at)
			}
			s.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return s, &wg
}

type dbFault struct {
	name   string
	inject func(t *testing.T, ctx context.Context, service string)
	// heal brings the old primary back where the fault needs a hand (a cable plugged back in);
	// the agent starts a server it fenced by itself.
	heal func(t *testing.T, ctx context.Context, service string)
	// mayDiverge: the old primary can come back with a transaction the replica never received,
	// and is then quarantined (and re-seeded here). A primary cut from the network commits a
	// write in flight after semi-sync's 150 ms without an acknowledgement (its client, cut off
	// too, never hears of it). A killed one may be restarted by Docker as the primary before the
	// watch has rewritten the roles file, and then commits the write it had prepared. A frozen
	// one cannot: the watch kills it and it starts as a replica, which drops what it had
	// prepared (the entrypoint's --init-rpl-role=SLAVE); a stopped one shuts down cleanly.
	mayDiverge bool
}

// frozenPid is the mariadbd that the SIGSTOP fault froze, for its heal.
var frozenPid string

func dbFaults() []dbFault {
	docker := func(args ...string) func(t *testing.T, ctx context.Context, service string) {
		return func(t *testing.T, ctx context.Context, service string) {
			if _, err := st.run(ctx, "docker", append(args, c(service))...); err != nil {
				t.Fatal(err)
			}
		}
	}
	return []dbFault{
		{"killed (SIGKILL from the host; Docker restarts it)", func(t *testing.T, ctx context.Context, service string) {
			pid, err := st.run(ctx, "docker", "inspect", "-f", "{{.State.Pid}}", c(service))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.run(ctx, "kill", "-9", strings.TrimSpace(pid)); err != nil {
				t.Fatal(err)
			}
		}, nil, true},
		{"stopped", docker("stop"), nil, false},
		{"hung (docker pause)", docker("pause"), nil, false},
		// The server process alone frozen, the container running: its healthcheck and docker exec
		// still work, unlike docker pause. The fence kills the container; CONT is for the case
		// where it did not.
		{"mysqld frozen (SIGSTOP; the container keeps running)", func(t *testing.T, ctx context.Context, service string) {
			pid, err := st.run(ctx, "docker", "inspect", "-f", "{{.State.Pid}}", c(service))
			if err != nil {
				t.Fatal(err)
			}
			if comm, _ := os.ReadFile("/proc/" + strings.TrimSpace(pid) + "/comm"); strings.TrimSpace(string(comm)) != "mariadbd" {
				t.Fatalf("the container's process %s is %q, not mariadbd", strings.TrimSpace(pid), strings.TrimSpace(string(comm)))
			}
			frozenPid = strings.TrimSpace(pid)
			if _, err := st.run(ctx, "kill", "-STOP", frozenPid); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, ctx context.Context, service string) {
			st.run(ctx, "kill", "-CONT", frozenPid) // gone once the fence killed the container
		}, false},
		{"cut from the data network", docker("network", "disconnect", project+"_data"),
			func(t *testing.T, ctx context.Context, service string) {
				ip := dataNetPrefix + ".21"
				if service == "db_slave" {
					ip = dataNetPrefix + ".22"
				}
				if _, err := st.run(ctx, "docker", "network", "connect", "--ip", ip, project+"_data", c(service)); err != nil {
					t.Fatal(err)
				}
			}, true},
	}
}

// The primary fails under load in each way a process fails; the agent's watch promotes the
// replica (RPO 0: no acknowledged write lost), fences the old primary, which comes back as a
// replica; reads never fail; writes come back within seconds. Then a planned switchover under
// the same load brings db_master back as the primary.
func testPrimaryFailover(t *testing.T, ctx context.Context) {
	w := startDBWatch(t)
	rep := w.waitSettled(t, ctx, 2*time.Minute)
	if rep.primary() != "db_master" {
		t.Fatalf("before the faults the primary is %s, want db_master", rep.primary())
	}
	defer w.restorePair(t, ctx)
	type row struct {
		fault, old               string
		reads, readFails         int
		writesBack               time.Duration
		lostAcked                int
		reseeded                 bool
		switchPause, switchFails string
	}
	var rows []row
	for _, f := range dbFaults() {
		ok := t.Run(f.name, func(t *testing.T) {
			rep := w.waitSettled(t, ctx, 2*time.Minute)
			old := rep.primary()
			lctx, stopLoad := context.WithCancel(ctx)
			defer stopLoad()
			var wr writers
			wwg := wr.run(lctx, 2)
			sampler, swg := sampleWritable(lctx, t)
			readsDone := make(chan *loadgen.Result, 1)
			go func() {
				r, err := loadgen.Run(lctx, loadgen.Options{URL: siteURL("/?format=json&write=0"), Concurrency: 50, Duration: 5 * time.Minute,
					Client: httpsClient(loadgen.DefaultTimeout), Timeout: loadgen.DefaultTimeout})
				if err != nil {
					t.Error(err)
				}
				readsDone <- r
			}()
			time.Sleep(3 * time.Second)
			injected := time.Now()
			f.inject(t, ctx, old)
			// The agent promotes the other server.
			if err := eventually(30*time.Second, 200*time.Millisecond, func() error {
				r, err := w.status(ctx)
				if err != nil {
					return err
				}
				if p := r.primary(); p == old {
					return fmt.Errorf("the primary is still %s", p)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			// Writes must flow again for 3 s in a row before the outage is measured.
			time.Sleep(3 * time.Second)
			var writesBack time.Duration
			if err := eventually(20*time.Second, 100*time.Millisecond, func() error {
				back, ok := wr.writesBack(injected)
				if !ok || wr.failuresBetween(time.Now().Add(-3*time.Second), time.Now()) > 0 {
					return fmt.Errorf("writes still fail")
				}
				writesBack = back
				return nil
			}); err != nil {
				t.Error(err)
			}
			if f.heal != nil {
				f.heal(t, ctx, old)
			}
			// The old primary rejoins as a replica by itself, in sync (or, where the fault can
			// make it diverge, is quarantined and re-seeded).
			rep, reseeded := w.settleOrReseed(t, ctx, old, f.mayDiverge)
			stopLoad()
			wwg.Wait()
			swg.Wait()
			reads := <-readsDone
			lost := wr.missingOn(t, ctx, rep.primary())
			t.Logf("%s: both servers asked %d times whether they take writes; both did %d times", f.name, sampler.rounds, len(sampler.both))
			if sampler.rounds < 50 {
				t.Errorf("the writable sampler asked only %d times", sampler.rounds)
			}
			for i, at := range sampler.both {
				if i < 5 {
					t.Errorf("both servers took writes at +%v (split brain)", at.Sub(injected).Round(time.Millisecond))
				}
			}
			rows = append(rows, row{fault: f.name, old: old, reads: reads.Requests, readFails: len(reads.Failures),
				writesBack: writesBack, lostAcked: len(lost), reseeded: reseeded})
			t.Logf("%s: %s failed over to %s; writes back after %v; reads %d, failed %d; acknowledged writes %d, lost %d",
				f.name, old, rep.primary(), writesBack.Round(10*time.Millisecond), reads.Requests, len(reads.Failures), len(wr.acked), len(lost))
			if len(lost) > 0 {
				t.Errorf("%d acknowledged writes are not on the new primary (RPO 0 broken): %v", len(lost), lost[:min(len(lost), 10)])
			}
			for i, fl := range reads.Failures {
				if i < 5 {
					t.Logf("failed read at +%v: %s", fl.At.Sub(injected).Round(time.Millisecond), fl.Err)
				}
			}
			// Reads never fail, not even at the promotion instant.
			if len(reads.Failures) > 0 {
				t.Errorf("%d of %d reads failed, want 0", len(reads.Failures), reads.Requests)
			}
			// RTO target 5 s (docs/benchmarks.md has the measured values: 1.2 to 4.9 s since
			// the promotion accepts writes first); asserted with 3 s of room for a loaded machine.
			if writesBack > 8*time.Second {
				t.Errorf("writes came back %v after the fault, want within 8 s (target 5 s)", writesBack)
			}
			// The seed's check on the replica that is now db_master or db_slave.
			replica := "db_slave"
			if rep.primary() == "db_slave" {
				replica = "db_master"
			}
			s := slaveStatusOf(t, ctx, replica)
			if s["Slave_IO_Running"] != "Yes" || s["Slave_SQL_Running"] != "Yes" || s["Seconds_Behind_Master"] != "0" {
				t.Errorf("SHOW SLAVE STATUS on %s: IO %s SQL %s lag %s", replica, s["Slave_IO_Running"], s["Slave_SQL_Running"], s["Seconds_Behind_Master"])
			}
		})
		if !ok {
			break
		}
	}
	// The failover alert reached the test stack's Alertmanager.
	if err := eventually(30*time.Second, time.Second, func() error {
		var got []json.RawMessage
		if err := getJSON("http://127.0.0.1:"+alertmgrPort+"/api/v2/alerts?filter=alertname%3D%22DatabaseFailover%22", &got); err != nil {
			return err
		}
		if len(got) == 0 {
			return fmt.Errorf("no DatabaseFailover alert in Alertmanager")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	// Planned switchovers under the same load, there and back (ending with db_master the
	// primary, as the later steps expect): writes pause, none fails, none is lost.
	rep = w.waitSettled(t, ctx, 2*time.Minute)
	for i := 0; i < 2 || rep.primary() != "db_master"; i++ {
		if i == 3 {
			t.Fatalf("after 3 switchovers the primary is %s, want db_master", rep.primary())
		}
		from := rep.primary()
		lctx, stopLoad := context.WithCancel(ctx)
		var wr writers
		wwg := wr.run(lctx, 2)
		sampler, swg := sampleWritable(lctx, t)
		time.Sleep(2 * time.Second)
		start := time.Now()
		out, err := w.cli(ctx, "switchover")
		end := time.Now()
		time.Sleep(2 * time.Second)
		stopLoad()
		wwg.Wait()
		swg.Wait()
		if len(sampler.both) > 0 || sampler.rounds < 20 {
			t.Errorf("switchover: both servers took writes %d times of %d questions", len(sampler.both), sampler.rounds)
		}
		if err != nil {
			t.Fatalf("agent db switchover: %v\n%s", err, out)
		}
		rep = w.waitSettled(t, ctx, time.Minute)
		failed := wr.failuresBetween(start, end.Add(time.Second))
		lost := wr.missingOn(t, ctx, rep.primary())
		line := grepLines(out, "switched over:")
		t.Logf("switchover from %s: %s; writes failed %d; acknowledged %d, lost %d", from, line, failed, len(wr.acked), len(lost))
		rows = append(rows, row{fault: "switchover (planned)", old: from, switchPause: line, switchFails: strconv.Itoa(failed)})
		if rep.primary() == from {
			t.Errorf("after the switchover the primary is still %s", from)
		}
		if failed > 0 || len(lost) > 0 {
			t.Errorf("switchover: %d writes failed (want none: a switchover only pauses writes), %d acknowledged writes lost", failed, len(lost))
		}
	}
	t.Run("a diverged replica is quarantined; agent db reseed brings it back", func(t *testing.T) { testDivergedReplica(t, ctx, w) })
	fmt.Fprintf(os.Stderr, "\nDatabase faults under load (50 readers ?write=0, 2 writers; 2 s per request, no retries):\n")
	fmt.Fprintf(os.Stderr, "%-48s %-10s %8s %10s %12s %10s\n", "fault", "primary", "reads", "failed", "writes back", "lost acked")
	for _, r := range rows {
		if r.switchPause != "" {
			fmt.Fprintf(os.Stderr, "%-48s %-10s %s, failed writes %s\n", r.fault, r.old, r.switchPause, r.switchFails)
			continue
		}
		note := ""
		if r.reseeded {
			note = "  (diverged: quarantined, re-seeded)"
		}
		fmt.Fprintf(os.Stderr, "%-48s %-10s %8d %10d %12v %10d%s\n", r.fault, r.old, r.reads, r.readFails, r.writesBack.Round(10*time.Millisecond), r.lostAcked, note)
	}
}

// testDivergedReplica gives the replica a transaction of its own, behind the primary's back:
// the watch quarantines it (not replicated, not read from, never promoted) and alerts; `agent
// db reseed` copies the primary's data into it again, keeping its binary logs aside, and the
// watch releases it.
func testDivergedReplica(t *testing.T, ctx context.Context, w *dbWatch) {
	rep := w.waitSettled(t, ctx, time.Minute)
	replica := "db_slave"
	if rep.primary() == "db_slave" {
		replica = "db_master"
	}
	st.rootSQL(t, ctx, replica, "SET GLOBAL read_only=0; INSERT INTO app.visits (server, client) VALUES ('diverged', 'e2e'); SET GLOBAL read_only=1")
	// The primary's next writes stop the replica's SQL thread (the same GTID sequence twice).
	client := httpsClient(loadgen.DefaultTimeout)
	if err := eventually(30*time.Second, 500*time.Millisecond, func() error {
		if _, err := writeVisit(ctx, client); err != nil {
			return err
		}
		r, err := w.status(ctx)
		if err != nil {
			return err
		}
		for _, s := range r.Servers {
			if s.Service == replica && s.Role != "quarantined" {
				return fmt.Errorf("%s is %s, not quarantined", replica, s.Role)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	alerted := func(want bool) error {
		var got []json.RawMessage
		if err := getJSON("http://127.0.0.1:"+alertmgrPort+"/api/v2/alerts?active=true&filter=alertname%3D%22DatabaseQuarantined%22", &got); err != nil {
			return err
		}
		if (len(got) > 0) != want {
			return fmt.Errorf("DatabaseQuarantined active: %d alerts, want active %v", len(got), want)
		}
		return nil
	}
	if err := eventually(30*time.Second, time.Second, func() error { return alerted(true) }); err != nil {
		t.Error(err)
	}
	// Quarantined: no switchover to it.
	if out, err := w.cli(ctx, "switchover"); err == nil || !strings.Contains(out, "quarantined") {
		t.Errorf("a switchover to a quarantined server: %v\n%s", err, out)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := w.cli(rctx, "reseed", replica)
	if err != nil {
		t.Fatalf("agent db reseed %s: %v\n%s", replica, err, out)
	}
	t.Logf("agent db reseed %s (%v):\n%s", replica, time.Since(start).Round(time.Second), out)
	w.waitSettled(t, ctx, time.Minute)
	if n := st.rootSQL(t, ctx, replica, "SELECT COUNT(*) FROM app.visits WHERE server='diverged'"); n != "0" {
		t.Errorf("the diverged row is still on %s after the re-seed (%s)", replica, n)
	}
	if err := eventually(10*time.Second, 500*time.Millisecond, func() error {
		q := "SELECT CONCAT(COUNT(*), '/', COALESCE(MAX(id),0)) FROM app.visits"
		if a, b := st.rootSQL(t, ctx, rep.primary(), q), st.rootSQL(t, ctx, replica, q); a != b {
			return fmt.Errorf("primary %s, re-seeded replica %s (count/max id)", a, b)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	kept, err := st.run(ctx, "docker", "exec", c(replica), "sh", "-c", "ls /var/lib/mysql | grep '^diverged-'")
	if err != nil || strings.TrimSpace(kept) == "" {
		t.Errorf("the diverged binary logs were not kept in %s's volume: %v %s", replica, err, kept)
	}
	if err := eventually(30*time.Second, time.Second, func() error { return alerted(false) }); err != nil {
		t.Error(err)
	}
	if out, err := w.cli(ctx, "reseed", replica); err == nil || !strings.Contains(out, "--force") {
		t.Errorf("re-seeding a healthy replica without --force: %v\n%s", err, out)
	}
}

// slaveStatusOf returns SHOW SLAVE STATUS\G of a database service as a map.
func slaveStatusOf(t *testing.T, ctx context.Context, service string) map[string]string {
	t.Helper()
	out, err := st.run(ctx, "docker", "exec", "-e", "MYSQL_PWD="+st.secret(t, "db/root_password"),
		c(service), "mysql", "-u", "root", "-e", `SHOW SLAVE STATUS\G`)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ": "); ok {
			m[k] = v
		}
	}
	return m
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
