package mariadb

import (
	"reflect"
	"testing"
)

func TestParseGTIDList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want GTIDList
		err  bool
	}{
		{"", nil, false},
		{"0-1-42", GTIDList{{0, 1, 42}}, false},
		{"0-1-42,\n1-2-7", GTIDList{{0, 1, 42}, {1, 2, 7}}, false},
		{" 0-1-18446744073709551615 ", GTIDList{{0, 1, 18446744073709551615}}, false},
		{"0-1", nil, true},
		{"0-1-x", nil, true},
		{"-1-2-3", nil, true},
		{"4294967296-1-1", nil, true},
	} {
		got, err := ParseGTIDList(tc.in)
		if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseGTIDList(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if s := (GTIDList{{0, 1, 42}, {1, 2, 7}}).String(); s != "0-1-42,1-2-7" {
		t.Errorf("String = %q", s)
	}
}

func must(t *testing.T, s string) GTIDList {
	t.Helper()
	l, err := ParseGTIDList(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestBehind(t *testing.T) {
	for _, tc := range []struct{ is, want, behind string }{
		{"0-1-10", "0-1-10", ""},
		{"0-1-11", "0-1-10", ""},
		{"0-2-11", "0-1-10", ""}, // a later sequence number from another server includes it
		{"0-1-9", "0-1-10", "0-1-10"},
		{"", "0-1-10", "0-1-10"},
		{"0-1-10", "0-1-10,1-1-3", "1-1-3"},
		{"0-1-10", "", ""},
	} {
		if got := must(t, tc.is).Behind(must(t, tc.want)).String(); got != tc.behind {
			t.Errorf("%q.Behind(%q) = %q, want %q", tc.is, tc.want, got, tc.behind)
		}
	}
}

func TestNotIn(t *testing.T) {
	for _, tc := range []struct{ pos, state, out string }{
		// the old primary (server 1) stopped at 100, all of which the new primary received
		{"0-1-100", "0-1-100,0-2-105", ""},
		// it is only behind: the new primary has more of server 1's transactions
		{"0-1-90", "0-1-100,0-2-105", ""},
		// it committed 101, which never reached the new primary: diverged
		{"0-1-101", "0-1-100,0-2-105", "0-1-101"},
		// a history the primary never had at all
		{"0-3-5", "0-1-100", "0-3-5"},
		{"", "0-1-100", ""},
		{"0-1-1,1-1-4", "0-1-1", "1-1-4"},
	} {
		if got := must(t, tc.pos).NotIn(must(t, tc.state)).String(); got != tc.out {
			t.Errorf("%q.NotIn(%q) = %q, want %q", tc.pos, tc.state, got, tc.out)
		}
	}
}

func TestParseSlaveStatus(t *testing.T) {
	r, err := parseSlaveStatus(map[string]string{
		"Master_Host": "10.0.0.21", "Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes",
		"Gtid_IO_Pos": "0-1-42", "Seconds_Behind_Master": "0", "Last_IO_Errno": "0",
	})
	if err != nil || !r.Replicating("10.0.0.21") || r.Replicating("10.0.0.22") || r.LagSeconds != 0 || r.IOPos.String() != "0-1-42" {
		t.Fatalf("parseSlaveStatus = %+v, %v", r, err)
	}
	r, err = parseSlaveStatus(map[string]string{
		"Master_Host": "10.0.0.21", "Slave_IO_Running": "No", "Slave_SQL_Running": "Yes",
		"Gtid_IO_Pos": "", "Seconds_Behind_Master": "NULL", "Last_IO_Errno": "1236",
		"Last_IO_Error": "Got fatal error 1236 from master",
	})
	if err != nil || r.Replicating("10.0.0.21") || r.LagSeconds != -1 || r.LastIOErrno != 1236 {
		t.Fatalf("parseSlaveStatus = %+v, %v", r, err)
	}
	if _, err := parseSlaveStatus(map[string]string{"Gtid_IO_Pos": "x"}); err == nil {
		t.Fatal("a bad Gtid_IO_Pos parsed")
	}
	if _, err := parseSlaveStatus(map[string]string{"Seconds_Behind_Master": "soon"}); err == nil {
		t.Fatal("a bad Seconds_Behind_Master parsed")
	}
}

func TestQuote(t *testing.T) {
	if got := quote(`a'b\c`); got != `'a\'b\\c'` {
		t.Fatalf("quote = %s", got)
	}
}
