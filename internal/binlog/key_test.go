package binlog

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/backup"
)

func TestKeysRoundTrip(t *testing.T) {
	written := time.Date(2026, 12, 1, 14, 3, 27, 123456789, time.UTC)
	base := baseKey(pos("0-1-97"), pos("0-1-100,1-1-2"), written)
	if want := "binlog/00000000000000000097-00000000000000000102-1796133807123456789"; base != want {
		t.Fatalf("baseKey = %q, want %q", base, want)
	}
	for _, key := range []string{dataKey(base, false), dataKey(base, true), manifestKey(base), signatureKey(base)} {
		k, suffix, ok := parseKey(key)
		if !ok || k.base != base || k.start != 97 || k.end != 102 || !k.writtenTime().Equal(written) || base+suffix != key {
			t.Errorf("parseKey(%q) = %+v, %q, %v", key, k, suffix, ok)
		}
	}
}

// Keys in a listing are input: only the exact form is a segment's, whatever else is there.
func TestParseKeyRefusesHostileKeys(t *testing.T) {
	good := "binlog/00000000000000000097-00000000000000000100-1796133807123456789"
	for _, key := range []string{
		"binlog/../00000000000000000097-00000000000000000100-1796133807123456789.json",
		"binlog/x/00000000000000000097-00000000000000000100-1796133807123456789.json",
		"/binlog/00000000000000000097-00000000000000000100-1796133807123456789.json",
		"Binlog/00000000000000000097-00000000000000000100-1796133807123456789.json",
		good,                      // no suffix
		good + ".json.bak",        // unknown suffix
		good + ".json/../../../x", // a path after it
		good + ".JSON",            // case
		good + ".json\n",          // a newline
		"binlog/0097-0100-1796133807123456789.json",                                  // short
		"binlog/+0000000000000000097-00000000000000000100-1796133807123456789.json",  // sign
		"binlog/99999999999999999999-99999999999999999999-1796133807123456789.json",  // over uint64
		"binlog/00000000000000000100-00000000000000000097-1796133807123456789.json",  // end before start
		"binlog/00000000000000000097-00000000000000000100-0000000000000000000.json",  // never written
		"binlog/00000000000000000097-00000000000000000100-9999999999999999999.json",  // over int64
		"binlog/00000000000000000097-00000000000000000100-1796133807123456789.json.", // trailing dot
		"20261201T140327Z/manifest.json",                                             // a dump's
	} {
		if k, suffix, ok := parseKey(key); ok {
			t.Errorf("parseKey(%q) accepted it: %+v %q", key, k, suffix)
		}
	}
}

// A listing with hostile keys: List reads only the objects of well-formed keys under binlog/,
// and reports the others under binlog/ as unknown.
func TestListReadsOnlySegmentKeys(t *testing.T) {
	st := newMemStore()
	ctx := context.Background()
	w := writeOptions{server: Server{Address: "db:3306"}}
	written := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	seg := buildSegment(t, pos("0-1-0"), written, rowTxn(gtid("0-1-1"), written, "1"))
	if _, _, err := seg.write(ctx, st, w, written); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{
		"binlog/../../etc/passwd.json", "binlog/x.json", "binlog/00000000000000000097-00000000000000000100-1796133807123456789.json/../x",
		"20261201T140000Z/manifest.json", "other/binlog/00000000000000000000-00000000000000000001-1796133807123456789.json",
	} {
		st.Put(ctx, k, []byte(`{"version":1}`), "")
	}
	c, err := List(ctx, st, ListOptions{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Segments) != 1 || len(c.Unknown) != 3 {
		t.Fatalf("segments %d, unknown %v", len(c.Segments), c.Unknown)
	}
	for _, k := range st.gets {
		if _, _, ok := parseKey(k); !ok {
			t.Errorf("List read %q, not a segment key", k)
		}
	}
}

// A new segment is written after the latest one, without overflowing; a key that would not be
// read back is refused.
func TestWrittenAfterAndSegmentKey(t *testing.T) {
	now := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		latest int64
		want   int64 // 0: an error
	}{
		{0, now.UnixNano()},
		{now.UnixNano(), now.UnixNano() + 1},
		{now.Add(time.Minute).UnixNano(), now.Add(time.Minute).UnixNano() + 1},
		{math.MaxInt64 - 1, math.MaxInt64},
		{math.MaxInt64, 0},
	} {
		w, err := writtenAfter(now, tc.latest)
		if tc.want == 0 && err == nil || tc.want != 0 && (err != nil || w.UnixNano() != tc.want) {
			t.Errorf("writtenAfter(%d) = %d, %v; want %d", tc.latest, w.UnixNano(), err, tc.want)
		}
	}
	if _, err := segmentKey(pos("0-1-1"), pos("0-1-2"), time.Unix(0, math.MaxInt64)); err != nil {
		t.Errorf("the largest writing time: %v", err)
	}
	for _, written := range []time.Time{time.Unix(0, 0), time.Unix(-1, 0)} {
		if k, err := segmentKey(pos("0-1-1"), pos("0-1-2"), written); err == nil {
			t.Errorf("segmentKey written at %s = %q", written, k)
		}
	}
}

// The archive's keys sort after the dumps' (backup.KeysBefore): listing the dumps does not read
// through the archive, and listing the archive reads only its own prefix.
func TestArchiveKeysSortAfterTheDumps(t *testing.T) {
	if Prefix < backup.KeysBefore {
		t.Fatalf("the archive's prefix %q sorts before %q: the dumps' listing would read through the archive", Prefix, backup.KeysBefore)
	}
}
