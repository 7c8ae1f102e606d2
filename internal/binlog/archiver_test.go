package binlog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/mariadb"
)

// harness runs archivers against fake servers and a memory store.
type harness struct {
	t       *testing.T
	st      *memStore
	src     *fakeSource
	primary atomic.Value // address
	mu      sync.Mutex
	probs   []Problem
}

func newHarness(t *testing.T, servers map[string]*fakeServer, primary string) *harness {
	h := &harness{t: t, st: newMemStore(), src: &fakeSource{t: t, servers: servers}}
	h.primary.Store(primary)
	return h
}

func (h *harness) options() Options {
	return Options{
		Address:       func(ctx context.Context) (string, error) { return h.primary.Load().(string), nil },
		Store:         h.st,
		FlushInterval: 20 * time.Millisecond,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnProblem: func(p Problem) {
			h.mu.Lock()
			h.probs = append(h.probs, p)
			h.mu.Unlock()
		},
		source: h.src,
	}
}

func (h *harness) problems() []Problem {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Problem(nil), h.probs...)
}

// run starts an archiver; the returned function stops it and waits for Run to return.
func (h *harness) run(o Options) (*Archiver, func()) {
	a, err := New(o)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	return a, func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitEnd(t *testing.T, a *Archiver, want string) {
	t.Helper()
	waitFor(t, "the archive to reach "+want, func() bool { return a.Stats().End.String() == want })
}

// archived replays the whole archive and returns its transactions' GTIDs.
func (h *harness) archived(from string) (string, *Chain) {
	h.t.Helper()
	c, err := List(context.Background(), h.st, ListOptions{AllowUnsigned: true})
	if err != nil {
		h.t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := WriteStream(context.Background(), &out, c, ReplayOptions{From: pos(from), Objects: h.st}); err != nil {
		h.t.Fatal(err)
	}
	if out.Len() == 0 {
		return "", c
	}
	gtids, _ := streamGTIDs(h.t, out.Bytes())
	return strings.Join(gtids, " "), c
}

func commitRows(s *fakeServer, server uint32, from, to uint64) {
	for seq := from; seq <= to; seq++ {
		g := mariadb.GTID{Domain: 0, Server: server, Seq: seq}
		s.commit(g, rowTxn(g, time.Now(), g.String()))
	}
}

func seqs(server uint32, from, to uint64) string {
	var s []string
	for seq := from; seq <= to; seq++ {
		s = append(s, mariadb.GTID{Domain: 0, Server: server, Seq: seq}.String())
	}
	return strings.Join(s, " ")
}

func TestArchiverArchivesAndResumes(t *testing.T) {
	db := newFakeServer(t)
	commitRows(db, 1, 1, 5)
	h := newHarness(t, map[string]*fakeServer{"db1:3306": db}, "db1:3306")
	o := h.options()
	o.Start = &Position{} // from the beginning of the history
	a, stop := h.run(o)
	waitEnd(t, a, "0-1-5")
	db.mu.Lock()
	db.dropAfter = 5 // the next connection is cut inside a transaction
	db.mu.Unlock()
	db.kill() // cut the current connection
	db.restart()
	commitRows(db, 1, 6, 9)
	waitEnd(t, a, "0-1-9")
	if e := a.Stats().Errors; e != 2 {
		t.Fatalf("%d errors, want 2 (the cut connection, the cut transaction)", e)
	}
	stop()
	commitRows(db, 1, 10, 12) // while no archiver runs
	o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	a, stop = h.run(o)
	waitEnd(t, a, "0-1-12")
	commitRows(db, 1, 13, 13)
	waitEnd(t, a, "0-1-13")
	stop()

	got, c := h.archived("")
	if got != seqs(1, 1, 13) || len(c.Holes) != 0 || len(c.Superseded) != 0 || len(c.Rejected) != 0 {
		t.Fatalf("archived %q, holes %v, superseded %v, rejected %v", got, c.Holes, c.Superseded, c.Rejected)
	}
	if s := a.Stats(); s.Transactions != 4 || s.LastGTID.String() != "0-1-13" || s.Segments != 2 || s.Errors != 0 {
		t.Fatalf("stats of the second archiver %+v", s)
	}
}

// A store failure after the data object: the archiver retries from the archive's end; the
// orphan object is no segment.
func TestArchiverRetriesAStoreFailure(t *testing.T) {
	db := newFakeServer(t)
	h := newHarness(t, map[string]*fakeServer{"db1:3306": db}, "db1:3306")
	var failed atomic.Bool
	h.st.failPut = func(key string) error {
		if strings.HasSuffix(key, manifestSuffix) && failed.CompareAndSwap(false, true) {
			return errors.New("store down")
		}
		return nil
	}
	o := h.options()
	o.Start = &Position{}
	a, stop := h.run(o)
	commitRows(db, 1, 1, 4)
	waitEnd(t, a, "0-1-4")
	stop()
	got, c := h.archived("")
	if got != seqs(1, 1, 4) || len(c.Rejected) != 1 || !strings.Contains(c.Rejected[0].Problem, "no manifest") || a.Stats().Errors != 1 {
		t.Fatalf("archived %q; rejected %+v; stats %+v", got, c.Rejected, a.Stats())
	}
}

func TestArchiverFlushesBySizeAndNotWhenIdle(t *testing.T) {
	db := newFakeServer(t)
	h := newHarness(t, map[string]*fakeServer{"db1:3306": db}, "db1:3306")
	o := h.options()
	o.FlushInterval, o.MaxSegmentBytes = time.Hour, 1
	a, stop := h.run(o)
	waitFor(t, "a connection", func() bool { return a.Stats().Connected })
	time.Sleep(50 * time.Millisecond)
	if keys := h.st.keys(); len(keys) != 0 {
		t.Fatalf("an idle archiver wrote %v", keys)
	}
	commitRows(db, 1, 1, 3)
	waitEnd(t, a, "0-1-3")
	stop()
	if s := a.Stats(); s.Segments != 3 {
		t.Fatalf("%d segments for 3 transactions over the size limit", s.Segments)
	}
	if got, _ := h.archived(""); got != seqs(1, 1, 3) {
		t.Fatalf("archived %q", got)
	}
}

// The binary logs after the archive's end were purged: a gap, reported, recorded as a hole.
func TestArchiverReportsAGap(t *testing.T) {
	db := newFakeServer(t)
	commitRows(db, 1, 1, 6)
	h := newHarness(t, map[string]*fakeServer{"db1:3306": db}, "db1:3306")
	writeTestSegment(t, h.st, writeOptions{}, 0, 1, t0)
	writeTestSegment(t, h.st, writeOptions{}, 1, 2, t0.Add(time.Second))
	db.purged = 3 // neither 0-1-2 nor 0-1-1 (a step back) can be sent from
	a, stop := h.run(h.options())
	waitFor(t, "the gap", func() bool { return a.Stats().Gaps == 1 })
	// The hole is in the archive at once, before anything is archived after it.
	c, err := List(context.Background(), h.st, ListOptions{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Holes) != 1 || c.Holes[0].From.String() != "0-1-2" || c.Holes[0].To.String() != "0-1-6" || c.End().String() != "0-1-6" {
		t.Fatalf("right after the gap: holes %+v, end %s", c.Holes, c.End())
	}
	commitRows(db, 1, 7, 8)
	waitEnd(t, a, "0-1-8")
	stop()
	probs := h.problems()
	if len(probs) != 1 || probs[0].Kind != ProblemGap || probs[0].From.String() != "0-1-2" || probs[0].To.String() != "0-1-6" ||
		!strings.Contains(probs[0].Message, "take a dump now") {
		t.Fatalf("problems %+v", probs)
	}
	if c, err = List(context.Background(), h.st, ListOptions{AllowUnsigned: true}); err != nil {
		t.Fatal(err)
	}
	if len(c.Holes) != 1 || c.Holes[0].From.String() != "0-1-2" || c.Holes[0].To.String() != "0-1-6" {
		t.Fatalf("holes %+v", c.Holes)
	}
	if got, _ := h.archived("0-1-6"); got != "0-1-7 0-1-8" {
		t.Fatalf("after the hole: %q", got)
	}
}

// A failover loses the old primary's last transaction, which the archive has: the archiver
// steps back, supersedes it at once, and archives the new primary's history.
func TestArchiverStepsBackAfterADivergence(t *testing.T) {
	old, promoted := newFakeServer(t), newFakeServer(t)
	h := newHarness(t, map[string]*fakeServer{"db1:3306": old, "db2:3306": promoted}, "db1:3306")
	o := h.options()
	o.Start = &Position{}
	a, stop := h.run(o)
	commitRows(old, 1, 1, 4)
	commitRows(promoted, 1, 1, 4)
	waitEnd(t, a, "0-1-4")
	commitRows(old, 1, 5, 6)
	commitRows(promoted, 1, 5, 5) // 0-1-6 never reached the replica
	waitEnd(t, a, "0-1-6")
	h.primary.Store("db2:3306")
	old.kill()
	waitFor(t, "the divergence", func() bool { return a.Stats().Divergences == 1 })
	commitRows(promoted, 2, 6, 7)
	waitEnd(t, a, "0-2-7")
	stop()

	got, c := h.archived("")
	if got != seqs(1, 1, 5)+" 0-2-6 0-2-7" || len(c.Holes) != 0 || len(c.Superseded) != 2 {
		t.Fatalf("archived %q; holes %v; superseded %q", got, c.Holes, keysOf(c.Superseded))
	}
	probs := h.problems()
	if len(probs) != 1 || probs[0].Kind != ProblemDivergence || probs[0].From.String() != "0-1-6" || probs[0].To.String() != "0-1-4" ||
		len(probs[0].Superseded) != 1 {
		t.Fatalf("problems %+v", probs)
	}
}

// A divergence the archiver cannot resolve by stepping back (deeper than MaxStepBack, or where it
// would step back to the server's binary logs are purged) stops the archive, reported once: it
// never jumps to the server's position, which would leave the archive claiming the transactions
// the server does not have and record a hole that is not one.
func TestArchiverStopsOnAnUnresolvedDivergence(t *testing.T) {
	for name, tc := range map[string]struct {
		common uint64 // the last transaction both servers have
		purged int    // of the promoted server's transactions
	}{
		"deeper than MaxStepBack":       {common: 3},            // it steps back to 0-1-5 and 0-1-4
		"purged where it steps back to": {common: 4, purged: 5}, // 0-1-4 is, but purged
	} {
		t.Run(name, func(t *testing.T) {
			old, promoted := newFakeServer(t), newFakeServer(t)
			h := newHarness(t, map[string]*fakeServer{"db1:3306": old, "db2:3306": promoted}, "db1:3306")
			o := h.options()
			o.Start, o.MaxStepBack, o.MaxSegmentBytes = &Position{}, 2, 1 // a segment a transaction
			a, stop := h.run(o)
			commitRows(old, 1, 1, 6)
			waitEnd(t, a, "0-1-6")
			commitRows(promoted, 1, 1, tc.common)
			commitRows(promoted, 2, tc.common+1, 9) // the old primary's later ones never reached it
			promoted.mu.Lock()
			promoted.purged = tc.purged
			promoted.mu.Unlock()
			before := h.st.keys()
			h.primary.Store("db2:3306")
			old.kill()
			waitFor(t, "the problem", func() bool { return len(h.problems()) > 0 })
			commitRows(promoted, 2, 10, 10) // the server's position changes: the same problem
			time.Sleep(1200 * time.Millisecond)
			stop()
			probs := h.problems()
			if len(probs) != 1 || probs[0].Kind != ProblemUnresolvedDivergence || probs[0].From.String() != "0-1-6" ||
				!strings.Contains(probs[0].Message, "stopped") || !strings.Contains(probs[0].Message, "take a dump now") {
				t.Fatalf("problems %+v", probs)
			}
			if after := h.st.keys(); strings.Join(after, " ") != strings.Join(before, " ") {
				t.Fatalf("objects written: %v", after)
			}
			if s := a.Stats(); s.Gaps != 0 || s.Divergences != 0 || s.Errors == 0 || s.End.String() != "0-1-6" {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// An empty archive starts at the newest dump's position; a server that does not have it in its
// history stops the archive too, rather than starting at its own position after a fake hole.
func TestArchiverStopsWhenItsStartIsOfAnotherHistory(t *testing.T) {
	db := newFakeServer(t)
	commitRows(db, 1, 1, 3)
	commitRows(db, 2, 4, 9)
	h := newHarness(t, map[string]*fakeServer{"db1:3306": db}, "db1:3306")
	o := h.options()
	o.Start = &Position{gtid("0-1-5")}
	a, stop := h.run(o)
	waitFor(t, "the problem", func() bool { return len(h.problems()) > 0 })
	time.Sleep(600 * time.Millisecond)
	stop()
	probs := h.problems()
	if len(probs) != 1 || probs[0].Kind != ProblemUnresolvedDivergence || probs[0].From.String() != "0-1-5" || !strings.Contains(probs[0].Message, "restart the agent") {
		t.Fatalf("problems %+v", probs)
	}
	if keys := h.st.keys(); len(keys) != 0 || a.Stats().Gaps != 0 {
		t.Fatalf("objects written: %v; stats %+v", keys, a.Stats())
	}
}

// A refusal the archiver does not know is retried as any error: no step back, no gap.
func TestArchiverRetriesAnUnknownRefusal(t *testing.T) {
	db := newFakeServer(t)
	commitRows(db, 1, 1, 3)
	h := newHarness(t, map[string]*fakeServer{"db1:3306": db}, "db1:3306")
	writeTestSegment(t, h.st, writeOptions{}, 0, 1, t0)
	db.refuse = "Binary log is not open"
	a, stop := h.run(h.options())
	waitFor(t, "a few retries", func() bool { return a.Stats().Errors >= 2 })
	db.mu.Lock()
	db.refuse = ""
	db.mu.Unlock()
	waitEnd(t, a, "0-1-3")
	stop()
	if probs := h.problems(); len(probs) != 0 {
		t.Fatalf("problems %+v", probs)
	}
	if got, c := h.archived(""); got != seqs(1, 1, 3) || len(c.Holes) != 0 || len(c.Superseded) != 0 {
		t.Fatalf("archived %q, holes %v, superseded %v", got, c.Holes, keysOf(c.Superseded))
	}
}

// A store that stops answering (a listing, an upload, a manifest) fails the operation after
// StoreTimeout: the archiver retries and goes on.
func TestArchiverTimesOutAHungStore(t *testing.T) {
	db := newFakeServer(t)
	h := newHarness(t, map[string]*fakeServer{"db1:3306": db}, "db1:3306")
	var list, data, manifest atomic.Bool
	h.st.hang = func(op, key string) bool {
		switch {
		case op == "list":
			return list.CompareAndSwap(false, true)
		case op == "put" && strings.HasSuffix(key, dataSuffix):
			return data.CompareAndSwap(false, true)
		case op == "put" && strings.HasSuffix(key, manifestSuffix):
			return manifest.CompareAndSwap(false, true)
		}
		return false
	}
	o := h.options()
	o.Start, o.StoreTimeout = &Position{}, 100*time.Millisecond
	a, stop := h.run(o)
	commitRows(db, 1, 1, 3)
	waitEnd(t, a, "0-1-3")
	stop()
	if e := a.Stats().Errors; e != 3 {
		t.Fatalf("%d errors, want 3 (the listing, the upload, the manifest)", e)
	}
	if got, _ := h.archived(""); got != seqs(1, 1, 3) {
		t.Fatalf("archived %q", got)
	}
}

// Junk in the store with the greatest writing time a key can have: the archiver's segments must
// still get keys that List reads.
func TestArchiverIgnoresTheWritingTimeOfJunk(t *testing.T) {
	db := newFakeServer(t)
	h := newHarness(t, map[string]*fakeServer{"db1:3306": db}, "db1:3306")
	junk := "binlog/00000000000000000000-00000000000000000001-9223372036854775807"
	h.st.objects[manifestKey(junk)] = []byte("junk")
	o := h.options()
	o.Start = &Position{}
	a, stop := h.run(o)
	commitRows(db, 1, 1, 3)
	waitEnd(t, a, "0-1-3")
	stop()
	got, c := h.archived("")
	if got != seqs(1, 1, 3) || len(c.Unknown) != 0 || len(c.Rejected) != 1 || c.Rejected[0].Key != junk {
		t.Fatalf("archived %q, unknown %v, rejected %+v", got, c.Unknown, c.Rejected)
	}
}

// A valid segment claiming to be written far in the future is not resumed from, and its writing
// time is not the one new segments must follow.
func TestReadTailIgnoresASegmentFromTheFuture(t *testing.T) {
	h := newHarness(t, nil, "db1:3306")
	now := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	_, key := writeTestSegment(t, h.st, writeOptions{}, 0, 2, now.Add(-time.Minute))
	writeTestSegment(t, h.st, writeOptions{}, 2, 4, now.Add(2*time.Hour))
	o := h.options()
	o.now = func() time.Time { return now }
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.readTail(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.end.String() != "0-1-2" || a.lastWritten != now.Add(-time.Minute).UnixNano() || a.recent[len(a.recent)-1].key != key {
		t.Fatalf("end %s, last written %s", a.end, time.Unix(0, a.lastWritten).UTC())
	}
}

// MariaDB's error 1236 messages, as sql/sql_repl.cc (mysql_binlog_send) formats them.
func TestRefusalOf(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want refusal
	}{
		{"Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.", refusalPurged},
		{"Could not find first log file name in binary log index file", refusalPurged},
		{"Error: connecting slave requested to start from GTID 0-1-6, which is not in the master's binlog", refusalDiverged},
		{"Error: connecting slave requested to start from GTID 0-1-6, which is not in the master's binlog. Since the master's binlog contains GTIDs with " +
			"higher sequence numbers, it probably means that the slave has diverged due to executing extra erroneous transactions", refusalDiverged},
		{"The binlog on the master is missing the GTID 0-1-6 requested by the slave (even though both a prior and a subsequent sequence number does exist), " +
			"and GTID strict mode is enabled", refusalDiverged},
		{"Binary log is not open", refusalOther},
		{"Failed to load replication slave GTID state from table mysql.gtid_slave_pos", refusalOther},
		{"binlog truncated in the middle of event; consider out of disk space on master; the first event 'mariadb-bin.000003' at 4, " +
			"the last event read from 'mariadb-bin.000003' at 1234, the last byte read from 'mariadb-bin.000003' at 1253.", refusalOther},
		{"", refusalOther},
	} {
		if got := refusalOf(tc.msg); got != tc.want {
			t.Errorf("refusalOf(%q) = %d, want %d", tc.msg, got, tc.want)
		}
	}
}

// A server behind the archive (here an empty database with two transactions that the archive
// also has): no step back to the empty position, nothing written, reported once.
func TestArchiverWaitsForAServerBehind(t *testing.T) {
	db := newFakeServer(t)
	commitRows(db, 1, 1, 2)
	h := newHarness(t, map[string]*fakeServer{"db1:3306": db}, "db1:3306")
	writeTestSegment(t, h.st, writeOptions{}, 0, 3, t0)
	writeTestSegment(t, h.st, writeOptions{}, 3, 6, t0.Add(time.Second))
	before := h.st.keys()
	a, stop := h.run(h.options())
	waitFor(t, "the problem", func() bool { return len(h.problems()) > 0 })
	time.Sleep(1200 * time.Millisecond) // a retry or two
	stop()
	probs := h.problems()
	if len(probs) != 1 || probs[0].Kind != ProblemBehind || probs[0].To.String() != "0-1-2" {
		t.Fatalf("problems %+v", probs)
	}
	if after := h.st.keys(); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Fatalf("objects written: %v", after)
	}
	if a.Stats().Errors == 0 {
		t.Fatal("no error counted")
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	base := Options{Address: func(context.Context) (string, error) { return "", nil }, Store: newMemStore(), User: "archiver"}
	for name, edit := range map[string]func(*Options){
		"no address":          func(o *Options) { o.Address = nil },
		"no store":            func(o *Options) { o.Store = nil },
		"no user":             func(o *Options) { o.User = "" },
		"a stack server's id": func(o *Options) { o.ServerID = 2 },
		"timeout too short":   func(o *Options) { o.ReadTimeout = time.Second },
		"bad start":           func(o *Options) { o.Start = &Position{gtid("0-1-2"), gtid("0-1-3")} },
	} {
		o := base
		edit(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	a, err := New(base)
	if err != nil || a.o.ServerID != DefaultServerID || a.o.FlushInterval != time.Second || a.o.MaxSegmentBytes != 16<<20 {
		t.Fatalf("defaults: %+v, %v", a, err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestStatsAtRisk(t *testing.T) {
	now := time.Date(2026, 12, 1, 14, 0, 10, 0, time.UTC)
	for name, tc := range map[string]struct {
		s    Stats
		want time.Duration
	}{
		"pending":                {Stats{Connected: true, Pending: 3, OldestPending: now.Add(-2 * time.Second), LastReceived: now}, 2 * time.Second},
		"caught up":              {Stats{Connected: true, LastReceived: now.Add(-time.Second), LastTime: now.Add(-time.Hour)}, time.Second},
		"disconnected":           {Stats{LastTime: now.Add(-time.Minute), LastReceived: now}, time.Minute},
		"never archived a thing": {Stats{}, 0},
	} {
		if got := tc.s.AtRisk(now); got != tc.want {
			t.Errorf("%s: %s, want %s", name, got, tc.want)
		}
	}
}
