package backup

import (
	"context"
	"fmt"
	"time"
)

// Deleter removes objects from a store.
type Deleter interface {
	Delete(ctx context.Context, keys ...string) error
}

// Prune applies the retention policy to what the store holds and deletes every object of the
// backups the policy does not keep. The policy never deletes the newest complete backup nor
// an incomplete one that may still be uploading (see Apply). It returns the decision.
func Prune(ctx context.Context, c Catalog, d Deleter, p Policy, now time.Time, loc *time.Location) (Decision, error) {
	if err := p.Validate(); err != nil {
		return Decision{}, err
	}
	entries, err := List(ctx, c)
	if err != nil {
		return Decision{}, err
	}
	byID := map[string]Entry{}
	backups := make([]Backup, 0, len(entries))
	for _, e := range entries {
		byID[e.ID] = e
		backups = append(backups, Backup{ID: e.ID, Time: e.Time, Complete: e.Complete})
	}
	dec := Apply(p, backups, now, loc)
	for _, b := range dec.Delete {
		// The manifest goes first: a backup whose deletion is interrupted is then incomplete,
		// never a manifest pointing at a missing dump.
		keys := byID[b.ID].Keys
		manifest := ManifestKey(b.ID)
		var rest []string
		for _, k := range keys {
			if k == manifest {
				if err := d.Delete(ctx, k); err != nil {
					return dec, fmt.Errorf("prune %s: %w", b.ID, err)
				}
			} else {
				rest = append(rest, k)
			}
		}
		if len(rest) > 0 {
			if err := d.Delete(ctx, rest...); err != nil {
				return dec, fmt.Errorf("prune %s: %w", b.ID, err)
			}
		}
	}
	return dec, nil
}
