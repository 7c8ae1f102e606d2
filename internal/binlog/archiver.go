package binlog

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/hastack/hastack/internal/backup"
)

// Defaults of Options.
const (
	DefaultServerID        = 4001
	DefaultFlushInterval   = time.Second
	DefaultMaxSegmentBytes = 16 << 20
	DefaultHeartbeat       = time.Second
	DefaultReadTimeout     = 4 * time.Second
	DefaultMaxStepBack     = 32
	DefaultStoreTimeout    = 2 * time.Minute
)

// smallObjectTimeout bounds writing or reading a manifest or a signature (or StoreTimeout, if
// shorter).
const smallObjectTimeout = 30 * time.Second

// Reconnection backoff: doubling from minBackoff, at most maxBackoff.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Options configure an Archiver.
type Options struct {
	// Address returns the primary's host:port. It is asked at every (re)connection, so that
	// after a failover the archiver follows the new primary.
	Address func(ctx context.Context) (string, error)
	// User and Password: an account with REPLICATION SLAVE.
	User, Password string
	TLS            *tls.Config // nil: no TLS
	// ServerID is the archiver's server id as a replica: unique among the database servers
	// and their replicas, not 1 or 2 (the stack's servers). Default DefaultServerID.
	ServerID uint32
	// Start is where an empty archive starts: the newest dump's GTID position, so that the
	// archive continues that dump. Nil: the server's @@gtid_binlog_pos when the archiver first
	// connects.
	Start *Position
	Store Store
	// Recipients encrypt segments (age), as they do dumps; none: not encrypted.
	Recipients []age.Recipient
	// Keys sign the manifests, as they do dumps' (nil: unsigned). With keys, unsigned or
	// wrongly signed segments already in the store are not trusted (not resumed from).
	Keys *backup.ManifestKeys
	// A segment is written once FlushInterval has passed since its first transaction arrived,
	// or when it reaches MaxSegmentBytes; this bounds the archive's lag. Defaults 1 s, 16 MiB.
	FlushInterval   time.Duration
	MaxSegmentBytes int64
	// Heartbeat is how often an idle server says it is alive; ReadTimeout how long the archiver
	// waits for a byte before it takes the server for dead (frozen, cut off) and reconnects.
	// Defaults 1 s and 4 s.
	Heartbeat, ReadTimeout time.Duration
	// MaxStepBack bounds how many segments the archiver steps back over after a failover to a
	// server that does not have the archive's end (see the package doc). Default 32.
	MaxStepBack int
	// StoreTimeout bounds each store operation: uploading a segment's data and listing the
	// store (default 2 min); writing or reading a manifest or a signature, 30 s (or StoreTimeout
	// if shorter). A store that does not answer in time fails like any store error: the
	// archiver retries from the archive's end.
	StoreTimeout time.Duration
	Logger       *slog.Logger
	// OnProblem is told of gaps, divergences, unresolved divergences and a server behind the
	// archive: alert on it. It is told once of a problem that lasts, not at every retry. It
	// must not block.
	OnProblem func(Problem)
	// OnSegment is told of every segment stored (after its manifest). It must not block.
	OnSegment func(Manifest)

	now    func() time.Time // tests
	source source           // tests
}

// Archiver follows the primary's binary log and stores it in segments (see the package doc).
type Archiver struct {
	o   Options
	log *slog.Logger
	st  Store // o.Store, every operation bounded by a timeout

	mu    sync.Mutex
	stats Stats

	// The archive as the Run goroutine knows it.
	tailRead    bool
	empty       bool     // no segment yet
	end         Position // the stored archive's end
	recent      []segRef // its last used segments, oldest first (for stepping back)
	lastWritten int64    // latest writing time of any segment object (Unix ns)
	// Where the next connection starts: the archive's end, a segment's start when stepping
	// back, the server's position after a gap.
	next        Position
	nextSet     bool
	stepBack    int // segments of recent stepped back over; >0: write an empty segment at next first
	lastProblem string
}

type segRef struct {
	key        string
	start, end Position
}

// New checks the options and makes an Archiver; Run runs it.
func New(o Options) (*Archiver, error) {
	switch {
	case o.Address == nil:
		return nil, errors.New("binlog archiver: no Address function")
	case o.Store == nil:
		return nil, errors.New("binlog archiver: no Store")
	case o.User == "" && o.source == nil:
		return nil, errors.New("binlog archiver: no replication user")
	case o.ServerID == 1 || o.ServerID == 2:
		return nil, fmt.Errorf("binlog archiver: server id %d is a database server's (the stack's are 1 and 2): use another, e.g. %d", o.ServerID, DefaultServerID)
	case o.FlushInterval < 0 || o.MaxSegmentBytes < 0 || o.Heartbeat < 0 || o.ReadTimeout < 0 || o.MaxStepBack < 0 || o.StoreTimeout < 0:
		return nil, errors.New("binlog archiver: negative interval, size or count")
	}
	if o.Start != nil {
		if err := o.Start.check(); err != nil {
			return nil, fmt.Errorf("binlog archiver: start position: %w", err)
		}
	}
	o.ServerID = cmp.Or(o.ServerID, DefaultServerID)
	o.FlushInterval = cmp.Or(o.FlushInterval, DefaultFlushInterval)
	o.MaxSegmentBytes = cmp.Or(o.MaxSegmentBytes, DefaultMaxSegmentBytes)
	o.Heartbeat = cmp.Or(o.Heartbeat, DefaultHeartbeat)
	o.ReadTimeout = cmp.Or(o.ReadTimeout, DefaultReadTimeout)
	o.MaxStepBack = cmp.Or(o.MaxStepBack, DefaultMaxStepBack)
	o.StoreTimeout = cmp.Or(o.StoreTimeout, DefaultStoreTimeout)
	if o.ReadTimeout <= o.Heartbeat {
		return nil, fmt.Errorf("binlog archiver: read timeout %s must be longer than the heartbeat period %s", o.ReadTimeout, o.Heartbeat)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.now == nil {
		o.now = time.Now
	}
	log := o.Logger.With("component", "binlog-archiver")
	if o.source == nil {
		o.source = &mysqlSource{user: o.User, password: o.Password, serverID: o.ServerID, tls: o.TLS,
			heartbeat: o.Heartbeat, readTimeout: o.ReadTimeout, log: log}
	}
	st := boundedStore{Store: o.Store, long: o.StoreTimeout, short: min(o.StoreTimeout, smallObjectTimeout)}
	return &Archiver{o: o, log: log, st: st}, nil
}

// Stats returns a snapshot of the archiver's state and totals.
func (a *Archiver) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stats
	s.End = slices.Clone(s.End)
	return s
}

// Run archives until ctx ends, then returns nil. Every failure (the server, the store) is
// logged and retried with a backoff, from the last segment stored: what was received and not
// stored is received again. Transactions not yet stored when ctx ends are not stored (they are
// read again at the next start).
func (a *Archiver) Run(ctx context.Context) error {
	backoff := minBackoff
	for {
		progressed, err := a.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			backoff = minBackoff
		}
		var ns *errNotServable
		if errors.As(err, &ns) {
			if err = a.refused(ctx, ns); err == nil {
				continue
			}
		}
		a.mu.Lock()
		a.stats.Errors++
		a.mu.Unlock()
		level := slog.LevelWarn
		if errors.As(err, new(*errReported)) {
			level = slog.LevelDebug // logged, and told to OnProblem, once
		}
		a.log.Log(ctx, level, "binlog archiving failed: retrying", "error", err.Error(), "in", backoff.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// session connects once and archives until the connection or the store fails. progressed says
// that it stored something.
func (a *Archiver) session(ctx context.Context) (bool, error) {
	if !a.tailRead {
		if err := a.readTail(ctx); err != nil {
			return false, err
		}
	}
	addr, err := a.o.Address(ctx)
	if err != nil {
		return false, fmt.Errorf("find the primary: %w", err)
	}
	a.mu.Lock()
	a.stats.Server = addr
	a.mu.Unlock()
	if !a.nextSet {
		switch {
		case !a.empty:
			a.next = a.end
		case a.o.Start != nil:
			a.next = *a.o.Start
		default:
			if a.next, err = a.o.source.position(ctx, addr); err != nil {
				return false, err
			}
			a.log.Info("the binlog archive is empty: it starts at the server's position", "server", addr, "position", a.next.String())
		}
		a.nextSet = true
	}
	es, err := a.o.source.open(ctx, addr, a.next)
	if err != nil {
		return false, err
	}
	defer es.close()
	a.log.Info("following the binary log", "server", addr, "from", a.next.String())
	defer a.setConnected(false)
	return a.follow(ctx, es, addr)
}

// follow reads one connection's events into segments and stores them.
func (a *Archiver) follow(ctx context.Context, es eventStream, addr string) (progressed bool, err error) {
	seg := newSegment(a.next)
	var (
		asm   assembler
		enc   encoding
		first = true
	)
	flush := func() error {
		if err := a.store(ctx, seg, addr); err != nil {
			return err
		}
		progressed, seg = true, newSegment(a.next)
		return nil
	}
	for {
		evCtx, cancel := ctx, context.CancelFunc(func() {})
		if seg.pending() {
			evCtx, cancel = context.WithDeadline(ctx, seg.arrived.Add(a.o.FlushInterval))
		}
		ev, err := es.next(evCtx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && seg.pending() && errors.Is(err, context.DeadlineExceeded) {
				if err := flush(); err != nil {
					return progressed, err
				}
				continue
			}
			return progressed, err
		}
		now := a.o.now()
		a.received(now)
		if first {
			first = false
			if a.stepBack > 0 {
				if err := a.retract(ctx, addr); err != nil {
					return progressed, err
				}
				progressed = true
			}
		}
		if ev.Header.EventType == replication.FORMAT_DESCRIPTION_EVENT {
			fde, ok := ev.Event.(*replication.FormatDescriptionEvent)
			if !ok || asm.inTransaction() {
				return progressed, errors.New("a Format_description event inside a transaction")
			}
			next := encoding{fde: bytes.Clone(ev.RawData), format: formatOf(fde), serverID: ev.Header.ServerID}
			if seg.pending() && next.format != seg.enc.format {
				if err := flush(); err != nil { // a segment has one encoding
					return progressed, err
				}
			}
			enc, asm.crc = next, next.format.crc()
			continue
		}
		t, err := asm.add(ev)
		if err != nil {
			return progressed, err
		}
		if t != nil {
			if enc.fde == nil {
				return progressed, fmt.Errorf("transaction %s before any Format_description event", t.gtid)
			}
			if err := seg.add(t, enc, now); err != nil {
				return progressed, err
			}
			a.pending(seg)
		}
		if seg.pending() && (int64(seg.buf.Len()) >= a.o.MaxSegmentBytes || !now.Before(seg.arrived.Add(a.o.FlushInterval))) {
			if err := flush(); err != nil {
				return progressed, err
			}
		}
	}
}

// store writes a segment and makes it the archive's end.
func (a *Archiver) store(ctx context.Context, seg *segment, addr string) error {
	written, err := writtenAfter(a.o.now(), a.lastWritten)
	if err != nil {
		return fmt.Errorf("store segment: %w", err)
	}
	m, key, err := seg.write(ctx, a.st, writeOptions{recipients: a.o.Recipients, keys: a.o.Keys, server: Server{Address: addr}}, written)
	if err != nil {
		return err
	}
	a.lastWritten = written.UnixNano()
	a.advance(segRef{key: key, start: m.Start, end: m.End})
	stored := a.o.now()
	lag := stored.Sub(m.FirstTime)
	a.mu.Lock()
	a.stats.Segments++
	a.stats.Transactions += m.Transactions
	a.stats.RawBytes += m.RawBytes
	a.stats.StoredBytes += m.StoredBytes
	a.stats.LastGTID, a.stats.LastTime = m.Last(), m.LastTime
	a.stats.LastStored, a.stats.LastLag = stored, lag
	a.stats.Pending, a.stats.OldestPending = 0, time.Time{}
	a.mu.Unlock()
	a.log.Debug("binlog segment stored", "key", key, "first", m.FirstGTID, "last", m.LastGTID, "transactions", m.Transactions, "bytes", m.StoredBytes, "lag", lag.String())
	if a.o.OnSegment != nil {
		a.o.OnSegment(m)
	}
	return nil
}

// advance makes a stored segment the archive's end.
func (a *Archiver) advance(r segRef) {
	a.empty = false
	a.end, a.next, a.nextSet = r.end, r.end, true
	a.recent = append(a.recent, r)
	if over := len(a.recent) - a.o.MaxStepBack; over > 0 {
		a.recent = slices.Delete(a.recent, 0, over)
	}
	a.mu.Lock()
	a.stats.End = r.end
	a.mu.Unlock()
}

func (a *Archiver) received(now time.Time) {
	a.mu.Lock()
	a.stats.Connected, a.stats.LastReceived = true, now
	a.mu.Unlock()
}

func (a *Archiver) setConnected(c bool) {
	a.mu.Lock()
	a.stats.Connected = c
	a.stats.Pending, a.stats.OldestPending = 0, time.Time{}
	a.mu.Unlock()
}

func (a *Archiver) pending(seg *segment) {
	a.mu.Lock()
	a.stats.Pending, a.stats.OldestPending = seg.txns, seg.firstTime
	a.mu.Unlock()
}

// refused handles a server's refusal to send its binary log from a.next (refusalOf says why).
// nil: connect again at once, from the new a.next.
func (a *Archiver) refused(ctx context.Context, ns *errNotServable) error {
	switch refusalOf(ns.msg) {
	case refusalDiverged:
		if a.stepBackOnce() {
			a.log.Debug("the server does not have that position in its history: stepping back one segment", "from", ns.from.String(), "to", a.next.String(), "reason", ns.msg)
			return nil
		}
		return a.unresolved(ctx, ns)
	case refusalPurged:
		if a.stepBack > 0 {
			// The server does not have the archive's end in its history, and its binary logs
			// are purged where the archiver stepped back to: where the histories part is lost.
			return a.unresolved(ctx, ns)
		}
		return a.gap(ctx, ns)
	}
	a.resetStepBack()
	return ns
}

// stepBackOnce prepares the next connection to start one segment further back, if the archive
// has one more recent segment to step back over. It never steps back to the empty position: a
// server sends its binary log from a GTID position only if that GTID is in its history (the
// archiver asks in GTID strict mode), which is what makes a step back safe; every server with
// its first binary log sends from the empty position, a new and empty database too.
func (a *Archiver) stepBackOnce() bool {
	if a.empty || a.stepBack >= len(a.recent) || len(a.recent[len(a.recent)-a.stepBack-1].start) == 0 {
		return false
	}
	a.stepBack++
	a.next = a.recent[len(a.recent)-a.stepBack].start
	return true
}

// resetStepBack makes the next connection start from the archive's end again.
func (a *Archiver) resetStepBack() {
	if !a.empty {
		a.next = a.end
	}
	a.stepBack = 0
}

// mark writes an empty segment at pos (see the package doc), for the reason given.
func (a *Archiver) mark(ctx context.Context, addr string, pos Position, reason string) (string, error) {
	written, err := writtenAfter(a.o.now(), a.lastWritten)
	if err != nil {
		return "", fmt.Errorf("store segment: %w", err)
	}
	base, err := segmentKey(pos, pos, written)
	if err != nil {
		return "", fmt.Errorf("store segment: %w", err)
	}
	m := Manifest{Version: ManifestVersion, Start: pos, End: pos, Server: Server{Address: addr}, Written: written, Reason: reason}
	if err := writeManifest(ctx, a.st, a.o.Keys, base, m); err != nil {
		return "", err
	}
	a.lastWritten = written.UnixNano()
	return base, nil
}

// retract writes an empty segment at the position the archiver stepped back to, before anything
// else from the new connection: it supersedes the segments stepped back over at once (the
// server does not have their transactions), whether or not more transactions follow soon.
func (a *Archiver) retract(ctx context.Context, addr string) error {
	stepped := a.recent[len(a.recent)-a.stepBack:]
	keys := make([]string, len(stepped))
	for i, r := range stepped {
		keys[i] = r.key
	}
	from, pos := a.end, a.next
	msg := fmt.Sprintf("the server %s does not have the binlog archive's end %s but has %s: the archive held transactions that the server never kept "+
		"(a failed primary's last ones, lost in the failover); the %d segments after %s are superseded and the archive continues from there", addr, from, pos, len(keys), pos)
	base, err := a.mark(ctx, addr, pos, "step back: "+msg)
	if err != nil {
		return err
	}
	a.recent = a.recent[:len(a.recent)-a.stepBack]
	a.stepBack = 0
	a.advance(segRef{key: base, start: pos, end: pos})
	a.mu.Lock()
	a.stats.Divergences++
	a.mu.Unlock()
	a.report(Problem{Kind: ProblemDivergence, Server: addr, From: from, To: pos, Superseded: keys, Message: msg})
	return nil
}

// archiveEnd is where the archive ends, for a problem: its end, or for an empty archive the
// start asked of the server.
func (a *Archiver) archiveEnd(ns *errNotServable) Position {
	if a.empty {
		return ns.from
	}
	return a.end
}

// gap handles a server whose binary logs after the archive's end were purged before they were
// archived: it writes an empty segment at the server's position, so that the archive shows the
// hole at once, reports it, and continues from there.
func (a *Archiver) gap(ctx context.Context, ns *errNotServable) error {
	addr := a.Stats().Server
	cur, err := a.o.source.position(ctx, addr)
	if err != nil {
		return err
	}
	if cur.Equal(ns.from) {
		return fmt.Errorf("the server %s cannot send its binary log even from its own position %s: %s", addr, cur, ns.msg)
	}
	from := a.archiveEnd(ns)
	if len(cur.Behind(from)) > 0 {
		return a.behind(addr, from, cur)
	}
	msg := fmt.Sprintf("the server %s no longer has its binary logs after %s (%s): they were purged before they were archived; "+
		"the binlog archive misses the transactions from %s to %s and continues at %s. A point-in-time recovery cannot cross "+
		"this hole: take a dump now (agent backup)", addr, from, ns.msg, from, cur, cur)
	base, err := a.mark(ctx, addr, cur, "gap: "+msg)
	if err != nil {
		return err
	}
	a.advance(segRef{key: base, start: cur, end: cur})
	a.mu.Lock()
	a.stats.Gaps++
	a.mu.Unlock()
	a.report(Problem{Kind: ProblemGap, Server: addr, From: from, To: cur, Message: msg})
	return nil
}

// unresolved handles a server that does not have the archive's end in its history when stepping
// back found no segment start it can send from: archiving stops (a server behind the archive,
// or one whose history parted from the archive's too far back) until a person acts. The
// archiver does not jump to the server's position: the archive would go on claiming the
// transactions the server does not have.
func (a *Archiver) unresolved(ctx context.Context, ns *errNotServable) error {
	stepped := a.stepBack
	a.resetStepBack()
	addr := a.Stats().Server
	cur, err := a.o.source.position(ctx, addr)
	if err != nil {
		return err
	}
	from := a.archiveEnd(ns)
	if len(cur.Behind(from)) > 0 {
		return a.behind(addr, from, cur)
	}
	var msg string
	if a.empty {
		msg = fmt.Sprintf("the binlog archive stopped: the server %s (at %s) does not have the position %s where the empty archive starts, the newest dump's, "+
			"in its history (%s): that dump is of another history. Nothing is archived until a person acts: take a dump now (agent backup) and restart the agent, "+
			"so that the archive starts after it", addr, cur, from, ns.msg)
	} else {
		msg = fmt.Sprintf("the binlog archive stopped: the server %s (at %s) does not have the archive's end %s in its history, and stepping back over %d segments "+
			"(at most %d) found no position it can send from (%s): the archive holds transactions this server never had, and where their histories part is "+
			"further back or in binary logs it purged. Nothing is archived from this server until a person acts: if it is the right primary, take a dump now "+
			"(agent backup), then rebase the archive at the server's position (binlog.Rebase) and restart the agent", addr, cur, from, stepped, a.o.MaxStepBack, ns.msg)
	}
	a.report(Problem{Kind: ProblemUnresolvedDivergence, Server: addr, From: from, To: cur, Message: msg})
	return &errReported{msg: msg}
}

// behind reports a server behind the archive's end: nothing is archived from it.
func (a *Archiver) behind(addr string, from, cur Position) error {
	msg := fmt.Sprintf("the server %s is at %s, behind the binlog archive's end %s: it is another database, or one restored to an earlier point "+
		"(a restore rebases the archive: binlog.Rebase); nothing is archived from it until then", addr, cur, from)
	a.report(Problem{Kind: ProblemBehind, Server: addr, From: from, To: cur, Message: msg})
	return &errReported{msg: msg}
}

// errReported is a failure already reported as a Problem: retried like any other, but logged
// at debug level, so that a problem that lasts is not logged at every retry.
type errReported struct{ msg string }

func (e *errReported) Error() string { return e.msg }

// report logs a problem and tells OnProblem, once for the same one in a row (the same kind,
// server and archive's end: the server's position may change meanwhile).
func (a *Archiver) report(p Problem) {
	id := fmt.Sprintf("%s %s %s", p.Kind, p.Server, p.From)
	if id == a.lastProblem {
		return
	}
	a.lastProblem = id
	p.Time = a.o.now()
	a.log.Error("binlog archive problem", "kind", string(p.Kind), "server", p.Server, "from", p.From.String(), "to", p.To.String(), "message", p.Message)
	if a.o.OnProblem != nil {
		a.o.OnProblem(p)
	}
}

// readTail finds the archive's end and its last segments, reading manifests from the last
// written back (not the whole archive): the last written valid segment ends the archive, and
// a segment before it is used when it starts before every segment written after it.
func (a *Archiver) readTail(ctx context.Context) error {
	objs, err := a.st.List(ctx)
	if err != nil {
		return fmt.Errorf("read the binlog archive's end: %w", err)
	}
	groups, _ := groupObjects(objs)
	slices.SortFunc(groups, func(x, y *objectGroup) int { return cmp.Compare(y.info.written, x.info.written) })
	lo := ListOptions{Keys: a.o.Keys, AllowUnsigned: a.o.Keys == nil}
	now := a.o.now()
	var used []segRef
	var lowest *uint64
	for _, g := range groups {
		if len(used) > a.o.MaxStepBack {
			break
		}
		if !g.has[manifestSuffix] || lowest != nil && g.info.start >= *lowest {
			continue
		}
		if inFuture(g.info.written, now) {
			a.log.Error("binlog segment written in the future: not resumed from, and its writing time is ignored", "key", g.info.base, "written", g.info.writtenTime(), "hint", futureHint)
			continue
		}
		s, problem, err := readSegmentManifest(ctx, a.st, lo, g)
		if err != nil {
			return fmt.Errorf("read the binlog archive's end: %w", err)
		}
		if problem != "" {
			a.log.Warn("binlog segment not used", "key", g.info.base, "problem", problem)
			continue
		}
		// New segments are written after the latest the archive accepts (writtenAfter): the
		// first one here, as groups are in writing order, latest first.
		a.lastWritten = max(a.lastWritten, g.info.written)
		start := s.Manifest.Start.Ordinal()
		lowest = &start
		used = append(used, segRef{key: s.Key, start: s.Manifest.Start, end: s.Manifest.End})
	}
	slices.Reverse(used)
	a.tailRead, a.empty = true, len(used) == 0
	if a.empty {
		a.log.Info("the binlog archive is empty")
		return nil
	}
	last := used[len(used)-1]
	a.recent = used[:len(used)-1]
	a.advance(last)
	a.log.Info("the binlog archive read", "end", last.end.String(), "segment", last.key)
	return nil
}

// boundedStore bounds every store operation of the archiver by a timeout: a store that stops
// answering fails the operation instead of blocking the archive.
type boundedStore struct {
	Store
	long, short time.Duration // segment data and listings; manifests and signatures
}

func (s boundedStore) List(ctx context.Context) ([]backup.Object, error) {
	ctx, cancel := context.WithTimeout(ctx, s.long)
	defer cancel()
	return s.Store.List(ctx)
}

func (s boundedStore) Upload(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.long)
	defer cancel()
	return s.Store.Upload(ctx, key, r, contentType)
}

func (s boundedStore) Put(ctx context.Context, key string, data []byte, contentType string) error {
	ctx, cancel := context.WithTimeout(ctx, s.short)
	defer cancel()
	return s.Store.Put(ctx, key, data, contentType)
}

// Get bounds the request and the reading of the object, until it is closed.
func (s boundedStore) Get(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.short)
	rc, n, err := s.Store.Get(ctx, key)
	if err != nil {
		cancel()
		return nil, 0, err
	}
	return cancelOnClose{ReadCloser: rc, cancel: cancel}, n, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
