package binlog

import (
	"fmt"
	"math"
	"slices"

	"github.com/hastack/hastack/internal/mariadb"
)

// Position is a point in a server's history: the last GTID of each replication domain, as
// @@gtid_binlog_pos gives it ("0-1-42,1-2-7"), sorted by domain. The empty position is the
// start of the history (a server that has never logged a transaction).
type Position []mariadb.GTID

// ParsePosition parses a GTID position; it allows at most one GTID per domain.
func ParsePosition(s string) (Position, error) {
	l, err := mariadb.ParseGTIDList(s)
	if err != nil {
		return nil, fmt.Errorf("GTID position %q: %w", s, err)
	}
	p := Position(l)
	slices.SortFunc(p, func(a, b mariadb.GTID) int { return cmpUint(a.Domain, b.Domain) })
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("GTID position %q: %w", s, err)
	}
	return p, nil
}

// ParseGTID parses one GTID, domain-server-sequence.
func ParseGTID(s string) (mariadb.GTID, error) {
	l, err := mariadb.ParseGTIDList(s)
	if err != nil {
		return mariadb.GTID{}, err
	}
	if len(l) != 1 {
		return mariadb.GTID{}, fmt.Errorf("%q is not one GTID (domain-server-sequence)", s)
	}
	return l[0], nil
}

// check says whether p is canonical: sorted by domain, one GTID per domain, and its Ordinal
// does not overflow.
func (p Position) check() error {
	for i := 1; i < len(p); i++ {
		if p[i].Domain <= p[i-1].Domain {
			return fmt.Errorf("domain %d appears twice or out of order", p[i].Domain)
		}
	}
	if _, ok := p.ordinal(); !ok {
		return fmt.Errorf("sequence numbers too large")
	}
	return nil
}

func (p Position) String() string { return mariadb.GTIDList(p).String() }

// MarshalText encodes p as a GTID list; the empty position is "".
func (p Position) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses a GTID list.
func (p *Position) UnmarshalText(b []byte) error {
	q, err := ParsePosition(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// Equal says whether p and q are the same position (the same GTID in every domain).
func (p Position) Equal(q Position) bool { return slices.Equal(p, q) }

// Seq returns the GTID of domain in p, if p has that domain.
func (p Position) Seq(domain uint32) (mariadb.GTID, bool) {
	for _, g := range p {
		if g.Domain == domain {
			return g, true
		}
	}
	return mariadb.GTID{}, false
}

// seqOf is the sequence number of domain in p, 0 when p lacks it.
func (p Position) seqOf(domain uint32) uint64 {
	g, _ := p.Seq(domain)
	return g.Seq
}

// Ordinal is the sum of p's sequence numbers. Along one history (gtid_strict_mode: every
// transaction raises its domain's sequence number) it grows with every transaction, so it orders
// positions, segment keys among them, whatever the number of domains; with one domain it is
// simply that domain's sequence number.
func (p Position) Ordinal() uint64 {
	n, _ := p.ordinal()
	return n
}

func (p Position) ordinal() (uint64, bool) {
	var n uint64
	for _, g := range p {
		if g.Seq > math.MaxUint64-n {
			return 0, false
		}
		n += g.Seq
	}
	return n, true
}

// After returns the position after transaction g, which must come after p in g's domain
// (gtid_strict_mode: sequence numbers grow within a domain).
func (p Position) After(g mariadb.GTID) (Position, error) {
	if g.Seq <= p.seqOf(g.Domain) {
		cur, _ := p.Seq(g.Domain)
		return nil, fmt.Errorf("transaction %s does not come after %s: the server's binary log is not in GTID order (is gtid_strict_mode ON?)", g, cur)
	}
	q := slices.Clone(p)
	i, found := slices.BinarySearchFunc(q, g.Domain, func(x mariadb.GTID, d uint32) int { return cmpUint(x.Domain, d) })
	if found {
		q[i] = g
	} else {
		q = slices.Insert(q, i, g)
	}
	if _, ok := q.ordinal(); !ok {
		return nil, fmt.Errorf("transaction %s: sequence numbers too large", g)
	}
	return q, nil
}

// Includes says whether transaction g is at or before p: p has g's domain at g's sequence
// number or later.
func (p Position) Includes(g mariadb.GTID) bool {
	h, ok := p.Seq(g.Domain)
	return ok && h.Seq >= g.Seq
}

// Within says whether p lies between a and b (inclusive) in every domain: a ≤ p ≤ b by
// sequence number, and p has no domain that b lacks.
func (p Position) Within(a, b Position) bool {
	for _, g := range p {
		if _, ok := b.Seq(g.Domain); !ok {
			return false
		}
	}
	for _, g := range b {
		s := p.seqOf(g.Domain)
		if s < a.seqOf(g.Domain) || s > g.Seq {
			return false
		}
	}
	return true
}

// Behind returns the GTIDs of want that p does not reach (a domain p lacks, or has at a lower
// sequence number).
func (p Position) Behind(want Position) Position {
	return Position(mariadb.GTIDList(p).Behind(mariadb.GTIDList(want)))
}

func cmpUint[T uint32 | uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
