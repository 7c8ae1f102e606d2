package binlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"filippo.io/age"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/mariadb"
)

// Stop says where a replay ends. Set at most one field; the zero Stop is the archive's end.
type Stop struct {
	// Time: every transaction committed at or before it (commit times are whole seconds). The
	// replay is a prefix of the history: it ends before the first transaction committed after
	// Time, even if a later one has an earlier timestamp.
	Time time.Time
	// GTID: up to and including this transaction.
	GTID mariadb.GTID
}

func (s Stop) byGTID() bool { return s.GTID != (mariadb.GTID{}) }
func (s Stop) byTime() bool { return !s.Time.IsZero() }

func (s Stop) String() string {
	switch {
	case s.byGTID():
		return "GTID " + s.GTID.String()
	case s.byTime():
		return s.Time.UTC().Format(time.DateTime) + " UTC"
	}
	return "the end of the archive"
}

// ReplayOptions say what to replay.
type ReplayOptions struct {
	// From is the restored dump's GTID position: the transactions after it are replayed.
	From       Position
	Stop       Stop
	Objects    backup.ObjectReader // reads the segments' data objects (with If-Match)
	Identities []age.Identity      // decrypt encrypted segments
	// Spool, when set, holds the segments the replay needs (Spool.Fetch with these options):
	// they are read from it, never from Objects, and a segment it does not hold fails the
	// replay.
	Spool *Spool
}

// segmentReader reads a segment and checks it (see OpenSegment); etag, when set, is the ETag of
// the object read before, which a second read of the store must find again.
type segmentReader func(ctx context.Context, s Segment, etag string) (*decoded, error)

// reader reads the segments of a replay: from the spool when there is one, else from the store.
func (o ReplayOptions) reader() segmentReader {
	if o.Spool != nil {
		return o.Spool.read
	}
	return func(ctx context.Context, s Segment, etag string) (*decoded, error) {
		return readSegment(ctx, o.Objects, s, o.Identities, etag)
	}
}

// Selection is what a replay holds.
type Selection struct {
	Transactions, Events int64
	FirstGTID, LastGTID  mariadb.GTID // zero without transactions
	FirstTime, LastTime  time.Time
	// End is the position after the last transaction replayed (From when there is none).
	End Position
	// Segments are the keys of the segments read.
	Segments []string
	// Bytes is the size of the binary log stream (0 without transactions: nothing is written).
	Bytes int64
	// Covered says that the archive reaches the stop: the stop's GTID was found; or, for a
	// time, a transaction committed after it follows in the archive. When false, the archive
	// ends before the stop time (it may lag, or the archiver may be stopped): transactions
	// committed after LastTime and up to the stop time may exist that it does not have.
	Covered bool
}

// part is what a replay takes from one segment: its transactions [lo, hi).
type part struct {
	seg    Segment
	etag   string
	lo, hi int
}

// Select verifies every segment a replay needs (see OpenSegment) and returns what the replay
// would hold, writing nothing: a restore's dry run, or its check before it touches a database.
func Select(ctx context.Context, c *Chain, o ReplayOptions) (Selection, error) {
	sel, _, err := plan(ctx, c, o, o.reader())
	return sel, err
}

// WriteStream writes one binary log stream for the replay to w: the binary log magic, a
// Format_description event, and the selected transactions' events as the server logged them
// (another Format_description event before any transaction encoded differently, such as after a
// server upgrade). `mariadb-binlog - | mariadb` applies it. Before writing anything it verifies
// every segment it needs, refusing a missing or corrupt one with an error that names it; then it
// reads them again, each only if it is still the object verified, and checks each again before
// writing any of it. Without transactions to replay it writes nothing.
//
// Without a spool, an error after the first write (the store failing during the second read)
// leaves a stream that ends early: a consumer must then treat what it applied as incomplete.
// With one (o.Spool), both reads are of the spool's local copies: the store is not read at all.
func WriteStream(ctx context.Context, w io.Writer, c *Chain, o ReplayOptions) (Selection, error) {
	read := o.reader()
	sel, parts, err := plan(ctx, c, o, read)
	if err != nil {
		return sel, err
	}
	out := &countingWriter{w: w}
	var cur *format
	for _, p := range parts {
		d, err := read(ctx, p.seg, p.etag)
		if err != nil {
			return sel, err
		}
		if len(d.txns) < p.hi {
			return sel, &SegmentError{Key: p.seg.Key, Problem: "it changed between its two reads"}
		}
		if cur == nil {
			io.WriteString(out, binlogMagic)
		}
		if cur == nil || *cur != d.format {
			out.Write(d.fde)
			cur = &d.format
		}
		for _, t := range d.txns[p.lo:p.hi] {
			out.Write(t.raw)
		}
		if out.err != nil {
			return sel, fmt.Errorf("write the binlog stream: %w", out.err)
		}
	}
	sel.Bytes = out.n
	return sel, nil
}

// plan finds the segments a replay needs, reads and verifies each with read, and selects its
// transactions.
func plan(ctx context.Context, c *Chain, o ReplayOptions, read segmentReader) (Selection, []part, error) {
	sel := Selection{End: o.From}
	if o.Stop.byGTID() && o.Stop.byTime() {
		return sel, nil, errors.New("replay the binlog archive: stop at a time or at a GTID, not both")
	}
	segs := c.Segments
	if len(segs) == 0 {
		return sel, nil, errors.New("replay the binlog archive: the archive is empty")
	}
	first := c.holding(o.From)
	if first < 0 {
		return sel, nil, fromOutside(c, o.From)
	}
	if o.Stop.byGTID() && o.From.Includes(o.Stop.GTID) {
		if g, _ := o.From.Seq(o.Stop.GTID.Domain); g != o.Stop.GTID {
			return sel, nil, fmt.Errorf("replay the binlog archive: GTID %s is not after the dump's position %s (which has %s): restore an older dump", o.Stop.GTID, o.From, g)
		}
		sel.Covered = true // the dump itself is the point asked for
		return sel, nil, nil
	}
	var parts []part
	pos := o.From
	for j := first; j < len(segs); j++ {
		s := segs[j]
		if j > first && !segs[j-1].End().Equal(s.Manifest.Start) {
			return sel, nil, holeInTheWay(segs[j-1], s, o.Stop)
		}
		if o.Stop.byTime() && j > first && !s.Manifest.Empty() && s.Manifest.FirstTime.After(o.Stop.Time) {
			sel.Covered = true
			return sel, parts, nil
		}
		if s.Manifest.Empty() || j == first && o.From.Equal(s.End()) {
			continue // nothing in it to replay
		}
		d, err := read(ctx, s, "")
		if err != nil {
			return sel, nil, err
		}
		sel.Segments = append(sel.Segments, s.Key)
		p, done, err := pick(d, s, &pos, o.Stop, j == first)
		if err != nil {
			return sel, nil, err
		}
		p.etag = d.etag
		if p.hi > p.lo {
			parts = append(parts, p)
			sel.add(d.txns[p.lo:p.hi])
		}
		sel.End = pos
		if done {
			sel.Covered = true
			return sel, parts, nil
		}
	}
	if o.Stop.byGTID() {
		return sel, nil, fmt.Errorf("replay the binlog archive: GTID %s is not in the archive, which ends at %s", o.Stop.GTID, c.End())
	}
	sel.Covered = !o.Stop.byTime()
	return sel, parts, nil
}

// pick selects the transactions of one verified segment: after pos (the dump's position, in the
// first segment), up to the segment's cut, up to the stop. It advances pos over them and says
// whether the stop was reached.
func pick(d *decoded, s Segment, pos *Position, stop Stop, first bool) (part, bool, error) {
	p := part{seg: s}
	at := s.Manifest.Start
	if first {
		// Skip what the dump holds; the dump's position must be one of the segment's.
		for p.lo < len(d.txns) && pos.Includes(d.txns[p.lo].gtid) {
			at, _ = at.After(d.txns[p.lo].gtid)
			p.lo++
		}
		if !at.Equal(*pos) {
			return p, false, fmt.Errorf("replay the binlog archive: the dump's position %s is not a point of the archive's history "+
				"(segment %s goes from %s through %s there): the dump was taken from another history than the archive's", *pos, s.Key, s.Manifest.Start, at)
		}
	}
	for p.hi = p.lo; p.hi < len(d.txns); p.hi++ {
		t := d.txns[p.hi]
		if s.Until != nil && !s.Until.Includes(t.gtid) {
			break
		}
		if stop.byTime() && t.time.After(stop.Time) {
			return p, true, nil
		}
		if stop.byGTID() && t.gtid.Domain == stop.GTID.Domain && t.gtid.Seq >= stop.GTID.Seq && t.gtid != stop.GTID {
			return p, false, fmt.Errorf("replay the binlog archive: GTID %s is not in the archive: segment %s has %s there", stop.GTID, s.Key, t.gtid)
		}
		next, err := pos.After(t.gtid)
		if err != nil {
			return p, false, &SegmentError{Key: s.Key, Problem: err.Error()}
		}
		*pos = next
		if stop.byGTID() && t.gtid == stop.GTID {
			p.hi++
			return p, true, nil
		}
	}
	if s.Until != nil && !pos.Equal(s.Until) {
		return p, false, fmt.Errorf("replay the binlog archive: segment %s was cut at %s by a later segment, but its transactions do not pass through that position", s.Key, s.Until)
	}
	return p, false, nil
}

func (sel *Selection) add(txns []*txn) {
	if sel.Transactions == 0 {
		sel.FirstGTID, sel.FirstTime = txns[0].gtid, txns[0].time
	}
	for _, t := range txns {
		sel.Transactions++
		sel.Events += int64(t.events)
	}
	last := txns[len(txns)-1]
	sel.LastGTID, sel.LastTime = last.gtid, last.time
}

// fromOutside explains why no segment holds the dump's position.
func fromOutside(c *Chain, from Position) error {
	first, end := c.Segments[0], c.End()
	switch {
	case from.Ordinal() < first.Manifest.Start.Ordinal():
		return fmt.Errorf("replay the binlog archive: the archive starts at %s (%s), after the dump's position %s: "+
			"the transactions between them are not archived; restore a newer dump", first.Manifest.Start, timeOrUnknown(first.Manifest.FirstTime), from)
	case from.Ordinal() > end.Ordinal():
		return fmt.Errorf("replay the binlog archive: the dump's position %s is after the archive's end %s", from, end)
	}
	for _, h := range c.Holes {
		if from.Ordinal() > h.From.Ordinal() && from.Ordinal() < h.To.Ordinal() {
			return fmt.Errorf("replay the binlog archive: the dump's position %s falls into a hole of the archive (from %s to %s): restore a dump taken after %s", from, h.From, h.To, h.To)
		}
	}
	return fmt.Errorf("replay the binlog archive: the dump's position %s is not in the archive's history (%s to %s)", from, first.Manifest.Start, end)
}

// holeInTheWay is the error of a replay that would have to cross a hole.
func holeInTheWay(before, after Segment, stop Stop) error {
	return fmt.Errorf("replay the binlog archive to %s: the archive has a hole from %s (segment %s, last commit %s) to %s (segment %s, first commit %s): "+
		"it cannot replay across it; restore to a point before the hole, or from a dump taken after it",
		stop, before.End(), before.Key, timeOrUnknown(before.Manifest.LastTime), after.Manifest.Start, after.Key, timeOrUnknown(after.Manifest.FirstTime))
}

func timeOrUnknown(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format(time.DateTime) + " UTC"
}

type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}
