package binlog

import (
	"strings"
	"testing"
	"time"
)

func validManifest() Manifest {
	return Manifest{
		Version: ManifestVersion, Start: pos("0-1-96"), End: pos("0-1-100"),
		FirstGTID: "0-1-97", LastGTID: "0-1-100",
		FirstTime: time.Date(2026, 12, 1, 14, 3, 26, 0, time.UTC), LastTime: time.Date(2026, 12, 1, 14, 3, 27, 0, time.UTC),
		Transactions: 4, Events: 20, RawBytes: 1200, StoredBytes: 600,
		SHA256:    strings.Repeat("ab", 32),
		Encrypted: true, Checksum: checksumCRC32,
		Server:  Server{Address: "db_master:3306", ServerID: 1, Version: "11.8.9-MariaDB"},
		Written: time.Date(2026, 12, 1, 14, 3, 28, 123456789, time.UTC),
	}
}

func TestManifestRoundTrip(t *testing.T) {
	for _, m := range []Manifest{validManifest(), {Version: ManifestVersion, Start: pos("0-1-5"), End: pos("0-1-5"), Written: time.Unix(5, 0).UTC(), Reason: "step back"}} {
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeManifest(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		again, _ := got.Encode()
		if string(again) != string(b) {
			t.Errorf("round trip changed the manifest:\n%s\n%s", b, again)
		}
	}
}

func TestDecodeManifestIsStrict(t *testing.T) {
	b, _ := validManifest().Encode()
	for name, tc := range map[string]struct{ in, err string }{
		"unknown field": {strings.Replace(string(b), `"version": 1,`, `"version": 1, "extra": true,`, 1), "unknown field"},
		"trailing data": {string(b) + "{}", "after top-level value"},
		"newer version": {strings.Replace(string(b), `"version": 1,`, `"version": 2,`, 1), "newer agent"},
		"no version":    {strings.Replace(string(b), `"version": 1,`, ``, 1), "no version"},
		"not json":      {"binlog", "segment manifest"},
		"bad position":  {strings.Replace(string(b), `"0-1-96"`, `"0-1-96,0-2-97"`, 1), "domain 0 appears twice"},
		"too large":     {string(b) + strings.Repeat(" ", maxManifest), "larger than"},
	} {
		if _, err := DecodeManifest([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.err)
		}
	}
}

func TestManifestValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*Manifest)
		err  string
	}{
		"end before start":      {func(m *Manifest) { m.End = pos("0-1-90") }, "end:"},
		"end lacks a domain":    {func(m *Manifest) { m.Start = pos("0-1-96,1-1-3") }, "end:"},
		"first at start":        {func(m *Manifest) { m.FirstGTID = "0-1-96" }, "first_gtid"},
		"last is not the end":   {func(m *Manifest) { m.LastGTID = "0-1-99" }, "last_gtid"},
		"last not a GTID":       {func(m *Manifest) { m.LastGTID = "x" }, "last_gtid"},
		"too many transactions": {func(m *Manifest) { m.Transactions = 5 }, "transactions"},
		"too few events":        {func(m *Manifest) { m.Events = 7 }, "events"},
		"no times":              {func(m *Manifest) { m.FirstTime = time.Time{} }, "first_time"},
		"no hash":               {func(m *Manifest) { m.SHA256 = "" }, "sha256"},
		"upper-case hash":       {func(m *Manifest) { m.SHA256 = strings.Repeat("AB", 32) }, "sha256"},
		"unknown checksum":      {func(m *Manifest) { m.Checksum = "md5" }, "checksum"},
		"not written":           {func(m *Manifest) { m.Written = time.Time{} }, "written"},
		"negative size":         {func(m *Manifest) { m.RawBytes = -1 }, "negative"},
		"tiny file":             {func(m *Manifest) { m.RawBytes = 10 }, "raw_bytes"},
		"empty but moves": {func(m *Manifest) {
			*m = Manifest{Version: 1, Start: pos("0-1-1"), End: pos("0-1-2"), Written: m.Written}
		}, "empty segment must end"},
		"empty with data": {func(m *Manifest) {
			*m = Manifest{Version: 1, Start: pos("0-1-1"), End: pos("0-1-1"), Written: m.Written, StoredBytes: 5}
		}, "no data object"},
		"one transaction, two ids": {func(m *Manifest) { m.Transactions, m.FirstGTID, m.Events = 1, "0-1-99", 2 }, "last_gtid"},
	} {
		m := validManifest()
		tc.edit(&m)
		if err := m.Validate(); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.err)
		}
	}
	if err := validManifest().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestManifestMatchesKey(t *testing.T) {
	m := validManifest()
	k, _, _ := parseKey(manifestKey(baseKey(m.Start, m.End, m.Written)))
	if err := m.matchesKey(k); err != nil {
		t.Fatal(err)
	}
	other, _, _ := parseKey(manifestKey(baseKey(pos("0-1-90"), m.End, m.Written)))
	if err := m.matchesKey(other); err == nil {
		t.Error("a manifest under another segment's key was accepted")
	}
	later, _, _ := parseKey(manifestKey(baseKey(m.Start, m.End, m.Written.Add(time.Nanosecond))))
	if err := m.matchesKey(later); err == nil {
		t.Error("a manifest under a key of another writing time was accepted")
	}
}
