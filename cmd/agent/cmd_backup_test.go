package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/binlog"
)

// bucket is a backup store in memory that counts its requests; a catalog is its view from a
// prefix ("" for the dumps' view, binlog.Prefix for archiveStore's).
type bucket struct {
	mu           sync.Mutex // List reads manifests concurrently
	objects      map[string][]byte
	lists, gets  int
	deleteCalls  [][]string
	failDeleting error
}

type bucketView struct {
	b      *bucket
	prefix string
}

func (v bucketView) List(ctx context.Context) ([]backup.Object, error) {
	v.b.mu.Lock()
	defer v.b.mu.Unlock()
	v.b.lists++
	var out []backup.Object
	for k, data := range v.b.objects {
		if strings.HasPrefix(k, v.prefix) {
			out = append(out, backup.Object{Key: k, Size: int64(len(data))})
		}
	}
	slices.SortFunc(out, func(a, b backup.Object) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (v bucketView) Get(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	v.b.mu.Lock()
	defer v.b.mu.Unlock()
	v.b.gets++
	data, ok := v.b.objects[key]
	if !ok {
		return nil, 0, fmt.Errorf("get %s: %w", key, backup.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(data)), int64(len(data)), nil
}

func (b *bucket) Delete(ctx context.Context, keys ...string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deleteCalls = append(b.deleteCalls, keys)
	if b.failDeleting != nil {
		return b.failDeleting
	}
	for _, k := range keys {
		delete(b.objects, k)
	}
	return nil
}

var archiveT0 = time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC)

// putSegment stores a segment of transactions start+1..end (domain 0, server 1) written at w,
// signed with keys when set; it returns its base key.
func (b *bucket) putSegment(t *testing.T, keys *backup.ManifestKeys, start, end uint64, w time.Time) string {
	t.Helper()
	p := func(seq uint64) binlog.Position {
		if seq == 0 {
			return nil
		}
		pos, err := binlog.ParsePosition(fmt.Sprintf("0-1-%d", seq))
		if err != nil {
			t.Fatal(err)
		}
		return pos
	}
	m := binlog.Manifest{Version: binlog.ManifestVersion, Start: p(start), End: p(end),
		FirstGTID: fmt.Sprintf("0-1-%d", start+1), LastGTID: fmt.Sprintf("0-1-%d", end), FirstTime: w, LastTime: w,
		Transactions: int64(end - start), Events: 2 * int64(end-start), RawBytes: 1000, StoredBytes: 400,
		SHA256: strings.Repeat("ab", 32), Checksum: "crc32", Written: w.UTC()}
	raw, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("%s%020d-%020d-%019d", binlog.Prefix, start, end, w.UnixNano())
	b.objects[base+".binlog.zst"] = make([]byte, 400)
	b.objects[base+".json"] = raw
	if keys != nil {
		b.objects[base+".json.sig"] = keys.Sign(raw)
	}
	return base
}

// putDump stores a complete backup taken at started, at GTID position gtid.
func (b *bucket) putDump(t *testing.T, started time.Time, gtid string) {
	t.Helper()
	id := backup.NewID(started)
	m := backup.Manifest{Version: backup.ManifestVersion, ID: id, Started: started, Finished: started.Add(time.Minute),
		Source: backup.Source{Container: "db_slave", Role: backup.RoleReplica, ServerVersion: "11.8.3-MariaDB"},
		GTID:   gtid, DumpKey: backup.DumpKey(id, false), RawBytes: 100, StoredBytes: 50, SHA256: strings.Repeat("cd", 32),
		Tables: map[backup.TableName]backup.TableInfo{}, Tools: map[string]string{backup.ToolMariaDBDump: "11.8", backup.ToolAgent: "dev"}}
	raw, err := backup.EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	b.objects[m.DumpKey] = make([]byte, 50)
	b.objects[backup.ManifestKey(id)] = raw
}

func (b *bucket) pruneArchive(keys *backup.ManifestKeys, now time.Time) ([]binlog.Deletion, error) {
	return pruneArchive(context.Background(), bucketView{b, ""}, bucketView{b, binlog.Prefix}, b, keys, now)
}

// archiveBytes is the size of the objects under binlog/.
func (b *bucket) archiveBytes() int64 {
	var n int64
	for k, data := range b.objects {
		if strings.HasPrefix(k, binlog.Prefix) {
			n += int64(len(data))
		}
	}
	return n
}

func newBucket() *bucket { return &bucket{objects: map[string][]byte{}} }

// Without an archive (backup.archive not enabled), the archive's retention costs one LIST.
func TestPruneArchiveEmptyCostsOneList(t *testing.T) {
	b := newBucket()
	b.putDump(t, archiveT0, "0-1-5")
	dels, err := b.pruneArchive(nil, archiveT0.Add(48*time.Hour))
	if err != nil || len(dels) != 0 {
		t.Fatalf("pruneArchive = %v, %v", dels, err)
	}
	if b.lists != 1 || b.gets != 0 || len(b.deleteCalls) != 0 {
		t.Fatalf("%d LIST, %d GET, %d DELETE requests; want 1 LIST only", b.lists, b.gets, len(b.deleteCalls))
	}
}

func TestPruneArchive(t *testing.T) {
	keys, err := backup.ParseManifestKeys([]byte(strings.Repeat("k", 40) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	now := archiveT0.Add(48 * time.Hour)
	for _, tc := range []struct {
		name    string
		keys    *backup.ManifestKeys
		dumps   []string // the GTID positions of complete backups, one an hour
		partial bool     // add a backup without a manifest at 0-1-1
		want    string   // the segments left, by their ranges
	}{
		{name: "the segments before the oldest backup go", keys: keys, dumps: []string{"0-1-5", "0-1-8"}, want: "5-9 9-12"},
		{name: "without a manifest key, unsigned segments are the archive", dumps: []string{"0-1-5"}, want: "5-9 9-12"},
		{name: "without a manifest key, the archive's last segment stays", dumps: []string{"0-1-20"}, want: "9-12"},
		{name: "a backup inside a segment keeps it", keys: keys, dumps: []string{"0-1-4", "0-1-8"}, want: "3-5 5-9 9-12"},
		{name: "a backup before the first transaction keeps all", keys: keys, dumps: []string{"", "0-1-8"}, want: "0-3 3-5 5-9 9-12"},
		{name: "an incomplete backup does not count", keys: keys, dumps: []string{"0-1-9"}, partial: true, want: "9-12"},
		{name: "no complete backup: nothing goes", keys: keys, partial: true, want: "0-3 3-5 5-9 9-12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBucket()
			var bases []string
			for i, r := range [][2]uint64{{0, 3}, {3, 5}, {5, 9}, {9, 12}} {
				bases = append(bases, b.putSegment(t, tc.keys, r[0], r[1], archiveT0.Add(time.Duration(i)*time.Minute)))
			}
			for i, g := range tc.dumps {
				b.putDump(t, archiveT0.Add(time.Duration(i+1)*time.Hour), g)
			}
			if tc.partial {
				b.objects[backup.DumpKey(backup.NewID(archiveT0.Add(-time.Hour)), false)] = make([]byte, 10)
			}
			before := b.archiveBytes()
			dels, err := b.pruneArchive(tc.keys, now)
			if err != nil {
				t.Fatal(err)
			}
			var deleted int64
			for _, d := range dels {
				deleted += d.Bytes
			}
			if deleted != before-b.archiveBytes() {
				t.Errorf("%d bytes reported deleted, %d were", deleted, before-b.archiveBytes())
			}
			var left []string
			for i, base := range bases {
				if _, ok := b.objects[base+".json"]; ok {
					left = append(left, []string{"0-3", "3-5", "5-9", "9-12"}[i])
				} else if _, ok := b.objects[base+".binlog.zst"]; ok {
					t.Errorf("%s: data left without its manifest", base)
				}
			}
			if strings.Join(left, " ") != tc.want {
				t.Fatalf("left %q, want %q (deleted %d segments)", strings.Join(left, " "), tc.want, len(dels))
			}
			for _, call := range b.deleteCalls {
				for _, k := range call {
					if !strings.HasPrefix(k, binlog.Prefix) {
						t.Errorf("deleted %s, outside the archive", k)
					}
				}
			}
		})
	}
}

func TestPruneArchiveErrorsSayWhatWasBeingDone(t *testing.T) {
	b := newBucket()
	b.putSegment(t, nil, 0, 3, archiveT0)
	b.putSegment(t, nil, 3, 5, archiveT0.Add(time.Minute))
	b.putDump(t, archiveT0.Add(time.Hour), "0-1-4")
	b.failDeleting = errors.New("access denied")
	_, err := b.pruneArchive(nil, archiveT0.Add(48*time.Hour))
	if err == nil || !strings.Contains(err.Error(), "prune binlog segment binlog/") || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("pruneArchive = %v", err)
	}

	b = newBucket()
	b.putSegment(t, nil, 0, 3, archiveT0)
	b.putDump(t, archiveT0.Add(time.Hour), "0-1-4,0-1-5") // a GTID list, not a position
	_, err = b.pruneArchive(nil, archiveT0.Add(48*time.Hour))
	if err == nil || !strings.Contains(err.Error(), backup.NewID(archiveT0.Add(time.Hour))) {
		t.Fatalf("pruneArchive with a backup at a bad position = %v", err)
	}
}

func TestPruneReportLogs(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("backup complete", "pruned", pruneReport{Backups: []string{"20261124T030000Z"}, Segments: 3, SegmentBytes: 1200})
	if !strings.Contains(buf.String(), "pruned.backups=[20261124T030000Z] pruned.binlog_segments=3 pruned.binlog_bytes=1200") {
		t.Fatalf("log line %q", buf.String())
	}
}
