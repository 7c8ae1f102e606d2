package main

import (
	"bytes"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/binlog"
)

func TestCannotReplaySaysWhoseFaultItIs(t *testing.T) {
	m := backup.Manifest{ID: "20261207T130646Z"}
	stop := binlog.Stop{Time: time.Date(2026, 12, 7, 13, 6, 49, 0, time.UTC)}
	corrupt := cannotReplay(m, stop, &binlog.SegmentError{Key: "binlog/1-6-1", Problem: "SHA-256 of binlog/1-6-1.binlog.zst is 00"}).Error()
	for _, want := range []string{"the binlog archive cannot bring backup 20261207T130646Z to 2026-12-07 13:06:49 UTC", "binlog segment binlog/1-6-1 is corrupt", "nothing was touched", "agent backups --archive"} {
		if !strings.Contains(corrupt, want) {
			t.Errorf("a corrupt segment: %q lacks %q", corrupt, want)
		}
	}
	full := cannotReplay(m, stop, &binlog.SpoolError{Dir: "/tmp/hastack-binlog-spool-1", Err: fmt.Errorf("write binlog segment binlog/1-6-1: %w", syscall.ENOSPC)}).Error()
	for _, want := range []string{"fetch the binlog archive's segments", "/tmp/hastack-binlog-spool-1", "no space left on device", "set TMPDIR", "nothing was touched"} {
		if !strings.Contains(full, want) {
			t.Errorf("a full disk: %q lacks %q", full, want)
		}
	}
	if strings.Contains(full, "agent backups --archive") {
		t.Errorf("a full disk is not the archive's fault: %q", full)
	}
}

func TestSpoolProgressIsTheArchiveStep(t *testing.T) {
	if spoolProgress(nil) != nil {
		t.Error("no report: no progress")
	}
	var got []backup.RestoreProgress
	spoolProgress(func(p backup.RestoreProgress) { got = append(got, p) })(binlog.SpoolProgress{Segments: 1, TotalSegments: 3, Bytes: 10, TotalBytes: 30})
	if len(got) != 1 || got[0] != (backup.RestoreProgress{Step: "archive", Read: 10, Total: 30}) {
		t.Fatalf("reported %+v", got)
	}

	// On a terminal, the line the spool drew ends before the plan is printed.
	var b bytes.Buffer
	p := &progress{w: &b, tty: true}
	p.report(got[0])
	p.end()
	if out := b.String(); !strings.HasPrefix(out, "\rverifying the binlog archive") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("progress %q", out)
	}
	b.Reset()
	p.end()
	if b.Len() != 0 {
		t.Fatalf("end with no step drawn wrote %q", b.String())
	}
}
