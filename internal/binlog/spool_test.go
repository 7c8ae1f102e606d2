package binlog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/backup"
)

// pitr is what a point-in-time restore does with the archive (cmd/agent: planReplay, then the
// replay): fetch every segment into the spool (the dump's last commit, then the replay), tally
// the replay from the spool, then replay it from the spool into apply. apply is not called
// when fetching fails.
func pitr(ctx context.Context, sp *Spool, c *Chain, o ReplayOptions, apply func(io.Reader) error) (Selection, error) {
	if o.Stop.byTime() {
		sp.LastCommit(ctx, c, o.From, o)
	}
	if _, err := sp.Fetch(ctx, c, o); err != nil {
		return Selection{}, err
	}
	o.Spool = sp
	if _, _, err := Tally(ctx, c, o); err != nil {
		return Selection{}, err
	}
	var stream bytes.Buffer
	sel, err := WriteStream(ctx, &stream, c, o)
	if err != nil {
		return sel, err
	}
	return sel, apply(&stream)
}

// spoolFiles are the files in a spool's directory, by name, with their modes; the directory's
// own mode is under ".". The lock file (0600, empty) is left out.
func spoolFiles(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == ".lock" {
			if info.Mode() != 0o600 {
				t.Errorf("the spool's lock file has mode %v, want 0600", info.Mode())
			}
			return nil
		}
		out[rel] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// empty fails the test if dir holds anything: a spool's directory was left behind.
func empty(t *testing.T, dir string) {
	t.Helper()
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("left behind in %s: %v", dir, left)
	}
}

// A whole point-in-time restore (its plan, its tally, its replay) reads each segment it needs
// from the store exactly once, and replays what the store holds.
func TestSpoolReadsEachSegmentOnce(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		from  string
		stop  Stop
		reads int // segments read from the store
		gtids string
	}{
		// The dump's last transaction 0-1-3 ends segment 1-3: its commit time is read from it.
		"from a segment's start, to a time": {from: "0-1-3", stop: Stop{Time: t0.Add(8 * time.Second)}, reads: 3, gtids: "0-1-4 0-1-5 0-1-6 0-1-7 0-1-8"},
		"from inside a segment, to a time":  {from: "0-1-4", stop: Stop{Time: t0.Add(5 * time.Second)}, reads: 1, gtids: "0-1-5"},
		"from inside a segment, to a GTID":  {from: "0-1-2", stop: Stop{GTID: gtid("0-1-7")}, reads: 3, gtids: "0-1-3 0-1-4 0-1-5 0-1-6 0-1-7"},
		"from nothing to the end":           {reads: 3, gtids: "0-1-1 0-1-2 0-1-3 0-1-4 0-1-5 0-1-6 0-1-7 0-1-8 0-1-9"},
	} {
		st, ro, lo := testArchive(t)
		c := listed(t, st, lo)
		ro.From, ro.Stop = pos(tc.from), tc.stop
		var want bytes.Buffer
		if _, err := WriteStream(ctx, &want, c, ro); err != nil {
			t.Fatalf("%s: from the store: %v", name, err)
		}
		st.gets = nil

		parent := t.TempDir()
		var reports []SpoolProgress
		sp, err := NewSpool(SpoolOptions{Dir: parent, Progress: func(p SpoolProgress) { reports = append(reports, p) }})
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		sel, err := pitr(ctx, sp, c, ro, func(r io.Reader) error { _, err := io.Copy(&got, r); return err })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		gtids, _ := streamGTIDs(t, got.Bytes())
		if !bytes.Equal(got.Bytes(), want.Bytes()) || strings.Join(gtids, " ") != tc.gtids || sel.Transactions != int64(len(gtids)) {
			t.Errorf("%s: replayed %q (%d bytes), want %q (%d bytes, the store's)", name, gtids, got.Len(), tc.gtids, want.Len())
		}
		gets := st.dataGets()
		if len(gets) != tc.reads {
			t.Errorf("%s: read %d segments from the store, want %d: %v", name, len(gets), tc.reads, gets)
		}
		for key, n := range gets {
			if n != 1 {
				t.Errorf("%s: %s read %d times from the store", name, key, n)
			}
		}
		last := reports[len(reports)-1]
		if last.Segments != tc.reads || last.TotalSegments != tc.reads || last.Bytes != last.TotalBytes || last.Bytes == 0 {
			t.Errorf("%s: last progress %+v after %d reports, want %d of %d segments", name, last, len(reports), tc.reads, tc.reads)
		}

		// The store is gone: the replay (and a drill's) still reads everything from the spool.
		st.failGet = func(string) error { return errors.New("connection refused") }
		o := ro
		o.Spool = sp
		var again bytes.Buffer
		if _, err := WriteStream(ctx, &again, c, o); err != nil || !bytes.Equal(again.Bytes(), want.Bytes()) {
			t.Errorf("%s: a replay from the spool without the store: %v", name, err)
		}
		if o.Stop.byTime() {
			d := DrillReplay(c, o, o.Stop.Time, func(ctx context.Context, r io.Reader) error { _, err := io.Copy(io.Discard, r); return err })
			if expect, err := d.Expect(ctx); err != nil || expect.Transactions != sel.Transactions {
				t.Errorf("%s: a drill's tally from the spool: %v, %+v", name, err, expect)
			}
			if _, err := d.Apply(ctx); err != nil {
				t.Errorf("%s: a drill's replay from the spool: %v", name, err)
			}
		}
		if n := len(st.dataGets()); n != tc.reads {
			t.Errorf("%s: %d segment reads of the store after the spool was full, want none", name, n-tc.reads)
		}

		files := spoolFiles(t, sp.Dir())
		if files["."].Perm() != 0o700 || len(files) != tc.reads+1 {
			t.Errorf("%s: spool %v, want a directory of mode 0700 with %d files", name, files, tc.reads)
		}
		for f, mode := range files {
			if f != "." && mode != 0o600 {
				t.Errorf("%s: spool file %s has mode %v, want 0600", name, f, mode)
			}
		}
		if err := sp.Close(); err != nil {
			t.Fatal(err)
		}
		empty(t, parent)
		if err := sp.Close(); err != nil {
			t.Errorf("a second Close: %v", err)
		}
	}
}

// A store that fails on the n-th read fails the spool, naming the segment, before anything is
// replayed; closing the spool removes what it kept.
func TestSpoolFailsBeforeTheReplayWhenTheStoreFails(t *testing.T) {
	ctx := context.Background()
	for n := 1; n <= 3; n++ {
		st, ro, lo := testArchive(t)
		c := listed(t, st, lo)
		ro.Stop = Stop{Time: t0.Add(time.Hour)}
		reads := 0
		st.failGet = func(key string) error {
			if _, suffix, _ := parseKey(key); suffix != encryptedDataSuffix {
				return nil
			}
			if reads++; reads == n {
				return errors.New("503 Slow Down")
			}
			return nil
		}
		parent := t.TempDir()
		sp, err := NewSpool(SpoolOptions{Dir: parent})
		if err != nil {
			t.Fatal(err)
		}
		applied := 0
		_, err = pitr(ctx, sp, c, ro, func(io.Reader) error { applied++; return nil })
		victim := c.Segments[n-1].Key
		if err == nil || !strings.Contains(err.Error(), "read binlog segment "+victim) || !strings.Contains(err.Error(), "503 Slow Down") {
			t.Errorf("store failing on read %d: %v, want an error naming %s", n, err, victim)
		}
		if applied != 0 {
			t.Errorf("store failing on read %d: the replay was applied", n)
		}
		if kept := len(spoolFiles(t, sp.Dir())) - 1; kept != n-1 {
			t.Errorf("store failing on read %d: %d segments kept", n, kept)
		}
		sp.Close()
		empty(t, parent)
	}
}

func TestSpoolRefusesACorruptSegment(t *testing.T) {
	ctx := context.Background()
	st, ro, lo := testArchive(t)
	c := listed(t, st, lo)
	st.corrupt(dataKey(c.Segments[1].Key, true))
	parent := t.TempDir()
	sp, err := NewSpool(SpoolOptions{Dir: parent})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { sp.Close(); empty(t, parent) }()
	applied := 0
	_, err = pitr(ctx, sp, c, ro, func(io.Reader) error { applied++; return nil })
	if err == nil || !strings.Contains(err.Error(), "binlog segment "+c.Segments[1].Key+" is corrupt") || !errors.Is(err, backup.ErrCorrupt) || applied != 0 {
		t.Fatalf("a corrupt segment: %v (applied %d times)", err, applied)
	}
	// A replay that does not need it is not refused.
	ro.Stop = Stop{GTID: gtid("0-1-3")}
	if _, err := pitr(ctx, sp, c, ro, func(io.Reader) error { return nil }); err != nil {
		t.Fatalf("a replay before the corrupt segment: %v", err)
	}
}

// A full disk fails the spool with an error that names its directory and says what to do; a
// disk that says it is too small fails it before anything is read.
func TestSpoolOnAFullDisk(t *testing.T) {
	ctx := context.Background()
	st, ro, lo := testArchive(t)
	c := listed(t, st, lo)
	parent := t.TempDir()
	sp, err := NewSpool(SpoolOptions{Dir: parent})
	if err != nil {
		t.Fatal(err)
	}
	writes := 0
	sp.write = func(path string, data []byte) error {
		if writes++; writes == 2 {
			return &fs.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
		}
		return writeSpoolFile(path, data)
	}
	_, err = sp.Fetch(ctx, c, ro)
	var se *SpoolError
	if !errors.As(err, &se) || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), sp.Dir()) ||
		!strings.Contains(err.Error(), "free space there, or set TMPDIR") || !strings.Contains(err.Error(), c.Segments[1].Key) {
		t.Fatalf("a full disk: %v", err)
	}
	if files := spoolFiles(t, sp.Dir()); len(files) != 2 {
		t.Errorf("a failed write left a file behind: %v", files)
	}
	sp.Close()
	empty(t, parent)

	st.gets = nil
	sp, err = NewSpool(SpoolOptions{Dir: parent})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	sp.free = func(string) (int64, bool) { return 1, true }
	_, err = sp.Fetch(ctx, c, ro)
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "not enough free space: the 3 binlog segments the replay needs are") ||
		!strings.Contains(err.Error(), sp.Dir()) || !strings.Contains(err.Error(), "TMPDIR") || len(st.dataGets()) != 0 {
		t.Fatalf("a small disk: %v (%d reads of the store)", err, len(st.dataGets()))
	}
}

func TestSpoolNeedsADirectory(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "missing")
	_, err := NewSpool(SpoolOptions{Dir: parent})
	if err == nil || !strings.Contains(err.Error(), parent) || !strings.Contains(err.Error(), "set TMPDIR") {
		t.Fatalf("no directory: %v", err)
	}
}

func TestSpoolCancelled(t *testing.T) {
	st, ro, lo := testArchive(t)
	c := listed(t, st, lo)
	parent := t.TempDir()
	sp, err := NewSpool(SpoolOptions{Dir: parent})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reads := 0
	st.failGet = func(key string) error {
		if reads++; strings.HasSuffix(key, encryptedDataSuffix) && reads > 1 {
			cancel() // while the second segment is read
			return ctx.Err()
		}
		return nil
	}
	if _, err := sp.Fetch(ctx, c, ro); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	sp.Close()
	empty(t, parent)
}

// The spool reads back only what it verified: a segment it was not given fails the replay
// (the store is not read), a file altered in it too.
func TestSpoolReadsOnlyWhatItVerified(t *testing.T) {
	ctx := context.Background()
	st, ro, lo := testArchive(t)
	c := listed(t, st, lo)
	sp, err := NewSpool(SpoolOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	o := ro
	o.Stop = Stop{GTID: gtid("0-1-2")}
	if _, err := sp.Fetch(ctx, c, o); err != nil {
		t.Fatal(err)
	}
	st.gets = nil
	o.Stop, o.Spool = Stop{}, sp
	if _, err := WriteStream(ctx, io.Discard, c, o); err == nil || !strings.Contains(err.Error(), "binlog segment "+c.Segments[1].Key+" is not in the spool") {
		t.Errorf("a segment not fetched: %v", err)
	}
	if n := len(st.dataGets()); n != 0 {
		t.Errorf("the store was read %d times", n)
	}
	path := filepath.Join(sp.Dir(), "000001.binlog")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	o.Stop = Stop{GTID: gtid("0-1-2")}
	if _, err := WriteStream(ctx, io.Discard, c, o); err == nil || !strings.Contains(err.Error(), "changed after the segment was verified") {
		t.Errorf("an altered file: %v", err)
	}
	sp.Close()
	if _, err := sp.Fetch(ctx, c, ro); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Fetch after Close: %v", err)
	}
}

// A spool whose owner was killed (nobody holds its lock) is removed by the next one made in the
// same directory: it holds decrypted binary logs. A live one is left alone.
func TestSpoolSweepsWhatAKilledRestoreLeft(t *testing.T) {
	parent := t.TempDir()
	live, err := NewSpool(SpoolOptions{Dir: parent})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	// What a SIGKILLed restore leaves: its directory, its lock file no process holds, a segment.
	dead := filepath.Join(parent, "hastack-binlog-spool-123")
	if err := os.Mkdir(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".lock", "000001.binlog"} {
		if err := os.WriteFile(filepath.Join(dead, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-10 * time.Minute)
	if err := os.Chtimes(dead, old, old); err != nil {
		t.Fatal(err)
	}
	// A spool made just now whose lock nobody holds yet: its owner may be about to lock it.
	starting := filepath.Join(parent, "hastack-binlog-spool-789")
	if err := os.Mkdir(starting, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(starting, ".lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// One without a lock file, made just now: its owner may be about to lock it.
	young := filepath.Join(parent, "hastack-binlog-spool-456")
	if err := os.Mkdir(young, 0o700); err != nil {
		t.Fatal(err)
	}
	next, err := NewSpool(SpoolOptions{Dir: parent})
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed restore's spool is still there (%v)", err)
	}
	for _, dir := range []string{live.Dir(), young, starting, next.Dir()} {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("%s was removed: %v", dir, err)
		}
	}
}
