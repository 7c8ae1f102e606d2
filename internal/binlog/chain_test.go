package binlog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/backup"
)

var t0 = time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)

// seg is a segment from start to end written at second w (its transactions committed at
// seconds start+1 to end, one a second, for readable times).
func seg(start, end string, w int) Segment {
	m := Manifest{Version: ManifestVersion, Start: pos(start), End: pos(end), Written: t0.Add(time.Duration(w) * time.Second)}
	if !m.Start.Equal(m.End) {
		m.Transactions = 1
		m.FirstTime = t0.Add(time.Duration(m.Start.Ordinal()+1) * time.Second)
		m.LastTime = t0.Add(time.Duration(m.End.Ordinal()) * time.Second)
	}
	return Segment{Key: baseKey(m.Start, m.End, m.Written), Manifest: m}
}

func keysOf(segs []Segment) string {
	var s []string
	for _, x := range segs {
		r := x.Manifest.Start.String() + ">" + x.Manifest.End.String()
		if x.Until != nil {
			r += "|" + x.Until.String()
		}
		s = append(s, r)
	}
	return strings.Join(s, " ")
}

func TestResolve(t *testing.T) {
	for name, tc := range map[string]struct {
		segs       []Segment
		used, gone string
		holes      int
	}{
		"contiguous": {
			segs: []Segment{seg("0-1-3", "0-1-7", 2), seg("", "0-1-3", 1), seg("0-1-7", "0-1-9", 3)},
			used: ">0-1-3 0-1-3>0-1-7 0-1-7>0-1-9",
		},
		"a hole": {
			segs: []Segment{seg("", "0-1-3", 1), seg("0-1-7", "0-1-9", 2)},
			used: ">0-1-3 0-1-7>0-1-9", holes: 1,
		},
		"divergence: stepped back, then continued": {
			segs: []Segment{seg("", "0-1-3", 1), seg("0-1-3", "0-1-7", 2), seg("0-1-3", "0-1-3", 3), seg("0-1-3", "0-2-8", 4)},
			used: ">0-1-3 0-1-3>0-2-8", gone: "0-1-3>0-1-3 0-1-3>0-1-7",
		},
		"a duplicate": {
			segs: []Segment{seg("", "0-1-3", 1), seg("", "0-1-3", 2)},
			used: ">0-1-3", gone: ">0-1-3",
		},
		"a step back over several segments": {
			segs: []Segment{seg("", "0-1-3", 1), seg("0-1-3", "0-1-5", 2), seg("0-1-5", "0-1-7", 3), seg("0-1-3", "0-1-3", 4)},
			used: ">0-1-3 0-1-3>0-1-3", gone: "0-1-3>0-1-5 0-1-5>0-1-7",
		},
		"a rebase inside a segment cuts it": {
			segs: []Segment{seg("", "0-1-10", 1), seg("0-1-5", "0-1-5", 2), seg("0-1-5", "0-1-8", 3)},
			used: ">0-1-10|0-1-5 0-1-5>0-1-8", gone: "0-1-5>0-1-5",
		},
		"a later segment inside, of another history": {
			segs: []Segment{seg("", "0-1-10", 1), seg("0-1-5,1-1-3", "0-1-6,1-1-3", 2)},
			used: ">0-1-10 0-1-5,1-1-3>0-1-6,1-1-3", holes: 1,
		},
	} {
		used, gone, holes := resolve(tc.segs)
		if keysOf(used) != tc.used || keysOf(gone) != tc.gone || len(holes) != tc.holes {
			t.Errorf("%s:\n used %q, want %q\n superseded %q, want %q\n holes %+v, want %d", name, keysOf(used), tc.used, keysOf(gone), tc.gone, holes, tc.holes)
		}
	}
}

func TestResolveNamesWhatSupersedesAndHoles(t *testing.T) {
	used, gone, holes := resolve([]Segment{seg("", "0-1-3", 1), seg("0-1-3", "0-1-7", 2), seg("0-1-3", "0-1-3", 3), seg("0-1-9", "0-1-12", 5)})
	if len(gone) != 1 || gone[0].SupersededBy != used[1].Key {
		t.Fatalf("superseded %+v, used %s", gone, keysOf(used))
	}
	if len(holes) != 1 {
		t.Fatalf("holes %+v", holes)
	}
	h := holes[0]
	if h.From.String() != "0-1-3" || h.To.String() != "0-1-9" || h.Before != used[1].Key || h.After != used[2].Key ||
		!h.FromTime.IsZero() || !h.ToTime.Equal(t0.Add(10*time.Second)) || h.Problem != "" {
		t.Fatalf("hole %+v", h)
	}
	c := &Chain{Segments: used, Holes: holes}
	r := c.Range()
	if r.From.String() != "" || r.To.String() != "0-1-12" || !r.FromTime.Equal(t0.Add(time.Second)) || !r.ToTime.Equal(t0.Add(12*time.Second)) || len(r.Holes) != 1 {
		t.Fatalf("range %+v", r)
	}
}

// writeTestSegment stores a segment of row transactions start+1..end (domain 0, server 1), one
// a second from the second after start.
func writeTestSegment(t testing.TB, st Store, o writeOptions, start, end uint64, written time.Time) (Manifest, string) {
	t.Helper()
	var txns [][][]byte
	for seq := start + 1; seq <= end; seq++ {
		txns = append(txns, rowTxn(gtid("0-1-"+itoa(seq)), t0.Add(time.Duration(seq)*time.Second), "row "+itoa(seq)))
	}
	var p Position
	if start > 0 {
		p = pos("0-1-" + itoa(start))
	}
	s := buildSegment(t, p, written, txns...)
	m, key, err := s.write(context.Background(), st, o, written)
	if err != nil {
		t.Fatal(err)
	}
	return m, key
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func testKeys(t testing.TB) *backup.ManifestKeys {
	k, err := backup.ParseManifestKeys([]byte(strings.Repeat("k", 40) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestListChecksManifestsAndSignatures(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	keys := testKeys(t)
	signed := writeOptions{keys: keys, server: Server{Address: "db:3306"}}
	writeTestSegment(t, st, signed, 0, 3, t0.Add(time.Minute))
	_, second := writeTestSegment(t, st, signed, 3, 5, t0.Add(2*time.Minute))
	_, forged := writeTestSegment(t, st, writeOptions{}, 5, 9, t0.Add(3*time.Minute)) // unsigned
	_, tampered := writeTestSegment(t, st, signed, 5, 6, t0.Add(4*time.Minute))
	b, _ := st.objects[manifestKey(tampered)]
	st.objects[manifestKey(tampered)] = []byte(strings.Replace(string(b), `"db:3306"`, `"db:3307"`, 1))
	_, broken := writeTestSegment(t, st, signed, 6, 7, t0.Add(5*time.Minute))
	st.objects[manifestKey(broken)] = []byte(`{"version": 1, "start": "0-1-6"}`)
	_, incomplete := writeTestSegment(t, st, signed, 7, 8, t0.Add(6*time.Minute))
	delete(st.objects, manifestKey(incomplete))

	c, err := List(ctx, st, ListOptions{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if keysOf(c.Segments) != ">0-1-3 0-1-3>0-1-5" || len(c.Holes) != 0 || len(c.Superseded) != 0 {
		t.Fatalf("used %q, holes %v, superseded %v", keysOf(c.Segments), c.Holes, c.Superseded)
	}
	if c.Segments[1].Key != second || c.Segments[1].Auth.Status != backup.AuthVerified || len(c.Segments[1].Objects) != 3 {
		t.Fatalf("second segment %+v", c.Segments[1])
	}
	problems := map[string]string{}
	for _, r := range c.Rejected {
		problems[r.Key] = r.Problem
	}
	for key, want := range map[string]string{forged: "not signed", tampered: "signature is wrong", broken: "segment manifest", incomplete: "no manifest"} {
		if !strings.Contains(problems[key], want) {
			t.Errorf("rejected %s: %q, want %q", key, problems[key], want)
		}
	}
	if len(c.Rejected) != 4 {
		t.Errorf("%d rejected, want 4: %+v", len(c.Rejected), c.Rejected)
	}

	// Unsigned accepted when asked; still never a wrong signature.
	c, err = List(ctx, st, ListOptions{Keys: keys, AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if keysOf(c.Segments) != ">0-1-3 0-1-3>0-1-5 0-1-5>0-1-9" {
		t.Fatalf("with unsigned allowed: %q", keysOf(c.Segments))
	}
}

// A store that fails while List reads manifests fails List: a segment must not look invalid
// because the store hiccuped (the archiver would then resume before it).
func TestListFailsOnStoreErrors(t *testing.T) {
	st := newMemStore()
	writeTestSegment(t, st, writeOptions{}, 0, 3, t0)
	_, err := List(context.Background(), failingGets{st}, ListOptions{AllowUnsigned: true})
	if err == nil || !strings.Contains(err.Error(), "store down") {
		t.Fatalf("List = %v", err)
	}
}

type failingGets struct{ *memStore }

func (f failingGets) Get(ctx context.Context, key string) (r io.ReadCloser, n int64, err error) {
	return nil, 0, errors.New("store down")
}

// An object too large for a manifest or a signature is a rejected segment, not a store error:
// one junk object must not make the whole archive unreadable.
func TestListRejectsOversizedObjects(t *testing.T) {
	st := newMemStore()
	writeTestSegment(t, st, writeOptions{}, 0, 3, t0)
	_, big := writeTestSegment(t, st, writeOptions{}, 3, 5, t0.Add(time.Minute))
	st.objects[manifestKey(big)] = bytes.Repeat([]byte(" "), maxManifest+1)
	_, bigSig := writeTestSegment(t, st, writeOptions{}, 5, 6, t0.Add(2*time.Minute))
	st.objects[signatureKey(bigSig)] = bytes.Repeat([]byte("x"), 5<<10)
	c, err := List(context.Background(), st, ListOptions{AllowUnsigned: true})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	problems := map[string]string{}
	for _, r := range c.Rejected {
		problems[r.Key] = r.Problem
	}
	if keysOf(c.Segments) != ">0-1-3" || len(c.Rejected) != 2 || !strings.Contains(problems[big], "larger than") || !strings.Contains(problems[bigSig], "larger than") {
		t.Fatalf("used %q, rejected %+v", keysOf(c.Segments), c.Rejected)
	}
}

// Rebase writes a key that List reads, whatever junk is in the store.
func TestRebaseIgnoresTheWritingTimeOfJunk(t *testing.T) {
	st := newMemStore()
	writeTestSegment(t, st, writeOptions{}, 0, 3, t0)
	st.objects["binlog/00000000000000000000-00000000000000000001-9223372036854775807.json"] = []byte("junk")
	if _, err := Rebase(context.Background(), st, nil, pos("0-1-2"), "restored"); err != nil {
		t.Fatal(err)
	}
	c, err := List(context.Background(), st, ListOptions{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.End().String() != "0-1-2" || len(c.Unknown) != 0 {
		t.Fatalf("end %s, unknown %v", c.End(), c.Unknown)
	}
}
