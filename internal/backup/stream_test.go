package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// memUploader stores what it reads, like an S3 upload; it fails after failAfter bytes if set.
type memUploader struct {
	data      bytes.Buffer
	failAfter int64
	aborted   bool
}

func (m *memUploader) Upload(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	var src io.Reader = r
	if m.failAfter > 0 {
		src = io.LimitReader(r, m.failAfter)
	}
	n, err := io.Copy(&m.data, src)
	if err == nil && m.failAfter > 0 {
		err = errors.New("connection reset")
	}
	if err != nil {
		m.aborted = true
		m.data.Reset()
		return 0, err
	}
	return n, nil
}

// fakeDump is a SQL-like stream of n bytes.
func fakeDump(n int) []byte {
	var b strings.Builder
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "INSERT INTO `visits` VALUES (%d,'Webserver%d','10.0.0.%d','2026-11-25 12:00:00.%06d');\n", i, r.IntN(2)+1, r.IntN(255), r.IntN(1e6))
	}
	return []byte(b.String()[:n])
}

type failingReader struct {
	r     io.Reader
	after int
	read  int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.read >= f.after {
		return 0, errors.New("mariadb-dump: Lost connection to server")
	}
	if len(p) > f.after-f.read {
		p = p[:f.after-f.read]
	}
	n, err := f.r.Read(p)
	f.read += n
	return n, err
}

func TestStreamCompressesHashesAndCounts(t *testing.T) {
	dump := fakeDump(3 << 20)
	up := &memUploader{}
	res, err := Stream(context.Background(), bytes.NewReader(dump), up, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(up.data.Bytes())
	if res.RawBytes != int64(len(dump)) || res.StoredBytes != int64(up.data.Len()) || res.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("result %+v; stored %d bytes", res, up.data.Len())
	}
	if res.StoredBytes*3 > res.RawBytes {
		t.Errorf("stored %d of %d raw bytes: not compressed", res.StoredBytes, res.RawBytes)
	}
	zr, _ := zstd.NewReader(&up.data)
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, dump) {
		t.Fatalf("round trip: %v, %d bytes", err, len(got))
	}
}

func TestStreamEncrypts(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	dump := fakeDump(1 << 20)
	up := &memUploader{}
	if _, err := Stream(context.Background(), bytes.NewReader(dump), up, "k", []age.Recipient{id.Recipient()}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(up.data.Bytes(), []byte("INSERT INTO")) {
		t.Fatal("stored data is not encrypted")
	}
	dr, err := age.Decrypt(&up.data, id)
	if err != nil {
		t.Fatal(err)
	}
	zr, _ := zstd.NewReader(dr)
	if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, dump) {
		t.Fatalf("decrypt and decompress: %v", err)
	}
}

func TestStreamDumpFailureAbortsUpload(t *testing.T) {
	up := &memUploader{}
	_, err := Stream(context.Background(), &failingReader{r: bytes.NewReader(fakeDump(4 << 20)), after: 2 << 20}, up, "k", nil)
	if err == nil || !strings.Contains(err.Error(), "Lost connection") {
		t.Fatalf("err = %v, want the dump's error", err)
	}
	if !up.aborted || up.data.Len() != 0 {
		t.Fatal("the upload was not aborted")
	}
}

func TestStreamUploadFailureStopsTheDump(t *testing.T) {
	up := &memUploader{failAfter: 64 << 10}
	src := &countingReader{r: bytes.NewReader(fakeDump(8 << 20))}
	_, err := Stream(context.Background(), src, up, "k", nil)
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("err = %v, want the upload's error", err)
	}
	if src.n == 8<<20 {
		t.Error("the whole dump was read although the upload had failed")
	}
}

// failAfterFirstWrite takes the zstd frame header, then fails: an upload that went away.
type failAfterFirstWrite struct{ writes int }

func (f *failAfterFirstWrite) Write(p []byte) (int, error) {
	f.writes++
	if f.writes > 1 {
		return 0, errors.New("connection reset")
	}
	return len(p), nil
}

// A source that fails while the compressor's goroutines are failing to write: run with -race,
// this is the zstd Encoder.ReadFrom race (see writeOnly) in its plainest form.
func TestCompressSourceFailsWhileTheOutputFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  io.Reader
	}{
		{"source fails", &failingReader{r: bytes.NewReader(fakeDump(4 << 20)), after: 5 << 16}},
		{"source ends", bytes.NewReader(fakeDump(3 << 17))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := compress(tc.src, &failAfterFirstWrite{}, nil); err == nil {
				t.Fatal("compress succeeded although its output failed")
			}
		})
	}
}
