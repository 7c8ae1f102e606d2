package binlog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// rseg is a segment of a retention case: valid (resolved into the chain), or rejected (with or
// without its manifest object).
type rseg struct {
	name     string
	s        Segment
	rejected string // "": valid; "manifest": rejected for its manifest; "incomplete": no manifest
}

func valid(name, start, end string, w int) rseg { return rseg{name: name, s: seg(start, end, w)} }

func rejected(name, start, end string, w int, kind string) rseg {
	return rseg{name: name, s: seg(start, end, w), rejected: kind}
}

// chainOf resolves a case's segments as List does. It returns the chain and, for the view of
// every segment with a manifest (a restore with --allow-unsigned), the rejected ones with a
// manifest.
func chainOf(segs []rseg) (*Chain, []Segment) {
	var ok, withManifest []Segment
	c := &Chain{}
	for _, r := range segs {
		s := r.s
		s.Objects = []string{dataKey(s.Key, false), manifestKey(s.Key), signatureKey(s.Key)}
		switch r.rejected {
		case "":
			ok = append(ok, s)
			continue
		case "manifest":
			withManifest = append(withManifest, s)
		case "incomplete":
			s.Objects = s.Objects[:1]
		}
		c.Rejected = append(c.Rejected, Rejected{Key: s.Key, Problem: r.rejected, Written: s.Manifest.Written, Objects: s.Objects})
	}
	c.Segments, c.Superseded, c.Holes = resolve(ok)
	return c, withManifest
}

func positions(ps ...string) []Position {
	var out []Position
	for _, p := range ps {
		out = append(out, pos(p))
	}
	return out
}

func TestRetention(t *testing.T) {
	abc := []rseg{valid("A", "", "0-1-3", 1), valid("B", "0-1-3", "0-1-7", 2), valid("C", "0-1-7", "0-1-9", 3)}
	failover := []rseg{valid("A", "", "0-1-3", 1), valid("B", "0-1-3", "0-1-7", 2), valid("E", "0-1-3", "0-1-3", 3), valid("N", "0-1-3", "0-2-8", 4)}
	stepBack := []rseg{valid("A", "", "0-1-10", 1), valid("S", "0-1-10", "0-1-20", 2), valid("E", "0-1-10", "0-1-10", 3),
		valid("N", "0-1-10", "0-2-15", 4), valid("M", "0-2-15", "0-2-25", 5)}
	cut := []rseg{valid("A", "", "0-1-10", 1), valid("E", "0-1-5", "0-1-5", 2), valid("B", "0-1-5", "0-1-8", 3)}
	domains := []rseg{valid("A", "", "0-1-3", 1), valid("B", "0-1-3", "0-1-4,1-2-2", 2),
		valid("C", "0-1-4,1-2-2", "0-1-6,1-2-3", 3), valid("D", "0-1-6,1-2-3", "0-1-7,1-2-3", 4)}
	hole := []rseg{valid("A", "", "0-1-3", 1), valid("B", "0-1-3", "0-1-5", 2), valid("C", "0-1-9", "0-1-12", 3), valid("D", "0-1-12", "0-1-15", 4)}
	day := 24 * 3600
	for _, tc := range []struct {
		name string
		segs []rseg
		kept []Position
		now  time.Duration // after t0; 2 h when 0
		want string        // the segments deleted, in order
	}{
		{name: "no kept backup: nothing, not even superseded or incomplete segments",
			segs: append(slices.Clone(abc), valid("A2", "", "0-1-3", 4), rejected("X", "0-1-9", "0-1-10", 5, "incomplete")),
			now:  48 * time.Hour},
		{name: "backup inside a segment: that one is kept", segs: abc, kept: positions("0-1-5"), want: "A"},
		{name: "backup at a boundary: the segment ending there goes", segs: abc, kept: positions("0-1-7"), want: "A B"},
		{name: "backup at the archive's end: its last segment stays", segs: abc, kept: positions("0-1-9"), want: "A B"},
		{name: "backup after the archive's end: its last segment stays", segs: abc, kept: positions("0-1-12"), want: "A B"},
		{name: "backup before the archive's start", segs: abc[1:], kept: positions("0-1-2"), want: ""},
		{name: "backup before the first transaction", segs: abc, kept: positions(""), want: ""},
		{name: "several backups: the oldest decides", segs: abc, kept: positions("0-1-8", "0-1-4"), want: "A"},
		{name: "backup inside a hole: what ends before it goes, the hole's other side stays", segs: hole, kept: positions("0-1-7"), want: "A B"},
		{name: "a hole after the backup stays with both its sides", segs: hole, kept: positions("0-1-4"), want: "A"},
		{name: "a hole right after the backup: the segment ending at it stays", segs: hole, kept: positions("0-1-5"), want: "A"},
		{name: "a cut segment ends at its cut", segs: cut, kept: positions("0-1-6"), want: "A E"},
		{name: "a cut segment that holds the backup stays", segs: cut, kept: positions("0-1-4"), want: "E"},
		{name: "failover: superseded segments go after an hour", segs: failover, kept: positions("0-2-5"), want: "A B E"},
		{name: "failover: superseded segments stay within the hour", segs: failover, kept: positions("0-2-5"), now: 30 * time.Minute, want: "A"},
		{name: "failover, backup at the step back: the new history's segment holds it", segs: failover, kept: positions("0-1-3"), want: "A B E"},
		{name: "step back: a superseded segment within the hour keeps what supersedes it",
			segs: stepBack, kept: positions("0-2-15"), now: 10 * time.Minute, want: "A"},
		{name: "step back, after the hour", segs: stepBack, kept: positions("0-2-15"), want: "A S E N"},
		{name: "duplicate: both copies go", segs: []rseg{valid("A", "", "0-1-3", 1), valid("A2", "", "0-1-3", 2), valid("B", "0-1-3", "0-1-5", 3)},
			kept: positions("0-1-4"), want: "A A2"},
		{name: "duplicate within the hour: the later copy keeps the earlier one superseded",
			segs: []rseg{valid("A", "", "0-1-3", 1), valid("A2", "", "0-1-3", 2), valid("B", "0-1-3", "0-1-5", 3)},
			kept: positions("0-1-4"), now: 30 * time.Minute, want: ""},
		{name: "an empty segment at the backup's position holds it",
			segs: []rseg{valid("A", "", "0-1-5", 1), valid("E", "0-1-5", "0-1-5", 2)}, kept: positions("0-1-5"), want: "A"},
		{name: "domains: at the backup's position in every domain", segs: domains, kept: positions("0-1-4,1-2-2"), want: "A B"},
		{name: "domains: the same ordinal is not before", segs: domains, kept: positions("0-1-5,1-2-1"), want: "A"},
		{name: "domains: a backup without a domain is before none of its transactions", segs: domains, kept: positions("0-1-9"), want: "A"},
		{name: "domains: the next segment starts at the backup", segs: domains, kept: positions("0-1-6,1-2-3"), want: "A B C"},
		{name: "incomplete segments go after a day, wherever they are",
			segs: append(slices.Clone(abc), rejected("X", "0-1-7", "0-1-8", 10, "incomplete"), rejected("Y", "0-1-9", "0-1-10", day+3600, "incomplete")),
			kept: positions("0-1-5"), now: 25*time.Hour + 30*time.Minute, want: "A X"},
		{name: "unusable segments go after a day, only before every kept backup",
			segs: append(slices.Clone(abc[1:]), rejected("U1", "", "0-1-2", 0, "manifest"), rejected("U2", "0-1-5", "0-1-9", 6, "manifest"),
				rejected("U3", "0-1-1", "0-1-2", day+3600, "manifest")),
			kept: positions("0-1-8"), now: 25*time.Hour + 30*time.Minute, want: "U1 B"},
		{name: "an unusable segment inside what a superseded segment keeps stays",
			segs: []rseg{rejected("U", "0-1-11", "0-1-12", 1, "manifest"), valid("A", "", "0-1-10", day+100), valid("S", "0-1-10", "0-1-20", day+200),
				valid("E", "0-1-10", "0-1-10", day+300), valid("N", "0-1-10", "0-1-15", day+400), valid("M", "0-1-15", "0-1-25", day+500)},
			kept: positions("0-1-15"), now: time.Duration(day+1100) * time.Second, want: "A"},
		{name: "an unusable segment that a later one supersedes keeps that one (--allow-unsigned view)",
			segs: []rseg{valid("A", "", "0-1-10", 1), rejected("R", "0-1-10", "0-1-20", 2, "manifest"),
				valid("N", "0-1-10", "0-1-15", 4), valid("M", "0-1-15", "0-1-25", 5)},
			kept: positions("0-1-15"), want: "A"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, withManifest := chainOf(tc.segs)
			names := map[string]string{}
			for _, r := range tc.segs {
				names[r.s.Key] = r.name
			}
			now := t0.Add(cmpOr(tc.now, 2*time.Hour))
			dels := Retention(c, tc.kept, now)
			var got []string
			for _, d := range dels {
				got = append(got, names[d.Key])
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("deleted %q, want %q (chain %s)", strings.Join(got, " "), tc.want, keysOf(c.Segments))
				for _, d := range dels {
					t.Logf("%s: %s", names[d.Key], d.Reason)
				}
			}
			checkRetention(t, c, withManifest, tc.kept, now, dels)
		})
	}
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// checkRetention checks what Retention decided against the rule, whatever the archive: nothing
// without a kept backup; of the chain only a prefix, never its last segment, never one a kept
// backup's replay starts in or after, only ones that end at or before every kept backup; and,
// after every prefix of the deletions (an interrupted Prune), the archive resolves to the same
// chain without the deleted segments: the same cuts, the same holes between what is left, every
// superseded segment left still superseded (also counting the rejected segments that have a
// manifest, as a restore with --allow-unsigned would).
func checkRetention(t *testing.T, c *Chain, withManifest []Segment, kept []Position, now time.Time, dels []Deletion) {
	t.Helper()
	if len(kept) == 0 && len(dels) > 0 {
		t.Fatalf("deleted %d segments without a kept backup", len(dels))
	}
	index := map[string]int{}
	for i, s := range c.Segments {
		index[s.Key] = i
	}
	superseded := map[string]Segment{}
	for _, s := range c.Superseded {
		superseded[s.Key] = s
	}
	rejected := map[string]Rejected{}
	for _, r := range c.Rejected {
		rejected[r.Key] = r
	}
	seen := map[string]bool{}
	for j, d := range dels {
		if seen[d.Key] {
			t.Fatalf("%s deleted twice", d.Key)
		}
		seen[d.Key] = true
		if d.Reason == "" {
			t.Errorf("%s: no reason", d.Key)
		}
		if j > 0 && d.Written.Before(dels[j-1].Written) {
			t.Errorf("%s deleted after %s, written later", dels[j-1].Key, d.Key)
		}
		if i, ok := index[d.Key]; ok {
			s := c.Segments[i]
			if i == len(c.Segments)-1 {
				t.Errorf("the archive's last segment %s deleted", d.Key)
			}
			for _, p := range kept {
				if !atOrBefore(s.End(), p) {
					t.Errorf("%s (ends at %s) deleted, but a backup at %s needs it", d.Key, s.End(), p)
				}
				for a := len(c.Segments) - 1; a >= 0; a-- {
					if p.Within(c.Segments[a].Manifest.Start, c.Segments[a].End()) {
						if i >= a {
							t.Errorf("%s deleted: a replay from %s starts in %s", d.Key, p, c.Segments[a].Key)
						}
						break
					}
				}
			}
		} else if s, ok := superseded[d.Key]; ok {
			if now.Sub(s.Manifest.Written) <= SupersededGrace {
				t.Errorf("superseded %s deleted within the grace", d.Key)
			}
		} else if r, ok := rejected[d.Key]; ok {
			if now.Sub(r.Written) <= RejectedGrace {
				t.Errorf("rejected %s deleted within the grace", d.Key)
			}
		} else {
			t.Errorf("%s deleted: not a segment of the archive", d.Key)
		}
	}

	all := append(slices.Clone(c.Segments), c.Superseded...)
	_, supersededWith, _ := resolve(clean(append(slices.Clone(all), withManifest...), nil))
	for j := 0; j <= len(dels); j++ {
		gone := map[string]bool{}
		for _, d := range dels[:j] {
			gone[d.Key] = true
		}
		used, sup, holes := resolve(clean(all, gone))
		n := 0
		var want []Segment
		for i, s := range c.Segments {
			if !gone[s.Key] {
				want = append(want, s)
				continue
			}
			if i != n {
				t.Fatalf("after %d deletions: %s deleted, not a prefix of the chain %s", j, s.Key, keysOf(c.Segments))
			}
			n++
		}
		if keysOf(used) != keysOf(want) || !slices.Equal(segKeys(used), segKeys(want)) {
			t.Fatalf("after %d deletions the archive is %s, want %s", j, keysOf(used), keysOf(want))
		}
		var wantHoles []Hole
		for _, h := range c.Holes {
			if !gone[h.Before] {
				wantHoles = append(wantHoles, h)
			}
		}
		if fmt.Sprint(holeKeys(holes)) != fmt.Sprint(holeKeys(wantHoles)) {
			t.Fatalf("after %d deletions the holes are %v, want %v", j, holeKeys(holes), holeKeys(wantHoles))
		}
		var wantSup []string
		for _, s := range c.Superseded {
			if !gone[s.Key] {
				wantSup = append(wantSup, s.Key)
			}
		}
		if !slices.Equal(segKeys(sup), wantSup) {
			t.Fatalf("after %d deletions superseded %v, want %v", j, segKeys(sup), wantSup)
		}
		_, supWith, _ := resolve(clean(append(slices.Clone(all), withManifest...), gone))
		left := map[string]bool{}
		for _, s := range supWith {
			left[s.Key] = true
		}
		for _, s := range supersededWith {
			if !gone[s.Key] && !left[s.Key] {
				t.Fatalf("after %d deletions %s is no longer superseded when the rejected segments count", j, s.Key)
			}
		}
	}
}

// clean returns the segments not gone as List finds them, before resolve.
func clean(segs []Segment, gone map[string]bool) []Segment {
	var out []Segment
	for _, s := range segs {
		if !gone[s.Key] {
			s.Until, s.SupersededBy = nil, ""
			out = append(out, s)
		}
	}
	return out
}

func segKeys(segs []Segment) []string {
	var out []string
	for _, s := range segs {
		out = append(out, s.Key)
	}
	return out
}

func holeKeys(holes []Hole) []string {
	var out []string
	for _, h := range holes {
		out = append(out, h.Before+">"+h.After+" "+h.From.String()+">"+h.To.String())
	}
	return out
}

// Random archives as archivers make them (appends, idle markers, gaps, failovers stepping back,
// rebases inside a segment, duplicates, failed writes, unusable segments) and random kept
// backups: whatever Retention deletes, the rule holds (checkRetention).
func TestRetentionRandomArchives(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 2026))
	deleted := 0
	for i := range 3000 {
		segs, maxSeq, servers := randomArchive(r)
		c, withManifest := chainOf(segs)
		var kept []Position
		for range r.IntN(4) {
			seq := uint64(r.IntN(int(maxSeq) + 4))
			kept = append(kept, pos(posString(uint32(1+r.IntN(int(servers))), seq)))
		}
		last := segs[len(segs)-1].s.Manifest.Written
		now := last.Add(time.Duration(r.IntN(30*3600)) * time.Second)
		dels := Retention(c, kept, now)
		deleted += len(dels)
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkRetention(t, c, withManifest, kept, now, dels) })
	}
	if deleted == 0 {
		t.Fatal("no random archive had anything to delete: the test tests nothing")
	}
}

func posString(server uint32, seq uint64) string {
	if seq == 0 {
		return ""
	}
	return fmt.Sprintf("0-%d-%d", server, seq)
}

// randomArchive returns an archive's segments in the order written, its highest sequence
// number and the number of servers (histories) it went through.
func randomArchive(r *rand.Rand) (segs []rseg, maxSeq uint64, servers uint32) {
	server, seq, w := uint32(1), uint64(0), 0
	cur := ""
	var recent []Segment // this history's segments, for stepping back
	add := func(s rseg) {
		segs = append(segs, s)
		if s.rejected == "" {
			recent = append(recent, s.s)
		}
	}
	for range 4 + r.IntN(30) {
		w += 1 + r.IntN(1200)
		name := fmt.Sprint(len(segs))
		switch op := r.IntN(100); {
		case op < 55 || len(recent) == 0:
			n := uint64(1 + r.IntN(4))
			end := posString(server, seq+n)
			add(valid(name, cur, end, w))
			cur, seq = end, seq+n
		case op < 62:
			add(valid(name, cur, cur, w)) // an empty segment (after a rebase)
		case op < 70:
			seq += uint64(1 + r.IntN(4)) // a gap: the next segment starts after a hole
			cur = posString(server, seq)
		case op < 80: // a failover: step back to a recent segment's start
			i := len(recent) - 1 - r.IntN(min(3, len(recent)))
			at := recent[i].Manifest.Start
			if len(at) == 0 {
				continue
			}
			add(valid(name, at.String(), at.String(), w))
			recent = recent[:i]
			cur, seq = at.String(), at.Ordinal()
			server++
		case op < 86: // a rebase inside a segment
			s := recent[len(recent)-1]
			lo, hi := s.Manifest.Start.Ordinal(), s.Manifest.End.Ordinal()
			if hi-lo < 2 {
				continue
			}
			mid := posString(s.Manifest.End[0].Server, lo+1+uint64(r.IntN(int(hi-lo-1))))
			add(valid(name, mid, mid, w))
			recent = recent[:len(recent)-1]
			cur, seq = mid, pos(mid).Ordinal()
		case op < 90: // a duplicate of the last segment
			s := recent[len(recent)-1]
			add(valid(name, s.Manifest.Start.String(), s.Manifest.End.String(), w))
		default: // a failed write, or a segment this agent cannot use
			lo := uint64(r.IntN(int(seq) + 1))
			hi := lo + uint64(r.IntN(4))
			kind := "incomplete"
			if r.IntN(2) == 0 {
				kind = "manifest"
			}
			add(rejected(name, posString(server, lo), posString(server, hi), w, kind))
		}
		maxSeq = max(maxSeq, seq)
	}
	if len(recent) == 0 {
		add(valid("last", cur, posString(server, seq+1), w+1))
		maxSeq = seq + 1
	}
	return segs, maxSeq, server
}

// recordingStore deletes from a memStore and records each call; it fails the call failAt (from 1).
type recordingStore struct {
	*memStore
	calls  [][]string
	failAt int
}

func (s *recordingStore) Delete(ctx context.Context, keys ...string) error {
	s.calls = append(s.calls, keys)
	if len(s.calls) == s.failAt {
		return errors.New("store down")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.objects, k)
	}
	return nil
}

// Retention and Prune on a stored archive: List, decide, delete (manifest first), List again;
// an interrupted Prune leaves data without a manifest, which the next one deletes.
func TestPruneStoredArchive(t *testing.T) {
	ctx := context.Background()
	keys := testKeys(t)
	signed := writeOptions{keys: keys, server: Server{Address: "db:3306"}}
	build := func() (*recordingStore, map[string]string) {
		st := &recordingStore{memStore: newMemStore()}
		names := map[string]string{}
		_, k := writeTestSegment(t, st, writeOptions{}, 0, 2, t0.Add(30*time.Second)) // unsigned: rejected
		names[k] = "U"
		_, k = writeTestSegment(t, st, signed, 0, 3, t0.Add(time.Minute))
		names[k] = "A"
		_, k = writeTestSegment(t, st, signed, 3, 5, t0.Add(2*time.Minute))
		names[k] = "B"
		_, k = writeTestSegment(t, st, signed, 5, 9, t0.Add(3*time.Minute))
		names[k] = "C"
		_, k = writeTestSegment(t, st, writeOptions{}, 9, 12, t0.Add(4*time.Minute)) // unsigned, in the window: kept
		names[k] = "W"
		_, k = writeTestSegment(t, st, signed, 9, 10, t0.Add(5*time.Minute))
		delete(st.objects, manifestKey(k)) // a failed write
		names[k] = "X"
		return st, names
	}
	kept := positions("0-1-5")
	now := t0.Add(25 * time.Hour)
	prune := func(st *recordingStore, names map[string]string) ([]string, error) {
		c, err := List(ctx, st, ListOptions{Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		done, err := Prune(ctx, st, Retention(c, kept, now))
		var got []string
		for _, d := range done {
			got = append(got, names[d.Key])
		}
		return got, err
	}

	st, names := build()
	got, err := prune(st, names)
	if err != nil || strings.Join(got, " ") != "U A B X" {
		t.Fatalf("Prune deleted %q, %v; want U A B X", got, err)
	}
	manifestCall := map[string]int{} // by base key: the call that deleted its manifest
	for i, call := range st.calls {
		for _, k := range call {
			info, suffix, _ := parseKey(k)
			if suffix == manifestSuffix {
				if len(call) != 1 {
					t.Errorf("a manifest deleted together with other objects: %v", call)
				}
				manifestCall[info.base] = i
				continue
			}
			if mi, ok := manifestCall[info.base]; names[info.base] != "X" && (!ok || mi >= i) {
				t.Errorf("%s deleted before its manifest (calls %v)", k, st.calls)
			}
		}
	}
	c, err := List(ctx, st, ListOptions{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Segments) != 1 || names[c.Segments[0].Key] != "C" || len(c.Rejected) != 1 || names[c.Rejected[0].Key] != "W" {
		t.Fatalf("left: segments %s, rejected %+v", keysOf(c.Segments), c.Rejected)
	}

	// Interrupted after U's manifest: U is then data without a manifest, the chain unchanged.
	st, names = build()
	st.failAt = 2
	got, err = prune(st, names)
	if err == nil || !strings.Contains(err.Error(), "store down") || len(got) != 0 {
		t.Fatalf("interrupted Prune: deleted %q, %v", got, err)
	}
	c, err = List(ctx, st, ListOptions{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	incomplete := false
	for _, r := range c.Rejected {
		incomplete = incomplete || names[r.Key] == "U" && strings.Contains(r.Problem, "no manifest")
	}
	if keysOf(c.Segments) != ">0-1-3 0-1-3>0-1-5 0-1-5>0-1-9" || !incomplete {
		t.Fatalf("after an interrupted Prune: segments %s, rejected %+v", keysOf(c.Segments), c.Rejected)
	}
	st.failAt = 0
	if got, err = prune(st, names); err != nil || strings.Join(got, " ") != "U A B X" {
		t.Fatalf("Prune after the interrupted one deleted %q, %v", got, err)
	}
}

func TestPruneRefusesObjectsOfAnotherSegment(t *testing.T) {
	st := &recordingStore{memStore: newMemStore()}
	base := baseKey(pos("0-1-3"), pos("0-1-5"), t0)
	for _, objs := range [][]string{
		{manifestKey(base), "20261124T030000Z/dump.sql.zst"},
		{manifestKey(baseKey(pos("0-1-3"), pos("0-1-6"), t0))},
		{base + ".json.bak"},
	} {
		if _, err := Prune(context.Background(), st, []Deletion{{Key: base, Objects: objs}}); err == nil || len(st.calls) != 0 {
			t.Errorf("Prune of %v: %v, calls %v", objs, err, st.calls)
		}
	}
}
