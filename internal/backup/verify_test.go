package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// memObject serves one stored object, like S3 with ETags.
type memObject struct {
	data  []byte
	etag  string
	opens int
}

func (o *memObject) Open(ctx context.Context, key, ifMatch string) (io.ReadCloser, int64, string, error) {
	o.opens++
	if ifMatch != "" && ifMatch != o.etag {
		return nil, 0, "", errors.New("object changed")
	}
	return io.NopCloser(bytes.NewReader(o.data)), int64(len(o.data)), o.etag, nil
}

// takeBackup runs a backup of dump into memory and returns its manifest and stored object.
func takeBackup(t *testing.T, dump string, recipients ...age.Recipient) (Manifest, *memObject) {
	t.Helper()
	st := &memStore{}
	m, err := Run(context.Background(), Options{Replica: "db_slave", Primary: "db_master", PasswordFile: "/p", Recipients: recipients}, &fakeDB{replicaReady: true, dump: dump}, st)
	if err != nil {
		t.Fatal(err)
	}
	return m, &memObject{data: bytes.Clone(st.data.Bytes()), etag: `"1"`}
}

func TestVerifyAndOpenDump(t *testing.T) {
	dump := realHeader + sampleDump + realTrailer
	m, obj := takeBackup(t, dump)
	var seen int64
	v, err := Verify(context.Background(), m, obj, nil, func(n int64) { seen = n })
	if err != nil {
		t.Fatal(err)
	}
	if v.ETag != `"1"` || seen != m.StoredBytes {
		t.Fatalf("etag %q, progress %d of %d", v.ETag, seen, m.StoredBytes)
	}
	rc, err := OpenDump(context.Background(), v, obj, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || string(got) != dump {
		t.Fatalf("OpenDump: %v, %d bytes of %d", err, len(got), len(dump))
	}
}

func TestVerifyEncrypted(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	m, obj := takeBackup(t, realHeader+sampleDump+realTrailer, id.Recipient())
	if _, err := Verify(context.Background(), m, obj, nil, nil); err == nil || !strings.Contains(err.Error(), "identity") {
		t.Fatalf("no identity: err = %v", err)
	}
	other, _ := age.GenerateX25519Identity()
	if _, err := Verify(context.Background(), m, obj, []age.Identity{other}, nil); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "decrypt") {
		t.Fatalf("wrong identity: err = %v", err)
	}
	if _, err := Verify(context.Background(), m, obj, []age.Identity{id}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRefusesBadObjects(t *testing.T) {
	dump := realHeader + sampleDump + realTrailer
	for _, tc := range []struct {
		name   string
		damage func(m *Manifest, o *memObject)
		want   string
	}{
		{"truncated", func(m *Manifest, o *memObject) { o.data = o.data[:len(o.data)/2] }, "truncated"},
		{"bit flipped", func(m *Manifest, o *memObject) { o.data[len(o.data)/2] ^= 0x40 }, ""},
		{"bytes appended", func(m *Manifest, o *memObject) { o.data = append(o.data, 0, 1, 2) }, "added"},
		{"replaced by another backup", func(m *Manifest, o *memObject) {
			// The same size uncompressed, other bytes.
			other, obj := takeBackup(t, strings.Replace(dump, "Webserver1", "Webserver9", 1))
			o.data = obj.data
			m.StoredBytes = other.StoredBytes
		}, "SHA-256"},
		{"size lied about", func(m *Manifest, o *memObject) { m.RawBytes++ }, "uncompressed"},
		{"larger than the manifest says", func(m *Manifest, o *memObject) { m.RawBytes-- }, "larger than the"},
		{"table missing", func(m *Manifest, o *memObject) { m.Tables[tn("app.gone")] = TableInfo{Rows: 3} }, "app.gone"},
		{"rows differ", func(m *Manifest, o *memObject) { m.Tables[tn("app.visits")] = TableInfo{Rows: 7} }, "rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, obj := takeBackup(t, dump)
			m.Tables = cloneTables(m.Tables)
			tc.damage(&m, obj)
			_, err := Verify(context.Background(), m, obj, nil, nil)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrCorrupt mentioning %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestVerifyRefusesADumpCutShort(t *testing.T) {
	// A manifest that claims a dump without its closing line (written by a broken tool).
	m, obj := takeBackup(t, realHeader+sampleDump+realTrailer)
	short := realHeader + sampleDump
	m2, obj2 := takeBackupUnchecked(t, short)
	m.RawBytes, m.StoredBytes, m.SHA256 = m2.RawBytes, m2.StoredBytes, m2.SHA256
	obj.data = obj2.data
	if _, err := Verify(context.Background(), m, obj, nil, nil); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "Dump completed") {
		t.Fatalf("err = %v", err)
	}
}

func TestOpenDumpRefusesAChangedObject(t *testing.T) {
	m, obj := takeBackup(t, realHeader+sampleDump+realTrailer)
	v, err := Verify(context.Background(), m, obj, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj.etag = `"2"` // replaced between the two reads
	if _, err := OpenDump(context.Background(), v, obj, nil, nil); err == nil {
		t.Fatal("OpenDump read a changed object")
	}
}

func TestOpenDumpEndsWithAnErrorOnCorruption(t *testing.T) {
	m, obj := takeBackup(t, realHeader+sampleDump+realTrailer)
	v, err := Verify(context.Background(), m, obj, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj.data[len(obj.data)-1] ^= 1 // same ETag, different bytes: a store that lies
	rc, err := OpenDump(context.Background(), v, obj, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read to the end: err = %v, want ErrCorrupt", err)
	}
}

// takeBackupUnchecked streams dump like a backup without Run's checks, for manifests that lie.
func takeBackupUnchecked(t *testing.T, dump string) (Manifest, *memObject) {
	t.Helper()
	up := &memUploader{}
	res, err := Stream(context.Background(), strings.NewReader(dump), up, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	return Manifest{RawBytes: res.RawBytes, StoredBytes: res.StoredBytes, SHA256: res.SHA256}, &memObject{data: up.data.Bytes(), etag: fmt.Sprintf("%q", res.SHA256)}
}

func cloneTables(in map[TableName]TableInfo) map[TableName]TableInfo {
	out := map[TableName]TableInfo{}
	for k, v := range in {
		out[k] = v
	}
	return out
}

// zstdBomb is a zstd frame of n RLE blocks, each 128 KiB of zeros in 4 bytes: n/8 GiB of SQL
// from 4n bytes, made by hand (compressing that much would take minutes under -race).
func zstdBomb(n int) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38} // magic; no content size; a 128 KiB window
	for i := range n {
		header := 128<<10<<3 | 1<<1 // an RLE block of 128 KiB
		if i == n-1 {
			header |= 1 // the last block
		}
		b = append(b, byte(header), byte(header>>8), byte(header>>16), 0)
	}
	return b
}

// A decompression bomb: a small object that decompresses to far more than its manifest says is
// refused once it passes the manifest's size, without being decompressed to its end.
func TestVerifyStopsADecompressionBomb(t *testing.T) {
	bomb := zstdBomb(1 << 16) // 8 GiB
	sum := sha256.Sum256(bomb)
	m, _ := takeBackup(t, realHeader+sampleDump+realTrailer)
	m.StoredBytes, m.SHA256 = int64(len(bomb)), hex.EncodeToString(sum[:])
	obj := &memObject{data: bomb, etag: `"b"`}
	var read int64
	_, err := Verify(context.Background(), m, obj, nil, func(n int64) { read = n })
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "larger than the") {
		t.Fatalf("err = %v, want ErrCorrupt: larger than the manifest says", err)
	}
	if read >= m.StoredBytes/2 {
		t.Fatalf("read %d of %d stored bytes: the bomb was decompressed on", read, m.StoredBytes)
	}

	// The load's reader: it hands over no byte more than the manifest says.
	v := Verified{Manifest: m, ETag: obj.etag, Size: int64(len(obj.data))}
	rc, err := OpenDump(context.Background(), v, obj, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if !errors.Is(err, ErrCorrupt) || int64(len(got)) > m.RawBytes {
		t.Fatalf("OpenDump: %d bytes (manifest: %d), err %v", len(got), m.RawBytes, err)
	}

	// The frame is a real one: whole, it decompresses to its blocks of 128 KiB of zeros.
	zr, _ := zstd.NewReader(bytes.NewReader(zstdBomb(8)))
	if n, err := io.Copy(io.Discard, zr); err != nil || n != 8<<17 {
		t.Fatalf("zstdBomb(8) decompresses to %d bytes (%v), want %d", n, err, 8<<17)
	}
}

// The second read must be answered with the object verified: a store that ignores If-Match, or
// gives no ETag, cannot hand over another one.
func TestTheSecondReadIsTheObjectVerified(t *testing.T) {
	dump := realHeader + sampleDump + realTrailer
	for _, tc := range []struct {
		name   string
		change func(o *lyingObject)
		want   string // "" for success
	}{
		{"same object", func(o *lyingObject) {}, ""},
		{"no ETag at the first read", func(o *lyingObject) { o.etags = []string{"", ""} }, "no ETag"},
		{"another ETag at the second read", func(o *lyingObject) { o.etags = []string{`"1"`, `"2"`} }, "another object"},
		{"another size at the second read", func(o *lyingObject) { o.sizes = []int64{0, -1} }, "another object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, obj := takeBackup(t, dump)
			o := &lyingObject{data: obj.data, etags: []string{`"1"`, `"1"`}, sizes: []int64{0, 0}}
			tc.change(o)
			v, err := Verify(context.Background(), m, o, nil, nil)
			if err == nil {
				var rc io.ReadCloser
				if rc, err = OpenDump(context.Background(), v, o, nil, nil); err == nil {
					_, err = io.ReadAll(rc)
				}
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// lyingObject is a store that ignores If-Match and answers each read with the next ETag and
// size (0: the real size).
type lyingObject struct {
	data  []byte
	etags []string
	sizes []int64
	reads int
}

func (o *lyingObject) Open(ctx context.Context, key, ifMatch string) (io.ReadCloser, int64, string, error) {
	i := min(o.reads, len(o.etags)-1)
	o.reads++
	size := int64(len(o.data)) + o.sizes[i]
	return io.NopCloser(bytes.NewReader(o.data)), size, o.etags[i], nil
}
