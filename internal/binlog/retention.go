package binlog

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Retention of the archive. A dump's window starts at its own GTID position: restoring it to a
// point replays the archive from the segment that holds that position (the last one, as
// Select finds it) onward. So the segments that end at or before the position of every kept
// dump are needed by none of them, and everything after the oldest kept dump's position is
// needed by some dump's window. The rule, applied after the dumps' retention:
//
//   - the used segments (Chain.Segments) from the archive's start that end at or before the
//     position of every kept dump, up to but not including the segment a replay from a kept
//     dump starts in, and never the archive's last segment (its end is where the archiver
//     resumes, and the anchor of a dump taken at that position);
//   - superseded segments written more than SupersededGrace ago;
//   - rejected segments written more than RejectedGrace ago: incomplete ones (data without a
//     manifest) wherever they are; those with a manifest this agent cannot use (invalid, of a
//     newer version, unsigned or signed with a key not at hand) only when, by their key, they
//     end before every kept dump's position and before the kept part of the archive: a newer
//     agent, or a restore with --allow-unsigned, may need one inside a window;
//   - nothing at all when no dump is kept, and never an unknown object.
//
// A deletion must not change the archive that is left. A superseded segment stays superseded
// only while a segment written after it that starts at or before it remains; a deletion that
// would take the last of those away (bringing the superseded segment back into the chain, as an
// old history or a hole) is not made. Only a prefix of the chain is deleted, and a used
// segment's part of the archive depends only on the segments written after it, so the kept
// part of the chain, its cuts and its holes are exactly what they were.

const (
	// SupersededGrace is how long a superseded segment is left alone: an archiver may be
	// writing near it (stepping back over it after a failover).
	SupersededGrace = time.Hour
	// RejectedGrace is how long a rejected segment is left alone: one without a manifest may
	// still be uploading.
	RejectedGrace = 24 * time.Hour
)

// Deletion is a segment retention deletes, and why.
type Deletion struct {
	Key     string    // base key
	Reason  string    // for a person
	Written time.Time // from its key
	Objects []string  // every stored object of the segment
	Bytes   int64     // their size
}

// Retention decides which segments of the chain c no kept dump needs: kept holds the GTID
// positions of the complete dumps that the dumps' retention keeps (an empty position for a dump
// taken before the server's first transaction). See the rule above. The deletions are ordered
// by the time their segments were written, oldest first: Prune deletes them in that order, so
// an interrupted deletion leaves an archive in which every segment left is what it was.
func Retention(c *Chain, kept []Position, now time.Time) []Deletion {
	if c == nil || len(kept) == 0 {
		return nil
	}
	oldest := kept[0] // by ordinal: for the reasons and the rejected segments' keys
	k := max(len(c.Segments)-1, 0)
	for _, p := range kept {
		k = min(k, unneededPrefix(c.Segments, p))
		if p.Ordinal() < oldest.Ordinal() {
			oldest = p
		}
	}

	r := retention{prefix: c.Segments, k: k, drop: map[string]bool{}}
	var views [2][]retained // the chain's segments; and every segment with a manifest
	for i, s := range c.Segments {
		it := retained{key: s.Key, start: s.Manifest.Start.Ordinal(), written: s.Manifest.Written, index: i}
		views[0], views[1] = append(views[0], it), append(views[1], it)
	}
	var others []Deletion
	for _, s := range c.Superseded {
		it := retained{key: s.Key, start: s.Manifest.Start.Ordinal(), written: s.Manifest.Written, index: -1}
		views[0], views[1] = append(views[0], it), append(views[1], it)
		if now.Sub(s.Manifest.Written) > SupersededGrace {
			r.drop[s.Key] = true
			others = append(others, Deletion{Key: s.Key, Written: s.Manifest.Written, Objects: s.Objects, Bytes: s.Bytes,
				Reason: fmt.Sprintf("superseded by %s, written more than %s ago", s.SupersededBy, hours(SupersededGrace))})
		}
	}
	ends := map[string]uint64{} // of the rejected segments with a manifest being deleted
	for _, rj := range c.Rejected {
		info, manifest := rejectedKey(rj)
		if manifest {
			views[1] = append(views[1], retained{key: rj.Key, start: info.start, written: rj.Written, index: -1})
		}
		if now.Sub(rj.Written) <= RejectedGrace {
			continue
		}
		d := Deletion{Key: rj.Key, Written: rj.Written, Objects: rj.Objects, Bytes: rj.Bytes}
		switch {
		case !manifest:
			d.Reason = fmt.Sprintf("incomplete (%s), written more than %s ago", rj.Problem, hours(RejectedGrace))
		case info.end <= r.keptFrom(oldest):
			ends[rj.Key] = info.end
			d.Reason = fmt.Sprintf("not usable (%s), written more than %s ago, and before the oldest kept backup's position %s",
				rj.Problem, hours(RejectedGrace), orStart(oldest))
		default:
			continue
		}
		r.drop[rj.Key] = true
		others = append(others, d)
	}

	for _, v := range views {
		sortResolveOrder(v)
	}
	for {
		for r.keepWitnesses(views[0]) || r.keepWitnesses(views[1]) {
		}
		// Keeping witnesses may have moved the kept part's start back before a rejected
		// segment: keep that one too (which may need witnesses in turn).
		changed := false
		for key, end := range ends {
			if r.drop[key] && end > r.keptFrom(oldest) {
				delete(r.drop, key)
				changed = true
			}
		}
		if !changed {
			break
		}
	}

	var out []Deletion
	for _, s := range c.Segments[:r.k] {
		out = append(out, Deletion{Key: s.Key, Written: s.Manifest.Written, Objects: s.Objects, Bytes: s.Bytes,
			Reason: fmt.Sprintf("no kept backup needs it: it ends at %s, at or before the oldest kept backup's position %s", orStart(s.End()), orStart(oldest))})
	}
	for _, d := range others {
		if r.drop[d.Key] {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b Deletion) int { return cmp.Or(a.Written.Compare(b.Written), strings.Compare(a.Key, b.Key)) })
	return out
}

// unneededPrefix returns how many segments from the chain's start a dump at p does not need:
// those that end at or before p, before the segment a replay from p starts in (the last that
// holds p, as plan finds it), and never the last segment.
func unneededPrefix(segs []Segment, p Position) int {
	limit := len(segs) - 1
	for i := len(segs) - 1; i >= 0; i-- {
		if p.Within(segs[i].Manifest.Start, segs[i].End()) {
			limit = i
			break
		}
	}
	n := 0
	for n < limit && atOrBefore(segs[n].End(), p) {
		n++
	}
	return n
}

// atOrBefore says whether q is at or before p in every domain: p has every domain of q at q's
// sequence number or later.
func atOrBefore(q, p Position) bool { return len(p.Behind(q)) == 0 }

// retention is what Retention is deleting: the chain's first k segments, and the others named
// in drop.
type retention struct {
	prefix []Segment
	k      int
	drop   map[string]bool
}

// retained is a segment as the supersede rule sees it.
type retained struct {
	key     string
	start   uint64 // ordinal
	written time.Time
	index   int // in the chain's segments; -1 when not used
}

// keptFrom is where what is kept starts, by ordinal: the oldest kept dump's position, or the
// first kept segment's start when that is before it.
func (r *retention) keptFrom(oldest Position) uint64 {
	from := oldest.Ordinal()
	if r.k < len(r.prefix) {
		from = min(from, r.prefix[r.k].Manifest.Start.Ordinal())
	}
	return from
}

func (r *retention) deleted(it retained) bool {
	if it.index >= 0 {
		return it.index < r.k
	}
	return r.drop[it.key]
}

// sortResolveOrder sorts segments in the order resolve walks them: last written first.
func sortResolveOrder(v []retained) {
	slices.SortFunc(v, func(a, b retained) int { return cmp.Or(b.written.Compare(a.written), strings.Compare(b.key, a.key)) })
}

// keepWitnesses walks one view of the archive (sorted by sortResolveOrder) and keeps what
// must stay for every segment it leaves to stay as it was: a segment is superseded exactly when
// a segment written after it starts at or before it (resolve), so a kept segment that has such
// a segment among all of them must still have one among those kept. For each one that would
// lose its last, one of the deleted ones is kept: any other first, else the latest of the
// chain's prefix (with every segment after it). It says whether it kept anything.
func (r *retention) keepWitnesses(view []retained) bool {
	changed := false
	var minAll, minKept uint64
	anyAll, anyKept := false, false
	for i, it := range view {
		if !r.deleted(it) && anyAll && minAll <= it.start && (!anyKept || minKept > it.start) {
			w := -1
			for j, o := range view[:i] {
				if !r.deleted(o) || o.start > it.start {
					continue
				}
				if w < 0 || view[w].index >= 0 && (o.index < 0 || o.index > view[w].index) {
					w = j
				}
			}
			o := view[w] // there is one: minAll <= it.start, and none kept
			if o.index >= 0 {
				r.k = o.index
			} else {
				delete(r.drop, o.key)
			}
			// o starts at or before it, so before every kept one so far; the prefix
			// segments kept with o start after o.
			minKept, anyKept, changed = o.start, true, true
		}
		if !r.deleted(it) && (!anyKept || it.start < minKept) {
			minKept, anyKept = it.start, true
		}
		if !anyAll || it.start < minAll {
			minAll, anyAll = it.start, true
		}
	}
	return changed
}

// rejectedKey reads what a rejected segment's key says, and whether it has a manifest object
// (it is then rejected for what its manifest says, not for being incomplete).
func rejectedKey(r Rejected) (keyInfo, bool) {
	info, _, _ := parseKey(manifestKey(r.Key))
	return info, slices.Contains(r.Objects, manifestKey(r.Key))
}

func orStart(p Position) string {
	if len(p) == 0 {
		return "(the start of the history)"
	}
	return p.String()
}

func hours(d time.Duration) string { return fmt.Sprintf("%gh", d.Hours()) }

// Deleter removes objects from the store.
type Deleter interface {
	Delete(ctx context.Context, keys ...string) error
}

// Prune deletes the segments of dels (from Retention) in their order, each one's manifest first,
// then its signature and data: a segment whose deletion is interrupted is then incomplete (data
// without a manifest), which List rejects and a later Retention deletes, never a manifest
// pointing at missing data. It refuses a deletion whose objects are not that segment's. It
// returns the segments deleted, also on an error.
func Prune(ctx context.Context, d Deleter, dels []Deletion) ([]Deletion, error) {
	var done []Deletion
	for _, del := range dels {
		manifest := manifestKey(del.Key)
		hasManifest := false
		var rest []string
		for _, k := range del.Objects {
			info, _, ok := parseKey(k)
			switch {
			case !ok || info.base != del.Key:
				return done, fmt.Errorf("prune binlog segment %s: %q is not one of its objects", del.Key, k)
			case k == manifest:
				hasManifest = true
			default:
				rest = append(rest, k)
			}
		}
		if hasManifest {
			if err := d.Delete(ctx, manifest); err != nil {
				return done, fmt.Errorf("prune binlog segment %s: %w", del.Key, err)
			}
		}
		if len(rest) > 0 {
			if err := d.Delete(ctx, rest...); err != nil {
				return done, fmt.Errorf("prune binlog segment %s: %w", del.Key, err)
			}
		}
		done = append(done, del)
	}
	return done, nil
}
