package binlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/klauspost/compress/zstd"

	"github.com/hastack/hastack/internal/backup"
)

// SegmentError says what is wrong with a segment's stored data. errors.Is(err,
// backup.ErrCorrupt) holds for it, as for a corrupt dump.
type SegmentError struct {
	Key     string
	Problem string
}

func (e *SegmentError) Error() string {
	return fmt.Sprintf("binlog segment %s is corrupt: %s", e.Key, e.Problem)
}

// Unwrap makes errors.Is(err, backup.ErrCorrupt) true.
func (e *SegmentError) Unwrap() error { return backup.ErrCorrupt }

// OpenSegment reads a segment of a Chain (List checked its manifest and its signature) and
// returns its binary log file, a file that mariadb-binlog reads, once it checked all of it: the
// stored object's size and SHA-256 against the manifest, that it decrypts with identities (when
// it is encrypted) and decompresses to the manifest's size, every event's checksum, and that it
// holds exactly the whole transactions the manifest says. An empty segment has no file (nil).
func OpenSegment(ctx context.Context, r backup.ObjectReader, s Segment, identities []age.Identity) ([]byte, error) {
	v, err := readSegment(ctx, r, s, identities, "")
	if err != nil {
		return nil, err
	}
	return v.plain, nil
}

// decoded is a checked segment.
type decoded struct {
	plain  []byte // the binary log file
	etag   string // of the object read, for reading the same object again
	size   int64
	fde    []byte // its Format_description event
	format format
	txns   []*txn
}

// readSegment reads and checks a segment's data object; with ifMatch, only if the object's ETag
// is still that one.
func readSegment(ctx context.Context, r backup.ObjectReader, s Segment, identities []age.Identity, ifMatch string) (*decoded, error) {
	m := s.Manifest
	if m.Empty() {
		return &decoded{}, nil
	}
	if m.Encrypted && len(identities) == 0 {
		return nil, fmt.Errorf("binlog segment %s is encrypted: give the age identity file (backup.age_identity_file or --identity)", s.Key)
	}
	key := dataKey(s.Key, m.Encrypted)
	body, size, etag, err := r.Open(ctx, key, ifMatch)
	if err != nil {
		return nil, fmt.Errorf("read binlog segment %s: %w", s.Key, err)
	}
	defer body.Close()
	if ifMatch != "" && etag != ifMatch {
		return nil, fmt.Errorf("read binlog segment %s again: the store answered with another object (ETag %s, not %s): it was replaced after it was verified", s.Key, etag, ifMatch)
	}
	corrupt := func(format string, args ...any) error {
		return &SegmentError{Key: s.Key, Problem: fmt.Sprintf(format, args...)}
	}
	if size >= 0 && size != m.StoredBytes {
		return nil, corrupt("the object %s is %d bytes, the manifest says %d", key, size, m.StoredBytes)
	}
	stored, err := io.ReadAll(io.LimitReader(body, m.StoredBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("read binlog segment %s: %w", s.Key, err)
	case int64(len(stored)) != m.StoredBytes:
		return nil, corrupt("the object %s is %d bytes, the manifest says %d", key, len(stored), m.StoredBytes)
	}
	if sum := sha256.Sum256(stored); hex.EncodeToString(sum[:]) != m.SHA256 {
		return nil, corrupt("SHA-256 of %s is %x, the manifest says %s: it was altered after it was written", key, sum, m.SHA256)
	}
	plain, err := plaintext(stored, m, identities)
	if err != nil {
		return nil, corrupt("%v", err)
	}
	d, err := decodeSegment(plain, m)
	if err != nil {
		return nil, corrupt("%v", err)
	}
	d.etag, d.size = etag, size
	return d, nil
}

// plaintext decrypts (when encrypted) and decompresses a stored object, reading at most one
// byte more than the manifest's raw size: a larger one (a decompression bomb among them) is
// refused when it passes that size.
func plaintext(stored []byte, m Manifest, identities []age.Identity) ([]byte, error) {
	var in io.Reader = bytes.NewReader(stored)
	if m.Encrypted {
		dec, err := age.Decrypt(in, identities...)
		if err != nil {
			return nil, fmt.Errorf("it does not decrypt with the identities given: %w", err)
		}
		in = dec
	}
	zr, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	plain, err := io.ReadAll(io.LimitReader(zr, m.RawBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("it does not decompress: %w", err)
	case int64(len(plain)) != m.RawBytes:
		return nil, fmt.Errorf("it is %d bytes uncompressed, the manifest says %d", len(plain), m.RawBytes)
	}
	return plain, nil
}

// decodeSegment parses a segment's binary log file with go-mysql's parser (checking every
// event's checksum) and checks it against the manifest.
func decodeSegment(plain []byte, m Manifest) (d *decoded, err error) {
	if len(plain) < len(binlogMagic) || string(plain[:len(binlogMagic)]) != binlogMagic {
		return nil, errors.New("it is not a binary log file (no magic number)")
	}
	d = &decoded{plain: plain}
	p := replication.NewBinlogParser()
	p.SetFlavor("mariadb")
	p.SetRawMode(true)
	p.SetVerifyChecksum(true)
	var asm assembler
	events := int64(0)
	onEvent := func(ev *replication.BinlogEvent) error {
		if d.fde == nil {
			fde, ok := ev.Event.(*replication.FormatDescriptionEvent)
			if !ok {
				return fmt.Errorf("its first event is a %s event, not a Format_description event", ev.Header.EventType)
			}
			d.fde, d.format = ev.RawData, formatOf(fde)
			asm.crc = d.format.crc()
			return nil
		}
		if ev.Header.EventType == replication.FORMAT_DESCRIPTION_EVENT {
			return errors.New("a second Format_description event")
		}
		events++
		t, err := asm.add(ev)
		if t != nil {
			d.txns = append(d.txns, t)
		}
		return err
	}
	// go-mysql's decoders index the bytes they are given: a damaged file must fail, not panic.
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("it does not parse: %v", r)
		}
	}()
	if err := p.ParseReader(bytes.NewReader(plain[len(binlogMagic):]), onEvent); err != nil {
		return nil, fmt.Errorf("it does not parse: %w", err)
	}
	if d.fde == nil {
		return nil, errors.New("it has no Format_description event")
	}
	if asm.inTransaction() {
		return nil, fmt.Errorf("transaction %s has no end", asm.cur.gtid)
	}
	return d, d.check(m, events)
}

// check compares a segment's content with its manifest.
func (d *decoded) check(m Manifest, events int64) error {
	if int64(len(d.txns)) != m.Transactions || events != m.Events {
		return fmt.Errorf("it holds %d transactions in %d events, the manifest says %d in %d", len(d.txns), events, m.Transactions, m.Events)
	}
	if d.format.checksumName() != m.Checksum {
		return fmt.Errorf("its events' checksum is %s, the manifest says %s", d.format.checksumName(), m.Checksum)
	}
	pos := m.Start
	for _, t := range d.txns {
		next, err := pos.After(t.gtid)
		if err != nil {
			return err
		}
		pos = next
	}
	first, last := d.txns[0], d.txns[len(d.txns)-1]
	switch {
	case !pos.Equal(m.End):
		return fmt.Errorf("its transactions end at %s, the manifest says %s", pos, m.End)
	case first.gtid.String() != m.FirstGTID || last.gtid.String() != m.LastGTID:
		return fmt.Errorf("its transactions are %s to %s, the manifest says %s to %s", first.gtid, last.gtid, m.FirstGTID, m.LastGTID)
	case !first.time.Equal(m.FirstTime) || !last.time.Equal(m.LastTime):
		return fmt.Errorf("its commit times are %s to %s, the manifest says %s to %s", first.time, last.time, m.FirstTime, m.LastTime)
	}
	return nil
}
