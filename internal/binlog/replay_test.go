package binlog

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/hastack/hastack/internal/backup"
)

// testArchive stores segments of transactions 0-1-1..0-1-9 (committed at t0+seq seconds),
// signed and encrypted, in three segments: 1-3, 4-6, 7-9.
func testArchive(t *testing.T) (*memStore, ReplayOptions, ListOptions) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	keys := testKeys(t)
	o := writeOptions{recipients: []age.Recipient{id.Recipient()}, keys: keys, server: Server{Address: "db:3306"}}
	for i, r := range [][2]uint64{{0, 3}, {3, 6}, {6, 9}} {
		writeTestSegment(t, st, o, r[0], r[1], t0.Add(time.Duration(i+1)*time.Minute))
	}
	return st, ReplayOptions{Objects: st, Identities: []age.Identity{id}}, ListOptions{Keys: keys}
}

func listed(t *testing.T, st *memStore, lo ListOptions) *Chain {
	t.Helper()
	c, err := List(context.Background(), st, lo)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// streamGTIDs parses a replay stream with go-mysql and returns its transactions' GTIDs and how
// many Format_description events it has.
func streamGTIDs(t *testing.T, b []byte) ([]string, int) {
	t.Helper()
	if !bytes.HasPrefix(b, []byte(binlogMagic)) {
		t.Fatal("the stream does not start with the binary log magic")
	}
	p := replication.NewBinlogParser()
	p.SetFlavor("mariadb")
	p.SetRawMode(true)
	p.SetVerifyChecksum(true)
	var asm assembler
	var gtids []string
	fdes := 0
	err := p.ParseReader(bytes.NewReader(b[4:]), func(ev *replication.BinlogEvent) error {
		if fde, ok := ev.Event.(*replication.FormatDescriptionEvent); ok {
			fdes++
			asm.crc = formatOf(fde).crc()
			return nil
		}
		tx, err := asm.add(ev)
		if tx != nil {
			gtids = append(gtids, tx.gtid.String())
		}
		return err
	})
	if err != nil || asm.inTransaction() {
		t.Fatalf("parse the stream: %v (in a transaction: %v)", err, asm.inTransaction())
	}
	return gtids, fdes
}

func TestWriteStreamSelects(t *testing.T) {
	st, ro, lo := testArchive(t)
	c := listed(t, st, lo)
	for name, tc := range map[string]struct {
		from     string
		stop     Stop
		gtids    string
		segments int
		covered  bool
	}{
		"to a time":                  {stop: Stop{Time: t0.Add(4 * time.Second)}, gtids: "0-1-1 0-1-2 0-1-3 0-1-4", segments: 2, covered: true},
		"to a time at a boundary":    {stop: Stop{Time: t0.Add(6*time.Second + 500*time.Millisecond)}, gtids: "0-1-1 0-1-2 0-1-3 0-1-4 0-1-5 0-1-6", segments: 2, covered: true},
		"from a dump inside, a GTID": {from: "0-1-2", stop: Stop{GTID: gtid("0-1-7")}, gtids: "0-1-3 0-1-4 0-1-5 0-1-6 0-1-7", segments: 3, covered: true},
		"from a segment's end":       {from: "0-1-6", gtids: "0-1-7 0-1-8 0-1-9", segments: 1, covered: true},
		"to the end":                 {gtids: "0-1-1 0-1-2 0-1-3 0-1-4 0-1-5 0-1-6 0-1-7 0-1-8 0-1-9", segments: 3, covered: true},
		"past the end":               {from: "0-1-8", stop: Stop{Time: t0.Add(time.Hour)}, gtids: "0-1-9", segments: 1},
		"to the dump's own GTID":     {from: "0-1-4", stop: Stop{GTID: gtid("0-1-4")}, covered: true},
		"the archive's end":          {from: "0-1-9", stop: Stop{Time: t0.Add(time.Hour)}},
	} {
		ro := ro
		ro.From, ro.Stop = pos(tc.from), tc.stop
		var out bytes.Buffer
		sel, err := WriteStream(context.Background(), &out, c, ro)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var gtids []string
		if tc.gtids != "" {
			gtids, _ = streamGTIDs(t, out.Bytes())
		} else if out.Len() != 0 {
			t.Errorf("%s: %d bytes written for no transaction", name, out.Len())
		}
		if strings.Join(gtids, " ") != tc.gtids || len(sel.Segments) != tc.segments || sel.Covered != tc.covered || sel.Bytes != int64(out.Len()) ||
			sel.Transactions != int64(len(gtids)) {
			t.Errorf("%s: got %q from %d segments, covered %v, selection %+v; want %q from %d, covered %v", name, gtids, len(sel.Segments), sel.Covered, sel, tc.gtids, tc.segments, tc.covered)
		}
		if len(gtids) > 0 && (sel.FirstGTID.String() != gtids[0] || sel.LastGTID.String() != gtids[len(gtids)-1] ||
			!sel.LastTime.Equal(t0.Add(time.Duration(sel.LastGTID.Seq)*time.Second)) || sel.End.String() != sel.LastGTID.String()) {
			t.Errorf("%s: selection %+v", name, sel)
		}
	}
}

func TestWriteStreamRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		from    string
		stop    Stop
		damage  func(st *memStore, c *Chain)
		err     string
		corrupt bool
	}{
		"a GTID that is not in the archive": {stop: Stop{GTID: gtid("0-1-20")}, err: "not in the archive, which ends at 0-1-9"},
		"a GTID of another server":          {stop: Stop{GTID: gtid("0-2-5")}, err: "segment binlog/00000000000000000003-00000000000000000006"},
		"a GTID before the dump":            {from: "0-1-5", stop: Stop{GTID: gtid("0-1-2")}, err: "restore an older dump"},
		"a dump of another history":         {from: "0-2-4", err: "another history"},
		"a dump after the archive":          {from: "0-1-12", err: "after the archive's end"},
		"time and GTID":                     {stop: Stop{GTID: gtid("0-1-2"), Time: t0}, err: "not both"},
		"a corrupt segment": {
			damage: func(st *memStore, c *Chain) { st.corrupt(dataKey(c.Segments[2].Key, true)) },
			err:    "binlog segment binlog/00000000000000000006-00000000000000000009", corrupt: true,
		},
		"a truncated segment": {
			damage: func(st *memStore, c *Chain) {
				k := dataKey(c.Segments[1].Key, true)
				st.objects[k] = st.objects[k][:len(st.objects[k])-1]
			},
			err: "binlog segment binlog/00000000000000000003-00000000000000000006", corrupt: true,
		},
		"a missing segment": {
			damage: func(st *memStore, c *Chain) { delete(st.objects, dataKey(c.Segments[2].Key, true)) },
			err:    "read binlog segment binlog/00000000000000000006-00000000000000000009",
		},
		"a hole in the way": {
			damage: func(st *memStore, c *Chain) { c.Segments = append(c.Segments[:1], c.Segments[2]); c.Holes = []Hole{{}} },
			stop:   Stop{GTID: gtid("0-1-8")}, err: "hole from 0-1-3",
		},
		"no identity": {
			damage: func(st *memStore, c *Chain) {}, err: "encrypted: give the age identity",
		},
	} {
		st, ro, lo := testArchive(t)
		c := listed(t, st, lo)
		if tc.damage != nil {
			tc.damage(st, c)
		}
		if name == "no identity" {
			ro.Identities = nil
		}
		ro.From, ro.Stop = pos(tc.from), tc.stop
		var out bytes.Buffer
		_, err := WriteStream(context.Background(), &out, c, ro)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.err)
		}
		if out.Len() != 0 {
			t.Errorf("%s: %d bytes written before the error", name, out.Len())
		}
		if tc.corrupt != errors.Is(err, backup.ErrCorrupt) {
			t.Errorf("%s: errors.Is(err, backup.ErrCorrupt) = %v", name, !tc.corrupt)
		}
	}
}

// A rebase inside a segment cuts it; another server's transactions follow; a newer server's
// format follows too: the stream carries a second Format_description event.
func TestWriteStreamAcrossACutAndAFormatChange(t *testing.T) {
	ctx := context.Background()
	st, ro, lo := testArchive(t)
	if _, err := Rebase(ctx, st, lo.Keys, pos("0-1-5"), "restored to 0-1-5"); err != nil {
		t.Fatal(err)
	}
	w := writeOptions{recipients: []age.Recipient{ro.Identities[0].(*age.X25519Identity).Recipient()}, keys: lo.Keys}
	s := buildSegmentWith(t, otherFDE(t), pos("0-1-5"), time.Now(),
		rowTxn(gtid("0-2-6"), t0.Add(20*time.Second), "a"), ddlTxn(gtid("0-2-7"), t0.Add(21*time.Second), "DROP TABLE t"))
	if _, _, err := s.write(ctx, st, w, nextWritten(time.Now(), latestWrittenOf(t, st))); err != nil {
		t.Fatal(err)
	}
	c := listed(t, st, lo)
	if keysOf(c.Segments) != ">0-1-3 0-1-3>0-1-6|0-1-5 0-1-5>0-2-7" || len(c.Superseded) != 2 || len(c.Holes) != 0 {
		t.Fatalf("chain %q, superseded %q", keysOf(c.Segments), keysOf(c.Superseded))
	}
	var out bytes.Buffer
	ro.From = pos("0-1-1")
	sel, err := WriteStream(ctx, &out, c, ro)
	if err != nil {
		t.Fatal(err)
	}
	gtids, fdes := streamGTIDs(t, out.Bytes())
	if strings.Join(gtids, " ") != "0-1-2 0-1-3 0-1-4 0-1-5 0-2-6 0-2-7" || fdes != 2 || !sel.Covered {
		t.Fatalf("stream %q with %d Format_description events; selection %+v", gtids, fdes, sel)
	}
}

func latestWrittenOf(t *testing.T, st *memStore) int64 {
	objs, _ := st.List(context.Background())
	return latestWritten(objs)
}

func TestOpenSegmentIsAValidBinlog(t *testing.T) {
	st, ro, lo := testArchive(t)
	c := listed(t, st, lo)
	plain, err := OpenSegment(context.Background(), st, c.Segments[1], ro.Identities)
	if err != nil {
		t.Fatal(err)
	}
	gtids, fdes := streamGTIDs(t, plain)
	if strings.Join(gtids, " ") != "0-1-4 0-1-5 0-1-6" || fdes != 1 || int64(len(plain)) != c.Segments[1].Manifest.RawBytes {
		t.Fatalf("segment holds %q, %d Format_description events, %d bytes", gtids, fdes, len(plain))
	}
}
