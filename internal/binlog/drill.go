package binlog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hastack/hastack/internal/backup"
)

// DrillReplay is the point-in-time part of a restore drill (backup.DrillReplay): the archive's
// transactions after o.From committed up to point. Its Expect tallies them (Tally: every segment
// verified, nothing applied); its Apply writes the same stream to apply, which runs it on the
// scratch server (mariadb.ContainerServer.ApplyBinlog), and tallies what it wrote. With o.Spool
// (fetched with o.Stop at point), both read the segments only from the spool.
func DrillReplay(c *Chain, o ReplayOptions, point time.Time, apply func(ctx context.Context, stream io.Reader) error) *backup.DrillReplay {
	o.Stop = Stop{Time: point}
	return &backup.DrillReplay{
		Point: point,
		Expect: func(ctx context.Context) (backup.ArchiveChanges, error) {
			_, ch, err := Tally(ctx, c, o)
			return ch, err
		},
		Apply: func(ctx context.Context) (backup.ArchiveChanges, error) { return applyTallied(ctx, c, o, apply) },
	}
}

// Apply streams the replay of the segments o selects (WriteStream) into apply, which reads it
// (the database's client), and says what it replayed. An error says which side failed: the
// archive (the replay is incomplete), or apply, whose own error is returned.
func Apply(ctx context.Context, c *Chain, o ReplayOptions, apply func(ctx context.Context, stream io.Reader) error) (Selection, error) {
	var sel Selection
	err := applyStream(ctx, apply, func(ctx context.Context, w io.Writer) (err error) {
		sel, err = WriteStream(ctx, w, c, o)
		return err
	})
	return sel, err
}

// applyTallied is Apply, tallying what the replay changes (WriteStreamTally).
func applyTallied(ctx context.Context, c *Chain, o ReplayOptions, apply func(ctx context.Context, stream io.Reader) error) (backup.ArchiveChanges, error) {
	var changes backup.ArchiveChanges
	err := applyStream(ctx, apply, func(ctx context.Context, w io.Writer) (err error) {
		_, changes, err = WriteStreamTally(ctx, w, c, o)
		return err
	})
	return changes, err
}

// applyStream runs write into a pipe that apply reads, and sorts out whose error it was.
func applyStream(ctx context.Context, apply func(ctx context.Context, stream io.Reader) error, write func(ctx context.Context, w io.Writer) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := write(ctx, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	in := bufio.NewReader(pr)
	var applyErr error
	if _, err := in.Peek(1); err == nil {
		applyErr = apply(ctx, in)
	} // else: nothing to replay (no transaction), or the archive failed: said below
	if applyErr != nil {
		cancel()
	}
	pr.CloseWithError(errStoppedReading)
	writeErr := <-done
	// The stream's error is the cause unless it comes from the database having stopped.
	archiveFailed := writeErr != nil && !errors.Is(writeErr, errStoppedReading) && !(applyErr != nil && errors.Is(writeErr, context.Canceled))
	switch {
	case archiveFailed:
		return fmt.Errorf("the binlog archive, while replaying: %w (the replay is incomplete)", writeErr)
	case applyErr != nil:
		return applyErr
	case writeErr != nil:
		return errors.New("the database stopped reading the binlog stream before its end (the replay is incomplete)")
	}
	return nil
}

var errStoppedReading = errors.New("the database stopped reading")

// DrillWindow is the time a point-in-time restore can reach with the backups and the archive
// at hand: from the oldest complete backup whose GTID position the archive replays from without
// a hole, to the archive's last transaction.
type DrillWindow struct {
	From, To time.Time
	Oldest   string // that backup's ID
}

// NewDrillWindow finds the window of entries (complete backups among them) and c.
func NewDrillWindow(entries []backup.Entry, c *Chain) (DrillWindow, error) {
	var w DrillWindow
	for _, e := range entries {
		if !e.Complete || e.Manifest == nil {
			continue
		}
		p, err := ParsePosition(e.Manifest.GTID)
		if err != nil || !c.ReplayableFrom(p) {
			continue
		}
		if w.Oldest == "" || e.Manifest.Started.Before(w.From) {
			w.From, w.Oldest = e.Manifest.Started, e.ID
		}
	}
	if w.Oldest == "" {
		return w, errors.New("no complete backup has a GTID position from which the binlog archive replays without a hole (agent backups --archive shows the archive's span and holes)")
	}
	w.To = c.lastCommit()
	if w.To.Before(w.From) {
		w.To = w.From // nothing committed since: the window is the backup's time
	}
	return w, nil
}

// Random returns a whole second of the window drawn uniformly at random; n(k) returns a number
// in [0, k) (math/rand/v2's Int64N).
func (w DrillWindow) Random(n func(int64) int64) time.Time {
	lo := w.From.Truncate(time.Second)
	if lo.Before(w.From) {
		lo = lo.Add(time.Second)
	}
	hi := w.To.Truncate(time.Second)
	if hi.Before(lo) {
		return w.To
	}
	return lo.Add(time.Duration(n(int64(hi.Sub(lo)/time.Second)+1)) * time.Second)
}

// ReplayableFrom says whether the archive can replay from p to its end: a segment holds p, and
// no hole follows it (as a replay finds it; the transactions are checked when it reads them).
func (c *Chain) ReplayableFrom(p Position) bool {
	segs := c.Segments
	first := c.holding(p)
	if first < 0 {
		return false
	}
	for j := first + 1; j < len(segs); j++ {
		if !segs[j-1].End().Equal(segs[j].Manifest.Start) {
			return false
		}
	}
	return true
}

// holding is the index of the segment a replay from p starts in: the last one whose span holds
// p; -1 when none does.
func (c *Chain) holding(p Position) int {
	for i := len(c.Segments) - 1; i >= 0; i-- {
		if p.Within(c.Segments[i].Manifest.Start, c.Segments[i].End()) {
			return i
		}
	}
	return -1
}

// lastCommit is the commit time of the archive's last transaction (of a transaction near it, if
// its last segment with transactions was cut); zero without transactions.
func (c *Chain) lastCommit() time.Time {
	for i := len(c.Segments) - 1; i >= 0; i-- {
		s := c.Segments[i]
		switch {
		case s.Manifest.Empty():
			continue
		case s.Until == nil:
			return s.Manifest.LastTime
		}
		return s.Manifest.FirstTime // its first transaction is used: Until is after its start
	}
	return time.Time{}
}
