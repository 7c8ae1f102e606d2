// Package mariadb administers the replication of the stack's MariaDB servers over the MySQL
// protocol: their state (read-only, GTID positions, semi-synchronous replication, the replica's
// threads), and the actions of a failover (promote a replica, make a server replicate from
// another, fence a server read-only). It parses MariaDB's GTID lists; the decisions are the
// failover package's. ContainerServer reaches a server through its container's own client
// instead (backups and restores stream SQL through docker exec), and StartScratch starts a
// throw-away server for restores and drills.
package mariadb

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// GTID is one MariaDB global transaction id, domain-server-sequence.
type GTID struct {
	Domain, Server uint32
	Seq            uint64
}

func (g GTID) String() string { return fmt.Sprintf("%d-%d-%d", g.Domain, g.Server, g.Seq) }

// GTIDList is a comma-separated list of GTIDs as MariaDB prints @@gtid_binlog_pos (one per
// domain), @@gtid_binlog_state (one per domain and server) or a replica's Gtid_IO_Pos.
type GTIDList []GTID

// ParseGTIDList parses "0-1-42,1-2-7"; "" is the empty list. Whitespace and newlines between
// entries (SHOW SLAVE STATUS wraps long lists) are allowed.
func ParseGTIDList(s string) (GTIDList, error) {
	var l GTIDList
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		f := strings.Split(part, "-")
		if len(f) != 3 {
			return nil, fmt.Errorf("GTID %q: want domain-server-sequence", part)
		}
		d, err1 := strconv.ParseUint(f[0], 10, 32)
		sv, err2 := strconv.ParseUint(f[1], 10, 32)
		seq, err3 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("GTID %q: want three unsigned numbers", part)
		}
		l = append(l, GTID{uint32(d), uint32(sv), seq})
	}
	return l, nil
}

func (l GTIDList) String() string {
	s := make([]string, len(l))
	for i, g := range l {
		s[i] = g.String()
	}
	return strings.Join(s, ",")
}

// seqOf returns the highest sequence number l holds for domain, and whether it holds any.
func (l GTIDList) seqOf(domain uint32) (uint64, bool) {
	var max uint64
	found := false
	for _, g := range l {
		if g.Domain == domain && (!found || g.Seq > max) {
			max, found = g.Seq, true
		}
	}
	return max, found
}

// Behind returns the GTIDs of want (a position, e.g. the primary's @@gtid_binlog_pos) that have
// is does not reach: a domain it lacks or has at a lower sequence number. Sequence numbers grow
// within a domain on every server (gtid_strict_mode), so a higher one includes the lower.
func (is GTIDList) Behind(want GTIDList) GTIDList {
	var missing GTIDList
	for _, g := range want {
		if seq, ok := is.seqOf(g.Domain); !ok || seq < g.Seq {
			missing = append(missing, g)
		}
	}
	return missing
}

// NotIn returns the GTIDs of pos (a server's last transactions, e.g. its @@gtid_current_pos)
// that are not in the history whose @@gtid_binlog_state is state: the server's history has
// diverged from it when any is returned. A GTID is in that history when state holds the same
// domain and server at that sequence number or later (strict mode: sequence numbers grow, and
// a server's own transactions are logged in order).
func (pos GTIDList) NotIn(state GTIDList) GTIDList {
	var out GTIDList
	for _, g := range pos {
		if !slices.ContainsFunc(state, func(s GTID) bool {
			return s.Domain == g.Domain && s.Server == g.Server && s.Seq >= g.Seq
		}) {
			out = append(out, g)
		}
	}
	return out
}
