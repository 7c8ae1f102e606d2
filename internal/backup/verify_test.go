package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"filippo.io/age"
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
			other, obj := takeBackup(t, realHeader+"-- other\n"+sampleDump+realTrailer)
			o.data = obj.data
			m.StoredBytes = other.StoredBytes
		}, "SHA-256"},
		{"size lied about", func(m *Manifest, o *memObject) { m.RawBytes++ }, "uncompressed"},
		{"table missing", func(m *Manifest, o *memObject) { m.Tables["app.gone"] = TableInfo{Rows: 3} }, "app.gone"},
		{"rows differ", func(m *Manifest, o *memObject) { m.Tables["app.visits"] = TableInfo{Rows: 7} }, "rows"},
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

func cloneTables(in map[string]TableInfo) map[string]TableInfo {
	out := map[string]TableInfo{}
	for k, v := range in {
		out[k] = v
	}
	return out
}
