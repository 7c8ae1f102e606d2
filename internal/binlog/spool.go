package binlog

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Spool is a local copy of the segments a replay needs, read from the store once each and
// verified (see OpenSegment) before anything is replayed: Fetch reads them into it, and a replay
// whose options name it (ReplayOptions.Spool) reads them only from it, never from the store. So
// a restore that fetched its segments first cannot be broken off by the store once it changed
// the database.
//
// The segments are kept as their binary log files, decrypted and uncompressed (as much disk as
// their manifests' RawBytes), each in a file of mode 0600 in a directory of mode 0700 that the
// spool makes for itself; Close removes it. Reading a segment back checks it again: the file's
// SHA-256 as it was written, every event's checksum, its transactions against the manifest.
//
// Reads are safe for concurrent use; Fetch is not to be called concurrently with itself.
type Spool struct {
	dir      string
	lock     *os.File // held while the spool lives: see sweepSpools
	progress func(SpoolProgress)
	log      *slog.Logger
	write    func(path string, data []byte) error // writeSpoolFile; tests: a full disk
	free     func(dir string) (int64, bool)       // freeSpace; tests: a small disk

	mu     sync.Mutex
	files  map[string]spoolFile // by segment key
	at     SpoolProgress
	closed bool
}

// spoolFile is one segment in the spool.
type spoolFile struct {
	path   string
	size   int64
	sum    [sha256.Size]byte // of the file, as written
	stored string            // the manifest's SHA-256 of the stored object: which segment it is
}

// SpoolOptions say where a spool keeps its segments and whom it tells.
type SpoolOptions struct {
	// Dir is the directory the spool makes its own directory in; "" for os.TempDir() ($TMPDIR,
	// else /tmp).
	Dir string
	// Progress, when set, is told where fetching stands: when Fetch starts, and after each
	// segment it kept.
	Progress func(SpoolProgress)
	Logger   *slog.Logger // nil: slog.Default()
}

// SpoolProgress is where a spool's fetching stands.
type SpoolProgress struct {
	// Segments were read from the store and kept, of TotalSegments to read (the segments the
	// Fetch under way needs, as their manifests say, and those read before it).
	Segments, TotalSegments int
	// Bytes and TotalBytes are the same segments' stored size: what is read from the store.
	Bytes, TotalBytes int64
}

// SpoolError is a spool that could not keep the segments in its directory: most often, the
// disk is full. Nothing was replayed when Fetch returns it.
type SpoolError struct {
	Dir string
	Err error
}

func (e *SpoolError) Error() string {
	hint := "set TMPDIR to a directory the agent can write to"
	if errors.Is(e.Err, errNoRoom) || errors.Is(e.Err, syscall.ENOSPC) || errors.Is(e.Err, syscall.EDQUOT) {
		hint = "free space there, or set TMPDIR to a directory on a disk with more room"
	}
	return fmt.Sprintf("binlog spool %s: %v: %s", e.Dir, e.Err, hint)
}

func (e *SpoolError) Unwrap() error { return e.Err }

var errNoRoom = errors.New("not enough free space")

// NewSpool makes an empty spool: a new private directory in o.Dir.
func NewSpool(o SpoolOptions) (*Spool, error) {
	parent := cmp.Or(o.Dir, os.TempDir())
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	sweepSpools(parent, log)
	dir, err := os.MkdirTemp(parent, spoolPattern) // mode 0700
	if err != nil {
		return nil, &SpoolError{Dir: parent, Err: fmt.Errorf("make the spool's directory: %w", err)}
	}
	lock, err := lockSpool(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, &SpoolError{Dir: dir, Err: fmt.Errorf("lock the spool: %w", err)}
	}
	return &Spool{dir: dir, lock: lock, progress: o.Progress, log: log, write: writeSpoolFile, free: freeSpace, files: map[string]spoolFile{}}, nil
}

const spoolPattern = "hastack-binlog-spool-*"

// sweepSpools removes the spools in parent that no process holds any more: those of a restore
// or drill that was killed (SIGKILL, a crash) before it could remove its own. They hold
// decrypted binary logs, so they are not left for the next reboot. A spool's owner holds the
// lock on its lock file for as long as it lives (lockSpool); a spool without one is removed
// only when it is an hour old (its owner died between making it and locking it).
func sweepSpools(parent string, log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(parent, spoolPattern))
	for _, dir := range dirs {
		if !spoolAbandoned(dir) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("a binlog spool left by a restore or drill that did not finish could not be removed: remove it by hand (it holds decrypted binary logs)", "dir", dir, "err", err)
			continue
		}
		log.Info("removed a binlog spool left by a restore or drill that did not finish", "dir", dir)
	}
}

// Dir is the spool's directory.
func (sp *Spool) Dir() string { return sp.dir }

// Fetch is Select, and it keeps every segment it reads in the spool: each segment the replay
// needs that the spool does not hold yet is read from the store (o.Objects) once, verified,
// and written to the spool's directory; those it holds are read from there. It refuses a missing
// or corrupt segment with an error that names it, as Select does. Before it reads anything, it
// checks (where the system says) that the disk has room for what it is about to keep: a
// *SpoolError when it has not, or when a write fails.
func (sp *Spool) Fetch(ctx context.Context, c *Chain, o ReplayOptions) (Selection, error) {
	var todo int
	var stored, raw int64
	sp.mu.Lock()
	if sp.closed {
		sp.mu.Unlock()
		return Selection{End: o.From}, fmt.Errorf("binlog spool %s is closed", sp.dir)
	}
	for _, s := range c.replayReads(o) {
		if _, ok := sp.files[s.Key]; !ok {
			todo++
			stored += s.Manifest.StoredBytes
			raw += s.Manifest.RawBytes
		}
	}
	sp.mu.Unlock()
	if free, ok := sp.free(sp.dir); ok && free < raw {
		return Selection{End: o.From}, &SpoolError{Dir: sp.dir, Err: fmt.Errorf("%w: the %d binlog segments the replay needs are %s uncompressed, and %s is free",
			errNoRoom, todo, mib(raw), mib(free))}
	}
	sp.mu.Lock()
	sp.at.TotalSegments, sp.at.TotalBytes = sp.at.Segments+todo, sp.at.Bytes+stored
	at := sp.at
	sp.mu.Unlock()
	sp.report(at)
	sel, _, err := plan(ctx, c, o, func(ctx context.Context, s Segment, _ string) (*decoded, error) {
		return sp.fetch(ctx, s, o)
	})
	return sel, err
}

// LastCommit is the commit time of the transactions at position p (a dump's: the last one it
// holds in each replication domain), as the archive has them; ok is false when the archive does
// not hold them or they cannot be read (a replay that needs them says why). The segments it
// reads are fetched into the spool like Fetch's: a replay from p usually needs them too.
func (sp *Spool) LastCommit(ctx context.Context, c *Chain, p Position, o ReplayOptions) (last time.Time, ok bool) {
	for i, g := range p {
		if g.Seq == 0 {
			continue
		}
		before := slices.Clone(p)
		before[i].Seq--
		probe := o
		probe.From, probe.Stop = before, Stop{GTID: g}
		sel, err := sp.Fetch(ctx, c, probe)
		if err != nil || sel.Transactions != 1 {
			continue
		}
		if sel.LastTime.After(last) {
			last = sel.LastTime
		}
		ok = true
	}
	return last, ok
}

// fetch reads a segment from the spool if it holds it, else from the store, and keeps it.
func (sp *Spool) fetch(ctx context.Context, s Segment, o ReplayOptions) (*decoded, error) {
	sp.mu.Lock()
	_, held := sp.files[s.Key]
	sp.mu.Unlock()
	if held {
		return sp.read(ctx, s, "")
	}
	d, err := readSegment(ctx, o.Objects, s, o.Identities, "")
	if err != nil {
		return nil, err
	}
	if err := sp.keep(ctx, s, d.plain); err != nil {
		return nil, err
	}
	return d, nil
}

// keep writes a verified segment's binary log file into the spool.
func (sp *Spool) keep(ctx context.Context, s Segment, plain []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spool binlog segment %s: %w", s.Key, err)
	}
	sp.mu.Lock()
	if sp.closed {
		sp.mu.Unlock()
		return fmt.Errorf("spool binlog segment %s: the spool %s is closed", s.Key, sp.dir)
	}
	path := filepath.Join(sp.dir, fmt.Sprintf("%06d.binlog", len(sp.files)+1))
	sp.mu.Unlock()
	if err := sp.write(path, plain); err != nil {
		return &SpoolError{Dir: sp.dir, Err: fmt.Errorf("write binlog segment %s: %w", s.Key, err)}
	}
	sp.mu.Lock()
	sp.files[s.Key] = spoolFile{path: path, size: int64(len(plain)), sum: sha256.Sum256(plain), stored: s.Manifest.SHA256}
	sp.at.Segments++
	sp.at.Bytes += s.Manifest.StoredBytes
	sp.at.TotalSegments, sp.at.TotalBytes = max(sp.at.TotalSegments, sp.at.Segments), max(sp.at.TotalBytes, sp.at.Bytes)
	at := sp.at
	sp.mu.Unlock()
	sp.log.Debug("binlog segment spooled", "segment", s.Key, "stored_bytes", s.Manifest.StoredBytes, "raw_bytes", len(plain), "file", path)
	sp.report(at)
	return nil
}

// read reads a segment from the spool and checks it again (a segmentReader: there is no ETag to
// match, the file is checked against its SHA-256 as written).
func (sp *Spool) read(ctx context.Context, s Segment, _ string) (*decoded, error) {
	if s.Manifest.Empty() {
		return &decoded{}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read binlog segment %s from the spool: %w", s.Key, err)
	}
	sp.mu.Lock()
	f, ok := sp.files[s.Key]
	sp.mu.Unlock()
	switch {
	case !ok:
		return nil, fmt.Errorf("binlog segment %s is not in the spool %s: it was not fetched before the replay", s.Key, sp.dir)
	case f.stored != s.Manifest.SHA256:
		return nil, fmt.Errorf("binlog segment %s in the spool %s was fetched for another manifest (SHA-256 %s, not %s)", s.Key, sp.dir, f.stored, s.Manifest.SHA256)
	}
	plain, err := os.ReadFile(f.path)
	if err != nil {
		return nil, fmt.Errorf("read binlog segment %s from the spool: %w", s.Key, err)
	}
	if int64(len(plain)) != f.size || sha256.Sum256(plain) != f.sum {
		return nil, fmt.Errorf("read binlog segment %s from the spool: %s changed after the segment was verified", s.Key, f.path)
	}
	d, err := decodeSegment(plain, s.Manifest)
	if err != nil {
		return nil, fmt.Errorf("read binlog segment %s from the spool: %w", s.Key, err)
	}
	return d, nil
}

func (sp *Spool) report(at SpoolProgress) {
	if sp.progress != nil {
		sp.progress(at)
	}
}

// Close removes the spool's directory and everything in it. It may be called more than once.
func (sp *Spool) Close() error {
	sp.mu.Lock()
	if sp.closed {
		sp.mu.Unlock()
		return nil
	}
	sp.closed, sp.files = true, nil
	sp.mu.Unlock()
	err := os.RemoveAll(sp.dir)
	if sp.lock != nil {
		sp.lock.Close() // after the removal: no sweep takes the directory from under it
	}
	if err != nil {
		return fmt.Errorf("remove the binlog spool %s: %w (remove it by hand: it holds decrypted binary logs)", sp.dir, err)
	}
	return nil
}

// writeSpoolFile writes a new file of mode 0600; it removes what it wrote when it fails.
func writeSpoolFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// replayReads are the segments a replay with o reads, as their manifests say (see plan): plan
// reads these or, when it stops inside one where the manifests cannot tell (a transaction
// committed after the stop time before the segment's last one), fewer; or it fails at a hole or
// a segment that does not fit. For the spool's progress and its check of free space.
func (c *Chain) replayReads(o ReplayOptions) []Segment {
	if o.Stop.byGTID() && o.From.Includes(o.Stop.GTID) {
		return nil
	}
	first := c.holding(o.From)
	if first < 0 {
		return nil
	}
	var out []Segment
	for j := first; j < len(c.Segments); j++ {
		s := c.Segments[j]
		m := s.Manifest
		switch {
		case j > first && !c.Segments[j-1].End().Equal(m.Start):
			return out // a hole
		case o.Stop.byTime() && j > first && !m.Empty() && m.FirstTime.After(o.Stop.Time):
			return out
		case m.Empty() || j == first && o.From.Equal(s.End()):
			continue
		}
		out = append(out, s)
		if o.Stop.byTime() && s.Until == nil && m.LastTime.After(o.Stop.Time) || o.Stop.byGTID() && s.End().Includes(o.Stop.GTID) {
			return out
		}
	}
	return out
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
