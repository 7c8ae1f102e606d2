package backup

import (
	"testing"
	"time"
)

func TestNewID(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC), "20261124T030000Z"},
		{time.Date(2026, 11, 24, 3, 0, 0, 999_999_999, time.UTC), "20261124T030000Z"},
		{time.Date(2026, 1, 1, 0, 30, 5, 0, berlin), "20251231T233005Z"},
	}
	for _, tt := range tests {
		if got := NewID(tt.in); got != tt.want {
			t.Errorf("NewID(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestIDsSortInTimeOrder(t *testing.T) {
	a := NewID(time.Date(2026, 9, 30, 23, 59, 59, 0, time.UTC))
	b := NewID(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC))
	if !(a < b) {
		t.Errorf("%q should sort before %q", a, b)
	}
}

func TestParseID(t *testing.T) {
	want := time.Date(2026, 11, 24, 3, 4, 5, 0, time.UTC)
	got, err := ParseID("20261124T030405Z")
	if err != nil || !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("ParseID = %v, %v; want %v in UTC", got, err, want)
	}
	if NewID(got) != "20261124T030405Z" {
		t.Errorf("round trip changed the id")
	}

	bad := []string{
		"",
		"20261124T030405",      // no Z
		"20261124T030405z",     // lower-case z
		"20261124T030405Z/",    // trailing text
		"2026-11-24T03:04:05Z", // RFC 3339
		"20261324T030405Z",     // month 13
		"20261124T250405Z",     // hour 25
		"20261124T030405+0100", // offset
		" 20261124T030405Z",    // leading space
		"20261124T030405.000Z", // fraction
		"../20261124T030405Z",  // path
	}
	for _, id := range bad {
		if _, err := ParseID(id); err == nil {
			t.Errorf("ParseID(%q) succeeded, want an error", id)
		}
	}
}

func TestKeys(t *testing.T) {
	const id = "20261124T030405Z"
	if got, want := DumpKey(id, false), "20261124T030405Z/dump.sql.zst"; got != want {
		t.Errorf("DumpKey(plain) = %q, want %q", got, want)
	}
	if got, want := DumpKey(id, true), "20261124T030405Z/dump.sql.zst.age"; got != want {
		t.Errorf("DumpKey(encrypted) = %q, want %q", got, want)
	}
	if got, want := ManifestKey(id), "20261124T030405Z/manifest.json"; got != want {
		t.Errorf("ManifestKey = %q, want %q", got, want)
	}
}

func TestIDFromKey(t *testing.T) {
	tests := []struct {
		key    string
		wantID string
		wantOK bool
	}{
		{"20261124T030405Z/dump.sql.zst", "20261124T030405Z", true},
		{"20261124T030405Z/dump.sql.zst.age", "20261124T030405Z", true},
		{"20261124T030405Z/manifest.json", "20261124T030405Z", true},
		{"20261124T030405Z/leftover.tmp", "20261124T030405Z", true},
		{"20261124T030405Z", "", false},
		{"20261124T030405Z/", "", false},
		{"20261124T030405Z/sub/dump.sql.zst", "", false},
		{"backups/20261124T030405Z/dump.sql.zst", "", false},
		{"latest/manifest.json", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		id, ok := IDFromKey(tt.key)
		if id != tt.wantID || ok != tt.wantOK {
			t.Errorf("IDFromKey(%q) = %q, %v; want %q, %v", tt.key, id, ok, tt.wantID, tt.wantOK)
		}
	}
	// Every key we write maps back to its id.
	const id = "20261124T030405Z"
	for _, key := range []string{DumpKey(id, false), DumpKey(id, true), ManifestKey(id)} {
		if got, ok := IDFromKey(key); !ok || got != id {
			t.Errorf("IDFromKey(%q) = %q, %v; want %q", key, got, ok, id)
		}
	}
}

// Every dump's key sorts before KeysBefore, so a catalog that stops listing there misses none.
func TestDumpKeysSortBeforeKeysBefore(t *testing.T) {
	for _, at := range []time.Time{
		time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
	} {
		id := NewID(at)
		for _, key := range []string{ManifestKey(id), SignatureKey(id), DumpKey(id, true), DumpKey(id, false), id + "/" + "\xff"} {
			if key >= KeysBefore {
				t.Errorf("key %q does not sort before %q: a bounded listing would miss it", key, KeysBefore)
			}
		}
	}
}
