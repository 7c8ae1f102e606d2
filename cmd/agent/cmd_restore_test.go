package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/config"
)

func entry(id string, complete bool) backup.Entry {
	t, _ := backup.ParseID(id)
	e := backup.Entry{ID: id, Time: t, Complete: complete}
	if complete {
		e.Manifest = &backup.Manifest{ID: id, Started: t}
	} else {
		e.Problem = "no manifest: failed or in progress"
	}
	return e
}

func TestPickBackup(t *testing.T) {
	entries := []backup.Entry{ // newest first, as backup.List returns them
		entry("20261125T040000Z", false),
		entry("20261125T030000Z", true),
		entry("20261124T030000Z", true),
		entry("20261123T030000Z", true),
	}
	seoul, _ := time.LoadLocation("Asia/Seoul")
	for _, tc := range []struct {
		arg, at string
		want    string // an ID, or "error: ..." with a part of the message
	}{
		{"", "", "20261125T030000Z"},
		{"latest", "", "20261125T030000Z"},
		{"20261124T030000Z", "", "20261124T030000Z"},
		{"20261125T040000Z", "", "error: not complete"},
		{"20261101T000000Z", "", "error: no backup 20261101T000000Z"},
		{"", "2026-11-24T03:00:00Z", "20261124T030000Z"},
		{"", "2026-11-24T02:59:59Z", "20261123T030000Z"},
		{"", "2026-11-25 11:59", "20261124T030000Z"}, // 02:59 UTC in Seoul
		{"", "2026-11-25 12:00", "20261125T030000Z"},
		{"", "2026-11-22", "error: the oldest is 20261123T030000Z"},
		{"", "yesterday", "error: RFC 3339"},
	} {
		m, err := pickBackup(entries, tc.arg, tc.at, seoul)
		got := m.ID
		if err != nil {
			got = "error: " + err.Error()
		}
		if !strings.HasPrefix(tc.want, "error: ") && got != tc.want || strings.HasPrefix(tc.want, "error: ") && !strings.Contains(got, strings.TrimPrefix(tc.want, "error: ")) {
			t.Errorf("pickBackup(%q, at %q) = %s; want %s", tc.arg, tc.at, got, tc.want)
		}
	}
	if _, err := pickBackup(entries, "", "yesterday", seoul); !errors.Is(err, errUsage) {
		t.Errorf("a bad --at is a usage error: %v", err)
	}
	if _, err := pickBackup(entries[:1], "", "", seoul); err == nil || !strings.Contains(err.Error(), "no complete backup") {
		t.Errorf("only incomplete backups: %v", err)
	}
}

func TestProgressOnATerminal(t *testing.T) {
	var b bytes.Buffer
	p := &progress{w: &b, tty: true}
	p.report(backup.RestoreProgress{Step: "verify", Total: 100 << 20})
	p.started = time.Now().Add(-2 * time.Second)
	p.report(backup.RestoreProgress{Step: "verify", Read: 50 << 20, Total: 100 << 20})
	out := b.String()
	for _, want := range []string{"verifying the backup", "50.0 MiB / 100.0 MiB", "50%", "MiB/s", "ETA 2s"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress %q lacks %q", out, want)
		}
	}
	b.Reset()
	p = &progress{w: &b}
	p.report(backup.RestoreProgress{Step: "verify", Total: 100})
	p.report(backup.RestoreProgress{Step: "verify", Read: 50, Total: 100})
	p.report(backup.RestoreProgress{Step: "load", Total: 100})
	if lines := strings.Count(b.String(), "\n"); lines != 2 || strings.Contains(b.String(), "\r") {
		t.Errorf("without a terminal: one line per step, got %q", b.String())
	}
}

func TestBackupChoiceAllowUnsignedNeedsAnID(t *testing.T) {
	for _, tc := range []struct {
		c  backupChoice
		ok bool
	}{
		{backupChoice{}, true},
		{backupChoice{which: "latest"}, true},
		{backupChoice{which: "20261124T030000Z", allowUnsigned: true}, true},
		{backupChoice{allowUnsigned: true}, false},
		{backupChoice{which: "latest", allowUnsigned: true}, false},
		{backupChoice{at: "2026-11-24", allowUnsigned: true}, false},
	} {
		err := tc.c.check()
		if tc.ok != (err == nil) || err != nil && (!errors.Is(err, errUsage) || !strings.Contains(err.Error(), "needs the ID")) {
			t.Errorf("%+v: check() = %v", tc.c, err)
		}
	}
}

func TestLoadManifestKeys(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "manifest_key")
	os.WriteFile(good, []byte("0123456789abcdef0123456789abcdef0123456789abcdef\n"), 0o600)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("s3cret\n"), 0o600)
	for _, tc := range []struct {
		name, configured, flag string
		keys                   bool   // keys returned
		err                    string // or an error naming this
	}{
		{"none configured", "", "", false, ""},
		{"configured", good, "", true, ""},
		{"flag over config", short, good, true, ""},
		{"missing file", filepath.Join(dir, "gone"), "", false, "backup.manifest_key_file: read the manifest key"},
		{"short key, from the flag", "", short, false, "--manifest-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg config.Config
			cfg.Backup.ManifestKeyFile = tc.configured
			keys, err := loadManifestKeys(cfg, tc.flag)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one naming %q", err, tc.err)
				}
				return
			}
			if err != nil || (keys != nil) != tc.keys {
				t.Fatalf("keys %v, err %v", keys, err)
			}
		})
	}
}
