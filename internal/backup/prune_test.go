package backup

import (
	"context"
	"testing"
	"time"
)

func (m memCatalog) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		delete(m, k)
	}
	return nil
}

func TestPruneKeepsByPolicyAndDeletesWholeBackups(t *testing.T) {
	cat := memCatalog{}
	base := time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 5 { // one complete backup a day, 20th..24th
		m := validManifest()
		m.Started = base.AddDate(0, 0, i)
		m.ID = NewID(m.Started)
		m.Finished = m.Started.Add(time.Minute)
		m.DumpKey = DumpKey(m.ID, false)
		b, err := EncodeManifest(m)
		if err != nil {
			t.Fatal(err)
		}
		cat[m.DumpKey], cat[ManifestKey(m.ID)] = []byte("dump"), b
		ids = append(ids, m.ID)
	}
	dec, err := Prune(context.Background(), cat, cat, Policy{KeepLast: 2}, base.AddDate(0, 0, 6), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if len(dec.Keep) != 2 || len(dec.Delete) != 3 {
		t.Fatalf("keep %d delete %d", len(dec.Keep), len(dec.Delete))
	}
	for i, id := range ids {
		_, dump := cat[DumpKey(id, false)]
		_, manifest := cat[ManifestKey(id)]
		kept := i >= 3
		if dump != kept || manifest != kept {
			t.Errorf("%s: dump %v manifest %v, want kept=%v", id, dump, manifest, kept)
		}
	}
	if _, err := Prune(context.Background(), cat, cat, Policy{}, time.Now(), nil); err == nil {
		t.Error("an empty policy was accepted")
	}
}
