package binlog

import (
	"time"

	"github.com/hastack/hastack/internal/mariadb"
)

// Stats is a snapshot of an archiver, for the agent's metrics (the archiver registers none).
type Stats struct {
	Server    string // address of the server followed, or last followed
	Connected bool   // a replication connection is streaming
	// End is the archive's end: the position after its last transaction (as the archiver
	// knows it; nil before it read the archive).
	End Position
	// LastGTID is the last archived transaction (zero: none yet), LastTime its commit time.
	LastGTID mariadb.GTID
	LastTime time.Time
	// LastStored is when the last segment was stored; LastLag how long after the commit of its
	// oldest transaction (commit times are whole seconds: up to a second more than the truth).
	LastStored time.Time
	LastLag    time.Duration
	// Pending is the transactions received and not yet stored; OldestPending the commit time of
	// the oldest of them.
	Pending       int64
	OldestPending time.Time
	// LastReceived is when the server last sent anything (events or heartbeats).
	LastReceived time.Time
	// Totals since the archiver started.
	Segments, Transactions, RawBytes, StoredBytes int64
	Errors, Gaps, Divergences                     int64
}

// AtRisk is how much committed history the archive may be missing at now: the age of the
// oldest transaction received but not stored; when connected with nothing pending, the time
// since the server last spoke (a heartbeat a second ago says it had nothing more to send); when
// not connected, the time since the last segment's transactions were committed.
func (s Stats) AtRisk(now time.Time) time.Duration {
	switch {
	case s.Pending > 0:
		return max(0, now.Sub(s.OldestPending))
	case s.Connected && !s.LastReceived.IsZero():
		return max(0, now.Sub(s.LastReceived))
	case !s.LastTime.IsZero():
		return max(0, now.Sub(s.LastTime))
	}
	return 0
}

// ProblemKind is the kind of an archiver's Problem.
type ProblemKind string

// Problems the archiver reports; each deserves an alert.
const (
	// ProblemGap: the server no longer has transactions the archive lacks (binary logs purged
	// before they were archived); the archive continues after a hole, recorded at once.
	ProblemGap ProblemKind = "gap"
	// ProblemDivergence: the archive held transactions the server does not have (the old
	// primary's last ones, lost in a failover); the archive was stepped back and they are
	// superseded.
	ProblemDivergence ProblemKind = "divergence"
	// ProblemBehind: the server is behind the archive's end (another database, or one restored
	// to an earlier point without Rebase); nothing is archived until that is resolved.
	ProblemBehind ProblemKind = "behind"
	// ProblemUnresolvedDivergence: the server does not have the archive's end in its history,
	// and stepping back found no segment start it can send from (the histories part further
	// back, or the server's binary logs from there are purged); nothing is archived until a
	// person resolves it (see the problem's message).
	ProblemUnresolvedDivergence ProblemKind = "unresolved-divergence"
)

// Problem is something the archiver met that a person must know about.
type Problem struct {
	Kind   ProblemKind
	Server string
	// From is the archive's end when it happened; To where the archiver continues (Gap), or
	// the position it stepped back to (Divergence), or the server's position (Behind,
	// UnresolvedDivergence).
	From, To Position
	// Superseded are the keys of the segments a divergence superseded.
	Superseded []string
	Message    string
	Time       time.Time
}
