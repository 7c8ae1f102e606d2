package binlog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hastack/hastack/internal/backup"
)

// ListOptions say which segments List accepts.
type ListOptions struct {
	// Keys check the manifests' signatures (nil: no key configured).
	Keys *backup.ManifestKeys
	// AllowUnsigned accepts segments whose manifest is unsigned or signed with a key not at
	// hand, as backup.Authorize does for a dump; a wrong signature is never accepted.
	AllowUnsigned bool
}

// Segment is one segment of the archive, as List found it.
type Segment struct {
	Key      string // base key: binlog/<start>-<end>-<written>
	Manifest Manifest
	Auth     backup.Authenticity
	// Until is set when a segment written later starts inside this one: this one is used only
	// up to that position (see the package doc).
	Until Position
	// SupersededBy is the key of the segment that supersedes this one (Chain.Superseded only).
	SupersededBy string
	Objects      []string // every stored object of the segment: what deleting it deletes
	Bytes        int64    // their size
}

// End is where the segment's part of the archive ends: Until if it was cut, else its end.
func (s Segment) End() Position {
	if s.Until != nil {
		return s.Until
	}
	return s.Manifest.End
}

// Rejected is a segment that List did not use, and why.
type Rejected struct {
	Key     string
	Problem string
	Written time.Time // from its key
	Objects []string
	Bytes   int64
}

// Hole is a break in the archive: the transactions from From to To are not in it.
type Hole struct {
	From, To Position
	// FromTime is the commit time of the last transaction before the hole, ToTime of the first
	// after it; zero when not known (a cut segment, an empty segment).
	FromTime, ToTime time.Time
	Before, After    string // keys of the segments around it
	// Problem is set when the segment after does not start after the one before ends, but
	// inside it, at a position the one before does not reach: two histories meet there.
	Problem string
}

// Chain is the archive as List resolved it.
type Chain struct {
	Segments   []Segment  // the archive, in position order
	Holes      []Hole     // breaks between Segments
	Superseded []Segment  // replaced by later segments: retention may delete them
	Rejected   []Rejected // invalid, unsigned (when refused) or incomplete (no manifest)
	Unknown    []string   // objects under Prefix that belong to no segment
}

// Range is what the archive can replay.
type Range struct {
	From, To Position
	// FromTime and ToTime are the first and last commit times in it (zero when not known).
	FromTime, ToTime time.Time
	Holes            []Hole
}

// Range returns the archive's span and its holes; a zero Range for an empty archive.
func (c *Chain) Range() Range {
	if len(c.Segments) == 0 {
		return Range{}
	}
	r := Range{From: c.Segments[0].Manifest.Start, To: c.End(), Holes: c.Holes}
	for _, s := range c.Segments {
		if !s.Manifest.Empty() {
			r.FromTime = s.Manifest.FirstTime
			break
		}
	}
	for i := len(c.Segments) - 1; i >= 0; i-- {
		if s := c.Segments[i]; !s.Manifest.Empty() {
			if s.Until == nil {
				r.ToTime = s.Manifest.LastTime
			}
			break
		}
	}
	return r
}

// End is the archive's end: the position after its last transaction (nil when it is empty).
func (c *Chain) End() Position {
	if len(c.Segments) == 0 {
		return nil
	}
	return c.Segments[len(c.Segments)-1].End()
}

// listConcurrency bounds the manifests read at once.
const listConcurrency = 8

// List reads the archive's manifests from the store, checks them (decoding, their key, their
// signature), and resolves them into a chain. A store error fails it; an invalid segment does
// not (it is in Rejected), nor one whose manifest or signature is too large to be one.
func List(ctx context.Context, c backup.Catalog, o ListOptions) (*Chain, error) {
	objs, err := c.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the binlog archive: %w", err)
	}
	groups, unknown := groupObjects(objs)
	chain := &Chain{Unknown: unknown}
	segs := make([]*Segment, len(groups))
	problems := make([]string, len(groups))
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	sem := make(chan struct{}, listConcurrency)
	for i, g := range groups {
		if !g.has[manifestSuffix] {
			problems[i] = "no manifest: its writing failed or is in progress"
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			segs[i], problems[i], errs[i] = readSegmentManifest(ctx, c, o, g)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("list the binlog archive: %w", err)
	}
	var used []Segment
	for i, g := range groups {
		if problems[i] != "" {
			chain.Rejected = append(chain.Rejected, Rejected{Key: g.info.base, Problem: problems[i], Written: g.info.writtenTime(), Objects: g.keys, Bytes: g.bytes})
			continue
		}
		used = append(used, *segs[i])
	}
	chain.Segments, chain.Superseded, chain.Holes = resolve(used)
	return chain, nil
}

// objectGroup is the stored objects of one base key.
type objectGroup struct {
	info  keyInfo
	has   map[string]bool // by suffix
	keys  []string
	bytes int64
}

// groupObjects groups the segment objects of a listing by base key, in key order; it returns the
// other keys under Prefix apart. Keys outside Prefix (the dumps) are ignored.
func groupObjects(objs []backup.Object) ([]*objectGroup, []string) {
	byBase := map[string]*objectGroup{}
	var unknown []string
	for _, o := range objs {
		if !strings.HasPrefix(o.Key, Prefix) {
			continue
		}
		info, suffix, ok := parseKey(o.Key)
		if !ok {
			unknown = append(unknown, o.Key)
			continue
		}
		g := byBase[info.base]
		if g == nil {
			g = &objectGroup{info: info, has: map[string]bool{}}
			byBase[info.base] = g
		}
		g.has[suffix] = true
		g.keys = append(g.keys, o.Key)
		g.bytes += o.Size
	}
	groups := make([]*objectGroup, 0, len(byBase))
	for _, g := range byBase {
		slices.Sort(g.keys)
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b *objectGroup) int { return strings.Compare(a.info.base, b.info.base) })
	slices.Sort(unknown)
	return groups, unknown
}

// readSegmentManifest reads and checks one segment's manifest. A problem with the segment is
// returned as a problem; a failure to read the store as an error.
func readSegmentManifest(ctx context.Context, c backup.Catalog, o ListOptions, g *objectGroup) (*Segment, string, error) {
	base := g.info.base
	var tooLarge *backup.TooLargeError
	raw, err := backup.ReadSmall(ctx, c, manifestKey(base), maxManifest)
	switch {
	case errors.Is(err, backup.ErrNotFound):
		return nil, "no manifest: its writing failed or is in progress", nil
	case errors.As(err, &tooLarge):
		return nil, fmt.Sprintf("manifest %s is larger than %d bytes", tooLarge.Key, tooLarge.Max), nil
	case err != nil:
		return nil, "", err
	}
	m, err := DecodeManifest(raw)
	if err == nil {
		err = m.matchesKey(g.info)
	}
	if err != nil {
		return nil, err.Error(), nil
	}
	var sig []byte
	if g.has[signatureSuffix] {
		sig, err = backup.ReadSmall(ctx, c, signatureKey(base), maxSignature)
		switch {
		case errors.Is(err, backup.ErrNotFound):
			sig = nil
		case errors.As(err, &tooLarge):
			return nil, fmt.Sprintf("signature %s is larger than %d bytes", tooLarge.Key, tooLarge.Max), nil
		case err != nil:
			return nil, "", err
		}
	}
	auth := o.Keys.Check(raw, sig)
	if err := backup.Authorize(base, auth, o.AllowUnsigned); err != nil {
		return nil, err.Error(), nil
	}
	return &Segment{Key: base, Manifest: m, Auth: auth, Objects: g.keys, Bytes: g.bytes}, "", nil
}

// maxSignature bounds what is read as a manifest's signature.
const maxSignature = 4 << 10

// resolve orders valid segments into the archive. A segment supersedes every segment written
// before it that starts at or after its start (by ordinal), and cuts one written before it that
// starts before it and ends after its start: the archive is, at every position, what was last
// written from there. Walking the segments from the last written back, a segment is used when
// it starts before every segment written after it.
func resolve(segs []Segment) (used, superseded []Segment, holes []Hole) {
	byWritten := slices.Clone(segs)
	slices.SortFunc(byWritten, func(a, b Segment) int {
		return cmp.Or(b.Manifest.Written.Compare(a.Manifest.Written), strings.Compare(b.Key, a.Key))
	})
	var lowest *Segment // the used segment with the lowest start so far: the one after the current one
	for _, s := range byWritten {
		if lowest != nil && s.Manifest.Start.Ordinal() >= lowest.Manifest.Start.Ordinal() {
			s.SupersededBy = lowest.Key
			superseded = append(superseded, s)
			continue
		}
		if lowest != nil && s.Manifest.End.Ordinal() > lowest.Manifest.Start.Ordinal() && lowest.Manifest.Start.Within(s.Manifest.Start, s.Manifest.End) {
			s.Until = lowest.Manifest.Start
		}
		used = append(used, s)
		lowest = &s
	}
	slices.Reverse(used)
	slices.SortFunc(superseded, func(a, b Segment) int { return strings.Compare(a.Key, b.Key) })
	for i := 1; i < len(used); i++ {
		prev, next := used[i-1], used[i]
		if prev.End().Equal(next.Manifest.Start) {
			continue
		}
		h := Hole{From: prev.End(), To: next.Manifest.Start, Before: prev.Key, After: next.Key}
		if !prev.Manifest.Empty() && prev.Until == nil {
			h.FromTime = prev.Manifest.LastTime
		}
		if !next.Manifest.Empty() {
			h.ToTime = next.Manifest.FirstTime
		}
		if next.Manifest.Start.Ordinal() < prev.End().Ordinal() {
			h.Problem = fmt.Sprintf("segment %s starts at %s, inside segment %s (%s to %s) but at a position that segment does not reach: "+
				"they are of different histories", next.Key, next.Manifest.Start, prev.Key, prev.Manifest.Start, prev.Manifest.End)
		}
		holes = append(holes, h)
	}
	return used, superseded, holes
}
