package binlog

import (
	"strings"
	"testing"
)

func TestParsePosition(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "", want: ""},
		{in: "0-1-42", want: "0-1-42"},
		{in: "1-2-7, 0-1-42", want: "0-1-42,1-2-7"},
		{in: "0-1-42,0-2-43", err: "domain 0 appears twice"},
		{in: "0-1", err: "domain-server-sequence"},
		{in: "0-1-18446744073709551615,1-1-1", err: "too large"},
	} {
		p, err := ParsePosition(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePosition(%q) = %v, %v; want error with %q", tc.in, p, err, tc.err)
			}
			continue
		}
		if err != nil || p.String() != tc.want {
			t.Errorf("ParsePosition(%q) = %q, %v; want %q", tc.in, p, err, tc.want)
		}
	}
}

func TestPositionAfter(t *testing.T) {
	p := pos("0-1-5")
	q, err := p.After(gtid("1-2-1"))
	if err != nil || q.String() != "0-1-5,1-2-1" || p.String() != "0-1-5" {
		t.Fatalf("After a new domain: %q, %v (p now %q)", q, err, p)
	}
	if q, err = q.After(gtid("0-2-9")); err != nil || q.String() != "0-2-9,1-2-1" || q.Ordinal() != 10 {
		t.Fatalf("After a later GTID from another server: %q, %v", q, err)
	}
	if _, err := q.After(gtid("0-1-9")); err == nil || !strings.Contains(err.Error(), "gtid_strict_mode") {
		t.Fatalf("After a GTID that is not later: %v", err)
	}
}

func TestPositionWithinIncludes(t *testing.T) {
	for _, tc := range []struct {
		p, a, b string
		want    bool
	}{
		{"0-1-5", "0-1-3", "0-1-9", true},
		{"0-1-3", "0-1-3", "0-1-9", true},
		{"0-1-9", "0-1-3", "0-1-9", true},
		{"0-1-2", "0-1-3", "0-1-9", false},
		{"0-1-10", "0-1-3", "0-1-9", false},
		{"0-1-5,1-1-1", "0-1-3", "0-1-9", false}, // a domain b lacks
		{"", "", "0-1-9", true},
		{"0-1-5", "0-1-3,1-1-4", "0-1-9,1-1-6", false}, // below a in domain 1
	} {
		if got := pos(tc.p).Within(pos(tc.a), pos(tc.b)); got != tc.want {
			t.Errorf("%q within %q..%q = %v, want %v", tc.p, tc.a, tc.b, got, tc.want)
		}
	}
	if !pos("0-1-5").Includes(gtid("0-2-5")) || pos("0-1-5").Includes(gtid("0-1-6")) || pos("0-1-5").Includes(gtid("1-1-1")) {
		t.Error("Includes compares the domain's sequence number")
	}
}
