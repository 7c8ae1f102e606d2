package binlog

import (
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
)

func TestAssemblerGroupsWholeTransactions(t *testing.T) {
	ts := time.Date(2026, 12, 1, 14, 3, 27, 0, time.UTC)
	commit := ts.Add(2 * time.Second)
	multi := [][]byte{
		gtidEvent(gtid("0-1-3"), 0, ts),
		rowsEvent(1, ts, "a"),
		event(replication.HEARTBEAT_EVENT, 1, time.Unix(0, 0), 0, []byte("mariadb-bin.000001")), // dropped
		queryEvent(1, commit, "COMMIT"),
	}
	raws := [][]byte{fdeBytes(t), metaEvent(replication.MARIADB_GTID_LIST_EVENT, 1), metaEvent(replication.MARIADB_BINLOG_CHECKPOINT_EVENT, 1)}
	raws = append(raws, ddlTxn(gtid("0-1-1"), ts, "CREATE TABLE t (x INT)")...)
	raws = append(raws, rowTxn(gtid("0-1-2"), ts, "1")...)
	raws = append(raws, multi...)
	raws = append(raws, gtidEvent(gtid("0-1-4"), 0, ts), rowsEvent(1, ts, "b"), queryEvent(1, ts, "ROLLBACK"))
	raws = append(raws, gtidEvent(gtid("0-1-5"), 0, ts), queryEvent(1, ts, "COMMIT /* not exactly */"), event(replication.XA_PREPARE_LOG_EVENT, 1, ts, 0, []byte("xa")))
	raws = append(raws, metaEvent(replication.ROTATE_EVENT, 1))
	evs := parseEvents(t, raws...)
	asm := assembler{crc: true}
	var got []*txn
	for _, ev := range evs[1:] {
		tx, err := asm.add(ev)
		if err != nil {
			t.Fatal(err)
		}
		if tx != nil {
			got = append(got, tx)
		}
	}
	want := []struct {
		gtid   string
		events int
	}{{"0-1-1", 2}, {"0-1-2", 5}, {"0-1-3", 3}, {"0-1-4", 3}, {"0-1-5", 3}}
	if len(got) != len(want) || asm.inTransaction() {
		t.Fatalf("%d transactions, want %d (in one: %v)", len(got), len(want), asm.inTransaction())
	}
	for i, w := range want {
		if got[i].gtid.String() != w.gtid || got[i].events != w.events {
			t.Errorf("transaction %d: %s with %d events, want %s with %d", i, got[i].gtid, got[i].events, w.gtid, w.events)
		}
	}
	if !got[2].time.Equal(commit) {
		t.Errorf("commit time %s, want the last event's %s", got[2].time, commit)
	}
	if len(got[2].raw) != len(multi[0])+len(multi[1])+len(multi[3]) {
		t.Error("the heartbeat inside the transaction was kept")
	}
}

func TestAssemblerRefusesBrokenGroups(t *testing.T) {
	ts := time.Now()
	for name, tc := range map[string]struct {
		events [][]byte
		err    string
	}{
		"no end before the next GTID": {[][]byte{gtidEvent(gtid("0-1-1"), 0, ts), rowsEvent(1, ts, "a"), gtidEvent(gtid("0-1-2"), 0, ts)}, "has no end"},
		"row event outside":           {[][]byte{rowsEvent(1, ts, "a")}, "outside a transaction"},
		"rotation inside":             {[][]byte{gtidEvent(gtid("0-1-1"), 0, ts), metaEvent(replication.ROTATE_EVENT, 1)}, "inside transaction"},
		"short GTID event":            {[][]byte{event(replication.MARIADB_GTID_EVENT, 1, ts, 0, []byte{1, 2})}, "too short"},
		"short query event":           {[][]byte{gtidEvent(gtid("0-1-1"), 0, ts), event(replication.QUERY_EVENT, 1, ts, 0, []byte{1, 2, 3, 4, 5, 6, 7, 8, 200, 0, 0, 0, 0})}, "shorter than"},
	} {
		evs := parseEvents(t, append([][]byte{fdeBytes(t)}, tc.events...)...)
		asm := assembler{crc: true}
		var err error
		for _, ev := range evs[1:] {
			if _, err = asm.add(ev); err != nil {
				break
			}
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.err)
		}
	}
}
