package backup

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
)

type memCatalog map[string][]byte

func (m memCatalog) List(ctx context.Context) ([]Object, error) {
	var out []Object
	for k, v := range m {
		out = append(out, Object{Key: k, Size: int64(len(v))})
	}
	return out, nil
}

func (m memCatalog) Get(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	b, ok := m[key]
	if !ok {
		return nil, 0, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

func TestList(t *testing.T) {
	good := validManifest()
	b, err := EncodeManifest(good)
	if err != nil {
		t.Fatal(err)
	}
	cat := memCatalog{
		good.DumpKey:                     make([]byte, 100),
		ManifestKey(good.ID):             b,
		"20261125T030000Z/dump.sql.zst":  make([]byte, 50), // no manifest: failed or running
		"20261123T030000Z/dump.sql.zst":  make([]byte, 10),
		"20261123T030000Z/manifest.json": []byte("{torn"),
		"unrelated.txt":                  []byte("x"),
	}
	got, err := List(context.Background(), cat)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != "20261125T030000Z" || got[1].ID != good.ID || got[2].ID != "20261123T030000Z" {
		t.Fatalf("entries %+v", got)
	}
	if got[0].Complete || got[0].Problem == "" || !got[1].Complete || got[1].Manifest.SHA256 != good.SHA256 || got[2].Complete {
		t.Fatalf("completeness: %+v", got)
	}
	if got[1].Bytes != int64(100+len(b)) {
		t.Fatalf("bytes %d", got[1].Bytes)
	}
}
