package failover

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/hastack/hastack/internal/docker"
	"github.com/hastack/hastack/internal/mariadb"
)

// world records every action of the fakes in order, so tests can check the fencing order.
type world struct {
	mu       sync.Mutex
	actions  []string
	alerts   []string
	resolved []string
}

func (w *world) do(a string) {
	w.mu.Lock()
	w.actions = append(w.actions, a)
	w.mu.Unlock()
}

func (w *world) index(a string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Index(w.actions, a)
}

type fakeDB struct {
	w          *world
	name       string
	mu         sync.Mutex
	st         mariadb.Status
	down       bool  // no answer
	refuse     error // answers with this error
	promoteErr error
	waitErr    error
}

var errNoAnswer = errors.New("i/o timeout")

func (f *fakeDB) Status(context.Context) (mariadb.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return mariadb.Status{}, &mariadb.Error{Addr: f.name, What: "probe", Err: errNoAnswer}
	}
	if f.refuse != nil {
		return mariadb.Status{}, f.refuse
	}
	return f.st, nil
}

func (f *fakeDB) SetReadOnly(_ context.Context, on bool) error {
	f.w.do(fmt.Sprintf("%s read_only=%v", f.name, on))
	f.mu.Lock()
	f.st.ReadOnly = on
	f.mu.Unlock()
	return nil
}

func (f *fakeDB) Promote(context.Context, time.Duration) error {
	f.w.do(f.name + " promote")
	var leftover *mariadb.LeftoverError
	if errors.As(f.promoteErr, &leftover) { // writable, its old replication left behind
		f.mu.Lock()
		f.st.ReadOnly, f.st.SemiSyncOn = false, true
		f.mu.Unlock()
		return f.promoteErr
	}
	if f.promoteErr != nil {
		return f.promoteErr
	}
	f.mu.Lock()
	f.st.ReadOnly, f.st.Replica, f.st.SemiSyncOn = false, nil, true
	f.mu.Unlock()
	return nil
}

func (f *fakeDB) ReplicateFrom(_ context.Context, primary, _, _ string) error {
	f.w.do(f.name + " replicate from " + primary)
	f.mu.Lock()
	f.st.ReadOnly = true
	f.st.Replica = &mariadb.ReplicaStatus{MasterHost: primary, IORunning: "Yes", SQLRunning: "Yes"}
	f.mu.Unlock()
	return nil
}

func (f *fakeDB) ForgetPrimary(context.Context) error {
	f.w.do(f.name + " forget primary")
	f.mu.Lock()
	f.st.Replica = nil
	f.mu.Unlock()
	return nil
}

func (f *fakeDB) StopReplication(context.Context) error {
	f.w.do(f.name + " stop replication")
	return nil
}

func (f *fakeDB) RestartSemiSync(context.Context) error {
	f.w.do(f.name + " restart semi-sync")
	return nil
}

func (f *fakeDB) WaitApplied(context.Context, mariadb.GTIDList, time.Duration) error {
	f.w.do(f.name + " wait applied")
	return f.waitErr
}

// fakeEngine is called from the watch's background start of fenced servers too: locked.
type fakeEngine struct {
	w       *world
	mu      sync.Mutex
	stopped map[string]bool
	gone    map[string]bool // removed containers
	killErr error
}

func (e *fakeEngine) setStopped(c string, stopped bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped[c] = stopped
}

func (e *fakeEngine) Running(_ context.Context, c string) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.stopped[c], nil
}

func (e *fakeEngine) Exists(_ context.Context, c string) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.gone[c], nil
}

func (e *fakeEngine) Kill(_ context.Context, c string) error {
	e.w.do("kill " + c)
	if e.killErr != nil {
		return e.killErr
	}
	e.setStopped(c, true)
	return nil
}
func (e *fakeEngine) Start(_ context.Context, c string) error {
	e.w.do("start " + c)
	return nil
}

type fakeRoles struct {
	w  *world
	mu sync.Mutex
	rf RolesFile
}

func (r *fakeRoles) Read(context.Context) (RolesFile, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rf, nil
}

func (r *fakeRoles) Write(_ context.Context, rf RolesFile) error {
	r.w.do("roles primary=" + rf.Primary + " quarantined=" + strings.Join(rf.Quarantined, ","))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rf = rf
	return nil
}

type fixture struct {
	w      *world
	c      *Cluster
	master *fakeDB
	slave  *fakeDB
	engine *fakeEngine
	roles  *fakeRoles
}

func gtids(s string) mariadb.GTIDList {
	l, err := mariadb.ParseGTIDList(s)
	if err != nil {
		panic(err)
	}
	return l
}

// newFixture is a healthy pair: db_master (.21) primary at 0-1-100 with semi-sync on, db_slave
// (.22) replicating and up to date.
func newFixture(t *testing.T) *fixture {
	w := &world{}
	master := &fakeDB{w: w, name: "db_master", st: mariadb.Status{
		BinlogPos: gtids("0-1-100"), BinlogState: gtids("0-1-100"), CurrentPos: gtids("0-1-100"), SemiSyncOn: true}}
	slave := &fakeDB{w: w, name: "db_slave", st: mariadb.Status{ReadOnly: true,
		BinlogPos: gtids("0-1-100"), BinlogState: gtids("0-1-100"), CurrentPos: gtids("0-1-100"),
		Replica: &mariadb.ReplicaStatus{MasterHost: ".21", IORunning: "Yes", SQLRunning: "Yes", IOPos: gtids("0-1-100")}}}
	engine := &fakeEngine{w: w, stopped: map[string]bool{}}
	roles := &fakeRoles{w: w, rf: RolesFile{Primary: ".21"}}
	c := &Cluster{
		Nodes:  [2]*Node{{Service: "db_master", Container: "db_master", Addr: ".21", DB: master}, {Service: "db_slave", Container: "db_slave", Addr: ".22", DB: slave}},
		Engine: engine, Roles: roles, Mode: ModeAuto, FailAfter: 2,
		Observations: &FileObservations{File: filepath.Join(t.TempDir(), "obs.json")},
		Notify: func(_ context.Context, name string, firing bool, _ map[string]string, _ string) {
			w.mu.Lock()
			if firing {
				w.alerts = append(w.alerts, name)
			} else {
				w.resolved = append(w.resolved, name)
			}
			w.mu.Unlock()
		},
	}
	return &fixture{w, c, master, slave, engine, roles}
}

func (f *fixture) rounds(t *testing.T, n int) {
	t.Helper()
	for range n {
		if err := f.c.Round(context.Background()); err != nil {
			t.Fatalf("round: %v", err)
		}
	}
}

func (f *fixture) mustHaveBefore(t *testing.T, first, then string) {
	t.Helper()
	i, j := f.w.index(first), f.w.index(then)
	if i < 0 || j < 0 || i > j {
		t.Fatalf("want %q before %q; actions: %q", first, then, f.w.actions)
	}
}

func TestHealthyPairDoesNothing(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 3)
	if len(f.w.actions) != 0 || len(f.w.alerts) != 0 {
		t.Fatalf("actions %q alerts %q", f.w.actions, f.w.alerts)
	}
}

func TestFailoverFencesBeforePromoting(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1) // observes the primary
	f.master.down = true
	f.rounds(t, 1)
	if f.w.index("db_slave promote") >= 0 {
		t.Fatal("promoted after one failed probe of a running container")
	}
	f.rounds(t, 1)
	f.mustHaveBefore(t, "roles primary=.22 quarantined=", "kill db_master")
	f.mustHaveBefore(t, "kill db_master", "db_slave promote")
	if f.roles.rf.Primary != ".22" || !slices.Contains(f.w.alerts, "DatabaseFailover") {
		t.Fatalf("roles %+v alerts %q", f.roles.rf, f.w.alerts)
	}
}

func TestDiedEventFailsOverAtOnce(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	f.master.down = true
	f.c.Died("db_master")
	f.rounds(t, 1)
	if f.w.index("db_slave promote") < 0 {
		t.Fatalf("no promotion after Docker reported the death: %q", f.w.actions)
	}
}

func TestStoppedContainerFailsOverAtOnce(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	f.master.down = true
	f.engine.setStopped("db_master", true)
	f.rounds(t, 1)
	if f.w.index("db_slave promote") < 0 {
		t.Fatalf("no promotion of a stopped primary: %q", f.w.actions)
	}
}

// Both servers' containers removed (docker compose down) is not a dead primary: no failover,
// no FailoverRefused, nobody paged.
func TestRemovedPairIsNotFailedOver(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	f.master.down, f.slave.down = true, true
	f.engine.setStopped("db_master", true)
	f.engine.setStopped("db_slave", true)
	f.engine.gone = map[string]bool{"db_master": true, "db_slave": true}
	f.rounds(t, 5)
	if f.w.index("kill db_master") >= 0 || f.w.index("db_slave promote") >= 0 || len(f.w.alerts) != 0 {
		t.Fatalf("actions %q alerts %q: want nothing done and nothing alerted", f.w.actions, f.w.alerts)
	}
}

func TestAnsweringPrimaryIsAlive(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	f.master.refuse = &mariadb.Error{Addr: ".21", What: "probe", Err: &mysqlErr}
	f.rounds(t, 5)
	if f.w.index("db_slave promote") >= 0 {
		t.Fatalf("promoted while the primary answered: %q", f.w.actions)
	}
}

func TestRefusesWithoutSemiSync(t *testing.T) {
	f := newFixture(t)
	f.master.st.SemiSyncOn = false
	f.rounds(t, 1)
	f.master.down = true
	f.rounds(t, 4)
	if f.w.index("db_slave promote") >= 0 || f.w.index("kill db_master") >= 0 {
		t.Fatalf("failed over without semi-sync: %q", f.w.actions)
	}
	if n := strings.Count(strings.Join(f.w.alerts, " "), "FailoverRefused"); n != 1 {
		t.Fatalf("FailoverRefused posted %d times, want once: %q", n, f.w.alerts)
	}
	// The operator forces it.
	if err := f.c.Failover(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	f.mustHaveBefore(t, "kill db_master", "db_slave promote")
}

func TestRefusesReplicaBehind(t *testing.T) {
	f := newFixture(t)
	f.master.st.BinlogPos = gtids("0-1-101")
	f.rounds(t, 1)
	f.master.down = true
	f.rounds(t, 3)
	if f.w.index("db_slave promote") >= 0 {
		t.Fatalf("promoted a replica that lacked 0-1-101: %q", f.w.actions)
	}
	if !slices.Contains(f.w.alerts, "FailoverRefused") {
		t.Fatal("no FailoverRefused")
	}
}

func TestNoObservationNoAutomaticFailover(t *testing.T) {
	f := newFixture(t)
	f.master.down = true
	f.rounds(t, 3)
	if f.w.index("db_slave promote") >= 0 {
		t.Fatalf("promoted without ever seeing the primary: %q", f.w.actions)
	}
	// Just started (a host's boot): not alerted yet; still down a minute later: alerted.
	if slices.Contains(f.w.alerts, "FailoverRefused") {
		t.Fatal("alerted at once on a primary the watch never saw answer")
	}
	f.c.started = time.Now().Add(-StartupGrace - time.Second)
	f.rounds(t, 1)
	if !slices.Contains(f.w.alerts, "FailoverRefused") {
		t.Fatal("no FailoverRefused after the start-up grace")
	}
}

func TestFencingFailureAbortsAndRestoresRoles(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	f.master.down = true
	f.engine.killErr = errors.New("docker: no answer")
	if err := f.c.Failover(context.Background(), false); err == nil {
		t.Fatal("failover succeeded without fencing")
	}
	if f.w.index("db_slave promote") >= 0 || f.roles.rf.Primary != ".21" {
		t.Fatalf("actions %q roles %+v", f.w.actions, f.roles.rf)
	}
}

func TestManualModeOnlyAlerts(t *testing.T) {
	f := newFixture(t)
	f.c.Mode = ModeManual
	f.rounds(t, 1)
	f.master.down = true
	f.rounds(t, 3)
	if f.w.index("db_slave promote") >= 0 || !slices.Contains(f.w.alerts, "FailoverRefused") {
		t.Fatalf("actions %q alerts %q", f.w.actions, f.w.alerts)
	}
}

func TestOldPrimaryRejoinsAfterFailover(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	f.master.down = true
	f.c.Died("db_master")
	f.rounds(t, 1)
	// The new primary writes; the old one is back, read-only (the roles file), at 0-1-100.
	f.slave.st.BinlogState = gtids("0-1-100,0-2-120")
	f.master.down = false
	f.master.st.ReadOnly = true
	f.rounds(t, 1)
	if f.w.index("db_master replicate from .22") < 0 {
		t.Fatalf("the old primary did not rejoin: %q", f.w.actions)
	}
}

func TestDivergedOldPrimaryIsQuarantinedThenReleased(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	f.master.down = true
	f.c.Died("db_master")
	f.rounds(t, 1)
	// The old primary had committed 0-1-101, which the replica never received.
	f.slave.st.BinlogState = gtids("0-1-100,0-2-120")
	f.master.down = false
	f.master.st.ReadOnly = true
	f.master.st.CurrentPos = gtids("0-1-101")
	f.rounds(t, 2)
	if f.w.index("db_master replicate from .22") >= 0 {
		t.Fatalf("a diverged server was joined: %q", f.w.actions)
	}
	if !f.roles.rf.IsQuarantined(".21") || !slices.Contains(f.w.alerts, "DatabaseQuarantined") {
		t.Fatalf("roles %+v alerts %q", f.roles.rf, f.w.alerts)
	}
	// Quarantined: never promoted.
	f.slave.down = true
	f.c.Died("db_slave")
	f.rounds(t, 1)
	if f.w.index("db_master promote") >= 0 {
		t.Fatalf("a quarantined server was promoted: %q", f.w.actions)
	}
	// Re-seeded (its volume removed): it replicates from the primary by itself.
	f.slave.down = false
	f.master.st.CurrentPos = gtids("0-2-120")
	f.master.st.Replica = &mariadb.ReplicaStatus{MasterHost: ".22", IORunning: "Yes", SQLRunning: "Yes"}
	f.rounds(t, 1)
	if f.roles.rf.IsQuarantined(".21") {
		t.Fatalf("not released: %+v", f.roles.rf)
	}
}

func TestSecondWritableServerTurnsReadOnly(t *testing.T) {
	f := newFixture(t)
	f.slave.st.ReadOnly = false
	f.rounds(t, 1)
	if f.w.index("db_slave read_only=true") < 0 {
		t.Fatalf("%q", f.w.actions)
	}
}

func TestStaleRolesFileIsCorrected(t *testing.T) {
	f := newFixture(t)
	// A promotion finished but its roles file names the old, now read-only, primary.
	f.master.st.ReadOnly = true
	f.slave.st.ReadOnly = false
	f.rounds(t, 1)
	if f.roles.rf.Primary != ".22" {
		t.Fatalf("roles %+v", f.roles.rf)
	}
}

func TestInterruptedSwitchoverIsFinished(t *testing.T) {
	f := newFixture(t)
	f.master.st.ReadOnly = true // left read-only, the replica still replicating
	f.rounds(t, 1)
	// Promote, not a bare read_only=OFF: it also turns semi-sync on and forgets any old primary.
	if f.w.index("db_master promote") < 0 || f.master.st.ReadOnly {
		t.Fatalf("%q", f.w.actions)
	}
}

func TestStaleObservationRefuses(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	f.c.last.At = time.Now().Add(-time.Minute) // the watch was not looking meanwhile
	f.master.down = true
	f.rounds(t, 3)
	if f.w.index("db_slave promote") >= 0 || !slices.Contains(f.w.alerts, "FailoverRefused") {
		t.Fatalf("promoted on a minute-old observation: %q %q", f.w.actions, f.w.alerts)
	}
}

func TestReplicaNotApplyingRefuses(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	f.slave.st.Replica.SQLRunning, f.slave.st.Replica.LastSQLError = "No", "Duplicate entry"
	f.master.down = true
	f.rounds(t, 3)
	if f.w.index("kill db_master") >= 0 || f.w.index("db_slave promote") >= 0 {
		t.Fatalf("promoted a replica whose SQL thread stopped: %q", f.w.actions)
	}
}

func TestFencedServerIsStartedAgain(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	f.master.down = true
	f.engine.setStopped("db_master", true)
	f.c.Died("db_master")
	f.rounds(t, 1)
	if !slices.Contains(f.roles.rf.Fenced, ".21") {
		t.Fatalf("the fenced server is not recorded: %+v", f.roles.rf)
	}
	// Whatever happened to the background start, the next round starts it.
	f.rounds(t, 1)
	if f.w.index("start db_master") < 0 {
		t.Fatalf("the fenced server was not started: %q", f.w.actions)
	}
	// Back and replicating: no longer fenced.
	f.engine.setStopped("db_master", false)
	f.master.down = false
	f.master.st.ReadOnly = true
	f.master.st.Replica = &mariadb.ReplicaStatus{MasterHost: ".22", IORunning: "Yes", SQLRunning: "Yes"}
	f.rounds(t, 1)
	if slices.Contains(f.roles.rf.Fenced, ".21") {
		t.Fatalf("still fenced after rejoining: %+v", f.roles.rf)
	}
}

func TestFailedPromotionIsFinishedNextRound(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	f.master.down = true
	f.engine.setStopped("db_master", true)
	f.c.Died("db_master")
	f.slave.promoteErr = errors.New("timeout")
	if err := f.c.Round(context.Background()); err == nil {
		t.Fatal("a failed promotion was not reported")
	}
	if !slices.Contains(f.w.alerts, "FailoverRefused") || f.roles.rf.Primary != ".22" {
		t.Fatalf("alerts %q roles %+v", f.w.alerts, f.roles.rf)
	}
	f.slave.promoteErr = nil
	f.rounds(t, 1)
	if f.slave.st.ReadOnly {
		t.Fatalf("the promotion was not finished: %q", f.w.actions)
	}
}

func TestSwitchover(t *testing.T) {
	f := newFixture(t)
	if _, err := f.c.Switchover(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.mustHaveBefore(t, "db_master read_only=true", "db_slave wait applied")
	f.mustHaveBefore(t, "db_slave wait applied", "roles primary=.22 quarantined=")
	f.mustHaveBefore(t, "roles primary=.22 quarantined=", "db_slave promote")
	f.mustHaveBefore(t, "db_slave promote", "db_master replicate from .22")
	if f.w.index("kill db_master") >= 0 {
		t.Fatal("a switchover killed a server")
	}
}

func TestSwitchoverUndoneWhenReplicaSlow(t *testing.T) {
	f := newFixture(t)
	f.slave.waitErr = mariadb.ErrNotApplied
	if _, err := f.c.Switchover(context.Background()); err == nil {
		t.Fatal("switchover succeeded")
	}
	if f.roles.rf.Primary != ".21" || f.master.st.ReadOnly || f.w.index("db_slave promote") >= 0 {
		t.Fatalf("not undone: roles %+v actions %q", f.roles.rf, f.w.actions)
	}
	if !slices.Contains(f.w.alerts, "SwitchoverFailed") {
		t.Fatal("no SwitchoverFailed")
	}
}

func TestSwitchoverRefusesDeadOrLaggingReplica(t *testing.T) {
	f := newFixture(t)
	f.slave.st.Replica.IORunning = "Connecting"
	if _, err := f.c.Switchover(context.Background()); err == nil {
		t.Fatal("switched over to a replica that does not replicate")
	}
	if len(f.w.actions) != 0 {
		t.Fatalf("actions %q", f.w.actions)
	}
}

func TestObservationsSurviveTheProcess(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	// Another process (agent db failover) with the same observation file.
	g := newFixture(t)
	g.c.Observations = f.c.Observations
	g.master.down = true
	if err := g.c.Failover(context.Background(), false); err != nil {
		t.Fatalf("failover with the saved observation: %v", err)
	}
}

func TestFileLock(t *testing.T) {
	l := FileLock{File: filepath.Join(t.TempDir(), "db.lock")}
	unlock, ok, err := l.TryLock()
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if _, ok, _ := l.TryLock(); ok {
		t.Fatal("locked twice")
	}
	unlock()
	if u, ok, _ := l.TryLock(); !ok {
		t.Fatal("not free after unlock")
	} else {
		u()
	}
}

var mysqlErr = mysqlError{Number: 1045, Message: "access denied"}

type mysqlError = mysql.MySQLError

func TestDiedContainerNeedsNoProbe(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	f.master.down = true
	f.engine.setStopped("db_master", true)
	f.c.Died("db_master")
	select {
	case <-f.c.wakeup():
	default:
		t.Fatal("a death did not wake the watch")
	}
	f.rounds(t, 1)
	if f.w.index("db_slave promote") < 0 {
		t.Fatalf("no promotion: %q", f.w.actions)
	}
}

func TestStuckSemiSyncIsRestarted(t *testing.T) {
	f := newFixture(t)
	f.master.st.SemiSyncOn = false
	f.slave.st.Replica.IORunning = "Connecting"
	f.rounds(t, 2)
	if f.w.index("db_master restart semi-sync") >= 0 {
		t.Fatal("restarted at once")
	}
	f.c.semiOffSince = time.Now().Add(-SemiSyncStuckAfter - time.Second)
	f.rounds(t, 2)
	if n := strings.Count(strings.Join(f.w.actions, "|"), "db_master restart semi-sync"); n != 1 {
		t.Fatalf("restarted %d times, want once: %q", n, f.w.actions)
	}
}

type fakeVolume struct {
	files map[string]string
	err   error // for every read: the container is gone, say
}

func (v *fakeVolume) WriteFiles(_ context.Context, _, dir string, files ...docker.File) error {
	for _, f := range files {
		v.files[dir+"/"+f.Name] = string(f.Data)
	}
	return nil
}

func (v *fakeVolume) ReadFile(_ context.Context, _, file string) ([]byte, error) {
	if v.err != nil {
		return nil, v.err
	}
	b, ok := v.files[file]
	if !ok {
		return nil, fmt.Errorf("read %s: %w", file, fs.ErrNotExist)
	}
	return []byte(b), nil
}

func TestVolumeRoles(t *testing.T) {
	vol := &fakeVolume{files: map[string]string{}}
	v := &VolumeRoles{Volume: vol, Container: "db-health", Dir: "/d", CacheFile: filepath.Join(t.TempDir(), "roles.json")}
	ctx := context.Background()
	// No file yet: no roles, not an error.
	if rf, err := v.Refresh(ctx); err != nil || rf.Primary != "" {
		t.Fatalf("Refresh without files = %+v, %v", rf, err)
	}
	if err := v.Write(ctx, RolesFile{Primary: "10.0.0.22", Quarantined: []string{"10.0.0.21"}, Fenced: []string{"10.0.0.21"},
		Reseed: map[string]string{"10.0.0.21": "20261207T060000Z-0a1b2c"}}); err != nil {
		t.Fatal(err)
	}
	if vol.files["/d/primary"] != "10.0.0.22\n" || vol.files["/d/quarantined"] != "10.0.0.21\n" ||
		vol.files["/d/reseed"] != "10.0.0.21 20261207T060000Z-0a1b2c\n" {
		t.Fatalf("volume files %q", vol.files)
	}
	// The volume is the truth for primary, quarantined and reseed; the cache keeps the fenced.
	rf, err := v.Refresh(ctx)
	if err != nil || rf.Primary != "10.0.0.22" || !rf.IsQuarantined("10.0.0.21") || !slices.Contains(rf.Fenced, "10.0.0.21") ||
		rf.Reseed["10.0.0.21"] != "20261207T060000Z-0a1b2c" {
		t.Fatalf("Refresh = %+v, %v", rf, err)
	}
	// A request carried out is gone from the file.
	rf.Reseed = nil
	if err := v.Write(ctx, rf); err != nil || vol.files["/d/reseed"] != "" {
		t.Fatalf("reseed file after the release: %q, %v", vol.files["/d/reseed"], err)
	}
	// A read that fails for another reason than a missing file is an error, never "no roles".
	vol.err = errors.New("no such container: db-health")
	if _, err := v.Refresh(ctx); err == nil {
		t.Fatal("a failed read was taken for a missing roles file")
	}
	vol.err = nil
	vol.files["/d/primary"] = "db_master"
	if _, err := v.Refresh(ctx); err == nil {
		t.Fatal("a roles file without an address was accepted")
	}
}

type fakeLock struct{ w *world }

func (l fakeLock) Lock(context.Context) (func(), error) {
	l.w.do("lock")
	return func() { l.w.do("unlock") }, nil
}

func TestReseedOnlyAQuarantinedReplica(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, _, err := f.c.RequestReseed(ctx, "db_master", true); err == nil || !strings.Contains(err.Error(), "primary") {
		t.Fatalf("re-seeding the primary: %v", err)
	}
	if _, _, err := f.c.RequestReseed(ctx, "db_other", true); err == nil {
		t.Fatal("re-seeding an unknown service was accepted")
	}
	if _, _, err := f.c.RequestReseed(ctx, "db_slave", false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("re-seeding a healthy replica without --force: %v", err)
	}
	f.master.down = true
	f.roles.rf.Quarantined = []string{".22"}
	if _, _, err := f.c.RequestReseed(ctx, "db_slave", false); err == nil {
		t.Fatal("re-seeded from a primary that does not answer")
	}
	if len(f.roles.rf.Reseed) != 0 {
		t.Fatalf("a refused re-seed wrote a request: %+v", f.roles.rf)
	}
}

func TestReseedRequestsRestartsAndReleases(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.roles.rf.Quarantined = []string{".22"}
	f.slave.st.Replica = nil // quarantined: replication stopped
	n, token, err := f.c.RequestReseed(ctx, "db_slave", false)
	if err != nil {
		t.Fatal(err)
	}
	if n.Container != "db_slave" || f.roles.rf.Reseed[".22"] != token || token == "" || strings.ContainsAny(token, " /.") {
		t.Fatalf("node %s token %q roles %+v", n.Container, token, f.roles.rf)
	}
	// The entrypoint re-seeds it: it replicates from the primary again.
	f.slave.mu.Lock()
	f.slave.st.Replica = &mariadb.ReplicaStatus{MasterHost: ".21", IORunning: "Yes", SQLRunning: "Yes"}
	f.slave.mu.Unlock()
	var progress []string
	if err := f.c.WaitReseeded(ctx, n, fakeLock{f.w}, func(s string) { progress = append(progress, s) }); err != nil {
		t.Fatal(err)
	}
	if f.roles.rf.IsQuarantined(".22") || len(f.roles.rf.Reseed) != 0 {
		t.Fatalf("not released: %+v", f.roles.rf)
	}
	f.mustHaveBefore(t, "lock", "roles primary=.21 quarantined=")
}

func TestQuarantineReleasedElsewhereIsResolvedByTheWatch(t *testing.T) {
	f := newFixture(t)
	f.slave.st.CurrentPos = gtids("0-1-100,0-2-7") // a transaction of its own
	f.slave.st.Replica = &mariadb.ReplicaStatus{MasterHost: ".21", IORunning: "Yes", SQLRunning: "No"}
	f.rounds(t, 1)
	if !f.roles.rf.IsQuarantined(".22") || !slices.Contains(f.w.alerts, "DatabaseQuarantined") {
		t.Fatalf("not quarantined: roles %+v alerts %q", f.roles.rf, f.w.alerts)
	}
	// `agent db reseed` in another process released it (the roles say so); the server is
	// re-seeded but not replicating yet.
	f.roles.rf.Quarantined = nil
	f.slave.down = true
	f.rounds(t, 1)
	if !slices.Contains(f.w.resolved, "DatabaseQuarantined") {
		t.Fatalf("the watch's quarantine alert was not resolved: %q", f.w.resolved)
	}
}

func TestPrimaryWithLeftoverReplicationIsCleared(t *testing.T) {
	f := newFixture(t)
	// Promoted and writable, but its replication of the old primary was not cleared.
	f.master.st.Replica = &mariadb.ReplicaStatus{MasterHost: ".22", IORunning: "Connecting", SQLRunning: "No"}
	f.rounds(t, 1)
	if f.w.index("db_master forget primary") < 0 {
		t.Fatalf("the leftover replication was not cleared: %q", f.w.actions)
	}
}

func TestPromotionWithLeftoverReplicationCountsAndIsClearedNextRound(t *testing.T) {
	f := newFixture(t)
	f.rounds(t, 1)
	f.slave.promoteErr = &mariadb.LeftoverError{Err: errors.New("stop replication: i/o timeout")}
	f.master.down = true
	f.c.Died("db_master")
	f.rounds(t, 1)
	if f.roles.rf.Primary != ".22" || !slices.Contains(f.w.alerts, "DatabaseFailover") || slices.Contains(f.w.alerts, "FailoverRefused") {
		t.Fatalf("roles %+v alerts %q: a writable promoted server is a failover done", f.roles.rf, f.w.alerts)
	}
	f.rounds(t, 1)
	if f.w.index("db_slave forget primary") < 0 {
		t.Fatalf("the leftover replication was not cleared: %q", f.w.actions)
	}
}
