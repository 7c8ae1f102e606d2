package binlog

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"filippo.io/age"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/mariadb"
)

// Store is the backup store as the archiver uses it: the bucket of the dumps. Keys are relative
// to the store's prefix; every key this package writes starts with Prefix.
type Store interface {
	backup.Catalog  // List, Get (ErrNotFound for a missing object)
	backup.Uploader // Upload: streams the segment's data object
	// Put stores a small object (a manifest, a signature) in one request.
	Put(ctx context.Context, key string, data []byte, contentType string) error
}

// segment is a segment being built: whole transactions after start, in the order received.
type segment struct {
	start, end Position
	enc        encoding
	buf        bytes.Buffer // the binary log file: magic, fde, the transactions' events
	txns       int64
	events     int64
	first      mariadb.GTID
	last       mariadb.GTID
	firstTime  time.Time
	lastTime   time.Time
	arrived    time.Time // when its first transaction arrived: the flush deadline counts from it
}

func newSegment(start Position) *segment { return &segment{start: start, end: start} }

func (s *segment) pending() bool { return s.txns > 0 }

// encoding is the Format_description event that transactions are encoded with, as received.
type encoding struct {
	fde      []byte
	format   format
	serverID uint32 // of the server that wrote the binary log
}

// add appends a whole transaction encoded as enc.
func (s *segment) add(t *txn, enc encoding, now time.Time) error {
	end, err := s.end.After(t.gtid)
	if err != nil {
		return err
	}
	if s.txns == 0 {
		s.enc, s.first, s.firstTime, s.arrived = enc, t.gtid, t.time, now
		s.buf.WriteString(binlogMagic)
		s.buf.Write(enc.fde)
	} else if enc.format != s.enc.format {
		return fmt.Errorf("transaction %s is encoded differently from the segment's first (%s, not %s)", t.gtid, enc.format.server, s.enc.format.server)
	}
	s.buf.Write(t.raw)
	s.end, s.last, s.lastTime = end, t.gtid, t.time
	s.txns++
	s.events += int64(t.events)
	return nil
}

// writeOptions say how segments are stored.
type writeOptions struct {
	recipients []age.Recipient      // encrypt to these (none: not encrypted)
	keys       *backup.ManifestKeys // sign manifests with the first (nil: unsigned)
	server     Server
}

// write stores the segment: its data object, then the manifest's signature, then the
// manifest, which makes it exist. A failure leaves at most objects without a manifest, which
// are no segment (List reports them as incomplete).
func (s *segment) write(ctx context.Context, st Store, o writeOptions, written time.Time) (Manifest, string, error) {
	m := Manifest{
		Version: ManifestVersion, Start: s.start, End: s.end, Transactions: s.txns, Events: s.events,
		Server: o.server, Written: written.UTC(),
	}
	base, err := segmentKey(s.start, s.end, written)
	if err != nil {
		return Manifest{}, "", fmt.Errorf("store segment: %w", err)
	}
	if s.txns > 0 {
		m.FirstGTID, m.LastGTID, m.FirstTime, m.LastTime = s.first.String(), s.last.String(), s.firstTime, s.lastTime
		m.Encrypted, m.Checksum = len(o.recipients) > 0, s.enc.format.checksumName()
		m.Server.Version, m.Server.ServerID = s.enc.format.server, s.enc.serverID
		key := dataKey(base, m.Encrypted)
		res, err := backup.Stream(ctx, bytes.NewReader(s.buf.Bytes()), st, key, o.recipients)
		if err != nil {
			return Manifest{}, "", fmt.Errorf("store segment %s: %w", base, err)
		}
		m.RawBytes, m.StoredBytes, m.SHA256 = res.RawBytes, res.StoredBytes, res.SHA256
	}
	if err := writeManifest(ctx, st, o.keys, base, m); err != nil {
		return Manifest{}, "", err
	}
	return m, base, nil
}

func writeManifest(ctx context.Context, st Store, keys *backup.ManifestKeys, base string, m Manifest) error {
	b, err := m.Encode()
	if err != nil {
		return fmt.Errorf("store segment %s: %w", base, err)
	}
	if keys.SigningKeyID() != "" {
		if err := st.Put(ctx, signatureKey(base), keys.Sign(b), "text/plain"); err != nil {
			return fmt.Errorf("store segment %s: signature: %w", base, err)
		}
	}
	if err := st.Put(ctx, manifestKey(base), b, "application/json"); err != nil {
		return fmt.Errorf("store segment %s: manifest: %w", base, err)
	}
	return nil
}

// Rebase writes an empty segment at pos: from now on the archive continues from pos, and the
// segments that go beyond it are superseded (see the package doc). A restore to a point in time
// calls it with the restored server's position, before the archiver runs again (the archiver
// reads the archive's end when it starts), so that the archive follows the restored history
// instead of the one the restore went back from.
func Rebase(ctx context.Context, st Store, keys *backup.ManifestKeys, pos Position, reason string) (Manifest, error) {
	if err := pos.check(); err != nil {
		return Manifest{}, fmt.Errorf("rebase the binlog archive: %w", err)
	}
	c, err := List(ctx, st, ListOptions{Keys: keys, AllowUnsigned: keys == nil})
	if err != nil {
		return Manifest{}, fmt.Errorf("rebase the binlog archive: %w", err)
	}
	now := time.Now()
	var latest int64
	for _, s := range slices.Concat(c.Segments, c.Superseded) {
		if w := s.Manifest.Written.UnixNano(); inFuture(w, now) {
			slog.Default().Error("binlog segment written in the future: its writing time is ignored", "key", s.Key, "written", s.Manifest.Written, "hint", futureHint)
		} else {
			latest = max(latest, w)
		}
	}
	written, err := writtenAfter(now, latest)
	if err != nil {
		return Manifest{}, fmt.Errorf("rebase the binlog archive: %w", err)
	}
	base, err := segmentKey(pos, pos, written)
	if err != nil {
		return Manifest{}, fmt.Errorf("rebase the binlog archive: %w", err)
	}
	m := Manifest{Version: ManifestVersion, Start: pos, End: pos, Written: written, Reason: reason}
	if err := writeManifest(ctx, st, keys, base, m); err != nil {
		return Manifest{}, fmt.Errorf("rebase the binlog archive: %w", err)
	}
	return m, nil
}

// maxFuture is how far after the clock a segment's writing time may be and still order new
// segments (a clock that went back a little): a new segment is written after the latest
// segment the archive accepts. A later one is junk, or its writer's clock was far off; its time
// is ignored (a time near the largest a key holds would leave no valid key for the next one).
const maxFuture = time.Hour

// futureHint tells a person what to do about a segment written in the future.
const futureHint = "until then it supersedes the segments written after it from its start on: if this clock is right, delete the segment"

// inFuture says whether a writing time (Unix nanoseconds) is more than maxFuture after now.
func inFuture(written int64, now time.Time) bool { return written > now.Add(maxFuture).UnixNano() }

// writtenAfter is the writing time of a new segment: now, or just after the latest segment's
// (Unix nanoseconds) if the clock went back, because the supersede rule orders segments by when
// they were written.
func writtenAfter(now time.Time, latest int64) (time.Time, error) {
	switch {
	case now.UnixNano() > latest:
		return now.UTC(), nil
	case latest == math.MaxInt64:
		return time.Time{}, fmt.Errorf("no writing time after the latest segment's (%d ns after 1970)", latest)
	}
	return time.Unix(0, latest+1).UTC(), nil
}
