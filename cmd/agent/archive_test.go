package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/backup"
)

// An empty archive starts after the newest backup whose manifest is authentic: one that anyone
// with write access to the bucket could have put there, unsigned or signed with another key, is
// passed over (it would choose where the archive starts). Without keys, the newest is taken.
func TestAnEmptyArchiveStartsAfterAnAuthenticBackup(t *testing.T) {
	ctx := context.Background()
	keys, err := backup.ParseManifestKeys([]byte(strings.Repeat("k", 40) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := backup.ParseManifestKeys([]byte(strings.Repeat("x", 40) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	b := newBucket()
	day := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	sign := func(at time.Time, k *backup.ManifestKeys) {
		id := backup.NewID(at)
		b.objects[backup.SignatureKey(id)] = k.Sign(b.objects[backup.ManifestKey(id)])
	}
	b.putDump(t, day, "0-1-100")
	sign(day, keys)
	b.putDump(t, day.Add(time.Hour), "0-1-900000") // unsigned
	b.putDump(t, day.Add(2*time.Hour), "0-1-999999")
	sign(day.Add(2*time.Hour), other) // signed with a key that is not ours

	// A signature too large to be one: it cannot be read, so it is not authentic either.
	b.putDump(t, day.Add(3*time.Hour), "0-1-999998")
	b.objects[backup.SignatureKey(backup.NewID(day.Add(3*time.Hour)))] = make([]byte, 1<<20)

	pos, id, passed, err := newestDumpPosition(ctx, bucketView{b, ""}, keys)
	if err != nil || id != backup.NewID(day) || pos.String() != "0-1-100" {
		t.Fatalf("start %v at %q (%v), want 0-1-100 of %s", pos, id, err, backup.NewID(day))
	}
	if len(passed) != 3 || !strings.Contains(passed[0], "larger than") || !strings.Contains(passed[1], "unknown-key") || !strings.Contains(passed[2], "unsigned") {
		t.Fatalf("passed over %q, want the three newest (unreadable signature, unknown key, unsigned)", passed)
	}

	if pos, id, _, err := newestDumpPosition(ctx, bucketView{b, ""}, nil); err != nil || id != backup.NewID(day.Add(3*time.Hour)) || pos.String() != "0-1-999998" {
		t.Fatalf("without keys: start %v at %q (%v), want the newest", pos, id, err)
	}
}
