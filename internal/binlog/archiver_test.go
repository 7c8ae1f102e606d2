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
	commitRows(db, 1, 7, 8)
	waitEnd(t, a, "0-1-8")
	stop()
	probs := h.problems()
	if len(probs) != 1 || probs[0].Kind != ProblemGap || probs[0].From.String() != "0-1-2" || probs[0].To.String() != "0-1-6" ||
		!strings.Contains(probs[0].Message, "take a dump now") {
		t.Fatalf("problems %+v", probs)
	}
	c, err := List(context.Background(), h.st, ListOptions{AllowUnsigned: true})
	if err != nil {
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
