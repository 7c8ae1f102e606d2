package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// ObjectReader opens a backup's dump object. With a non-empty ifMatch the object is read only if
// its ETag is still ifMatch: a restore reads the object twice (to verify it, then to load it)
// and both reads must see the same bytes.
type ObjectReader interface {
	Open(ctx context.Context, key, ifMatch string) (r io.ReadCloser, size int64, etag string, err error)
}

// ErrCorrupt is matched (errors.Is) by every error saying that a backup's dump object is not
// what its manifest describes: truncated, altered, undecryptable, or not a complete dump.
var ErrCorrupt = errors.New("backup is corrupt")

// CorruptError says what is wrong with a backup's dump object.
type CorruptError struct {
	ID      string
	Problem string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("backup %s is corrupt: %s", e.ID, e.Problem)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Progress is told how many bytes of the stored object were read so far; it may be nil.
type Progress func(read int64)

// Verified is a backup whose dump object was read end to end and matched its manifest.
type Verified struct {
	Manifest Manifest
	// ETag and Size of the object verified, as the store gave them: a later read must be
	// answered with the same, or it is refused as another object.
	ETag string
	Size int64
}

// Verify reads a backup's dump object end to end without touching any database and checks it
// against the manifest: its size and SHA-256, that it decrypts (with identities, when it is
// encrypted) and decompresses, that the dump is complete (mariadb-dump's closing line), and that
// every table and row count of the manifest is in it. Nothing is written to disk.
func Verify(ctx context.Context, m Manifest, r ObjectReader, identities []age.Identity, progress Progress) (Verified, error) {
	if err := m.Restorable(); err != nil {
		return Verified{}, err
	}
	if m.Encrypted && len(identities) == 0 {
		return Verified{}, fmt.Errorf("backup %s is encrypted: give the age identity file (backup.age_identity_file or --identity)", m.ID)
	}
	body, size, etag, err := r.Open(ctx, m.DumpKey, "")
	if err != nil {
		return Verified{}, fmt.Errorf("read backup %s: %w", m.ID, err)
	}
	defer body.Close()
	if etag == "" {
		// Without one, the second read (the load) cannot be tied to the object verified.
		return Verified{}, fmt.Errorf("read backup %s: the store gave no ETag for %s: a restore reads the object twice and must know that "+
			"the second read is the object it verified; use a store that gives ETags (every S3 does)", m.ID, m.DumpKey)
	}
	if size >= 0 && size != m.StoredBytes {
		return Verified{}, &CorruptError{ID: m.ID, Problem: truncation(size, m.StoredBytes)}
	}
	counter := NewRowCounter()
	raw, err := decode(ctx, m, body, identities, progress, counter)
	if err != nil {
		return Verified{}, err
	}
	switch {
	case raw != m.RawBytes:
		return Verified{}, &CorruptError{ID: m.ID, Problem: fmt.Sprintf("the dump is %d bytes uncompressed, the manifest says %d", raw, m.RawBytes)}
	case !counter.Completed():
		return Verified{}, &CorruptError{ID: m.ID, Problem: "the dump does not end with mariadb-dump's \"-- Dump completed\" line: it was cut short when it was taken"}
	}
	found := map[TableName]TableInfo{}
	for t, n := range counter.Tables() {
		found[t] = TableInfo{Rows: n}
	}
	if diffs := m.CompareTables(found); len(diffs) > 0 {
		return Verified{}, &CorruptError{ID: m.ID, Problem: "the dump's tables differ from the manifest: " + joinMax(diffs, 5)}
	}
	return Verified{Manifest: m, ETag: etag, Size: size}, nil
}

// decode reads the stored object from body through hash, decryption and decompression into
// sink, and checks the stored size and hash; it returns the uncompressed size. It reads at most
// one byte more than the manifest's sizes, stored and uncompressed, and gives sink at most
// m.RawBytes: an object or a dump larger than its manifest says (a decompression bomb among
// them) is refused when it passes that size, not read to its end.
func decode(ctx context.Context, m Manifest, body io.Reader, identities []age.Identity, progress Progress, sink io.Writer) (int64, error) {
	stored := &hashingReader{r: io.LimitReader(body, m.StoredBytes+1), h: sha256.New(), ctx: ctx, progress: progress}
	sql, closeSQL, err := plaintext(m, stored, identities)
	if err != nil {
		return 0, err
	}
	defer closeSQL()
	out := &recordingWriter{w: sink}
	raw, copyErr := io.Copy(out, io.LimitReader(sql, m.RawBytes))
	if out.err != nil {
		return 0, out.err // the consumer stopped: not the object's fault
	}
	if copyErr == nil && raw == m.RawBytes {
		var extra int64
		if extra, copyErr = io.CopyN(io.Discard, sql, 1); extra > 0 {
			return 0, &CorruptError{ID: m.ID, Problem: fmt.Sprintf("the dump is larger than the %d bytes uncompressed the manifest says", m.RawBytes)}
		}
		if copyErr == io.EOF {
			copyErr = nil
		}
	}
	if copyErr == nil {
		// zstd stops at the end of its last frame: anything after it is still part of the object.
		_, copyErr = io.Copy(io.Discard, stored)
	}
	if copyErr != nil {
		if stored.readErr != nil || ctx.Err() != nil {
			return 0, fmt.Errorf("read backup %s: %w", m.ID, copyErr)
		}
		return 0, &CorruptError{ID: m.ID, Problem: "it does not decompress: " + copyErr.Error() + hashNote(m, stored)}
	}
	if stored.n != m.StoredBytes {
		return 0, &CorruptError{ID: m.ID, Problem: truncation(stored.n, m.StoredBytes)}
	}
	if got := hex.EncodeToString(stored.h.Sum(nil)); got != m.SHA256 {
		return 0, &CorruptError{ID: m.ID, Problem: fmt.Sprintf("SHA-256 of the object is %s, the manifest says %s: it was altered after the backup", got, m.SHA256)}
	}
	return raw, nil
}

// plaintext returns the dump's SQL read from the stored object.
func plaintext(m Manifest, stored io.Reader, identities []age.Identity) (io.Reader, func(), error) {
	in := stored
	if m.Encrypted {
		dec, err := age.Decrypt(stored, identities...)
		if err != nil {
			return nil, nil, &CorruptError{ID: m.ID, Problem: "it does not decrypt with the identities given: " + err.Error()}
		}
		in = dec
	}
	zr, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return nil, nil, err
	}
	return zr, zr.Close, nil
}

// OpenDump reads a verified backup's object again and returns its SQL. The store is asked for the
// object only if its ETag is still the one verified, and the answer must carry that ETag and
// size, so that a store that ignores If-Match cannot hand over another object. The reader checks
// size and hash again at the end and returns an error instead of io.EOF if they differ, so a
// consumer never takes a changed object's end as a clean one.
func OpenDump(ctx context.Context, v Verified, r ObjectReader, identities []age.Identity, progress Progress) (io.ReadCloser, error) {
	m := v.Manifest
	if v.ETag == "" {
		return nil, fmt.Errorf("read backup %s again: it was not verified (no ETag)", m.ID)
	}
	body, size, etag, err := r.Open(ctx, m.DumpKey, v.ETag)
	if err != nil {
		return nil, fmt.Errorf("read backup %s again: %w", m.ID, err)
	}
	if etag != v.ETag || size != v.Size {
		body.Close()
		return nil, fmt.Errorf("read backup %s again: the store answered with another object (ETag %s, %d bytes) than the one verified (ETag %s, %d bytes): "+
			"it was replaced between the two reads; nothing was loaded", m.ID, etag, size, v.ETag, v.Size)
	}
	return decodeInBackground(ctx, m, body, identities, progress), nil
}

// openUnverified reads a backup's object once, for a drill: the same checks as OpenDump's
// reader, at the end of the read.
func openUnverified(ctx context.Context, m Manifest, r ObjectReader, identities []age.Identity, progress Progress) (io.ReadCloser, error) {
	body, size, _, err := r.Open(ctx, m.DumpKey, "")
	if err != nil {
		return nil, fmt.Errorf("read backup %s: %w", m.ID, err)
	}
	if size >= 0 && size != m.StoredBytes {
		body.Close()
		return nil, &CorruptError{ID: m.ID, Problem: truncation(size, m.StoredBytes)}
	}
	return decodeInBackground(ctx, m, body, identities, progress), nil
}

func decodeInBackground(ctx context.Context, m Manifest, body io.ReadCloser, identities []age.Identity, progress Progress) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		defer body.Close()
		raw, err := decode(ctx, m, body, identities, progress, pw)
		if err == nil && raw != m.RawBytes {
			err = &CorruptError{ID: m.ID, Problem: fmt.Sprintf("the dump is %d bytes uncompressed, the manifest says %d", raw, m.RawBytes)}
		}
		pw.CloseWithError(err)
	}()
	return pr
}

func truncation(got, want int64) string {
	if got < want {
		return fmt.Sprintf("the object is %d bytes, the manifest says %d: it is truncated", got, want)
	}
	return fmt.Sprintf("the object is %d bytes, the manifest says %d: something was added to it", got, want)
}

func hashNote(m Manifest, h *hashingReader) string {
	if h.n < m.StoredBytes {
		return fmt.Sprintf(" (at byte %d of %d)", h.n, m.StoredBytes)
	}
	return ""
}

func joinMax(lines []string, max int) string {
	s := ""
	for i, l := range lines {
		if i == max {
			return s + fmt.Sprintf("; and %d more", len(lines)-max)
		}
		if i > 0 {
			s += "; "
		}
		s += l
	}
	return s
}

// hashingReader hashes and counts what is read through it, reports progress, and stops when the
// context is done.
type hashingReader struct {
	r        io.Reader
	h        hash.Hash
	n        int64
	ctx      context.Context
	progress Progress
	readErr  error // a failure of the underlying reader (not corruption)
}

func (h *hashingReader) Read(p []byte) (int, error) {
	if err := h.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	if h.progress != nil && n > 0 {
		h.progress(h.n)
	}
	if err != nil && err != io.EOF {
		h.readErr = err
	}
	return n, err
}

// recordingWriter remembers its writer's failure, to tell it from a failure to decode.
type recordingWriter struct {
	w   io.Writer
	err error
}

func (r *recordingWriter) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	if err != nil && r.err == nil {
		r.err = err
	}
	return n, err
}
