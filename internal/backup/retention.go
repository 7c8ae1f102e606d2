package backup

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// IncompleteGrace is how long a backup without a manifest is left alone: it may still be
// uploading.
const IncompleteGrace = 24 * time.Hour

// Policy says which backups retention keeps, grandfather-father-son: the KeepLast newest, and
// the newest of each of the last Daily days, Weekly ISO weeks and Monthly months that have a
// backup. A rule set to 0 keeps nothing. Whatever the policy, the newest complete backup is
// kept.
type Policy struct {
	KeepLast int
	Daily    int
	Weekly   int
	Monthly  int
}

// ErrInvalidPolicy is matched (errors.Is) by every error Policy.Validate returns.
var ErrInvalidPolicy = errors.New("invalid retention policy")

// PolicyError is one problem with a retention policy. Field is the setting's name
// ("keep_last"), empty when the problem is the policy as a whole.
type PolicyError struct {
	Field   string
	Problem string
}

func (e *PolicyError) Error() string {
	if e.Field == "" {
		return "retention: " + e.Problem
	}
	return "retention: " + e.Field + ": " + e.Problem
}

// Unwrap makes errors.Is(err, ErrInvalidPolicy) true.
func (e *PolicyError) Unwrap() error { return ErrInvalidPolicy }

// Validate returns nil or every problem found, each a *PolicyError.
func (p Policy) Validate() error {
	var errs []error
	for _, f := range []struct {
		name  string
		value int
	}{{"keep_last", p.KeepLast}, {"daily", p.Daily}, {"weekly", p.Weekly}, {"monthly", p.Monthly}} {
		if f.value < 0 {
			errs = append(errs, &PolicyError{Field: f.name, Problem: fmt.Sprintf("must not be negative (got %d)", f.value)})
		}
	}
	if p.KeepLast <= 0 && p.Daily <= 0 && p.Weekly <= 0 && p.Monthly <= 0 && len(errs) == 0 {
		errs = append(errs, &PolicyError{Problem: "would keep nothing but the newest: set keep_last"})
	}
	return errors.Join(errs...)
}

// Backup is what retention knows of one backup.
type Backup struct {
	ID       string
	Time     time.Time
	Complete bool // it has a valid manifest
}

// Decision is the outcome of Apply. Keep and Delete are sorted newest first and are never nil;
// Reasons gives, for each kept ID, every rule that keeps it.
type Decision struct {
	Keep    []Backup
	Delete  []Backup
	Reasons map[string][]string
}

// Apply decides which backups p keeps at time now, with days, ISO weeks and months taken in loc
// (UTC if nil). IDs are expected to be unique. Apply does not need a valid policy: a negative
// count keeps nothing, as 0 does.
//
// Only complete backups count toward the rules, and the newest complete one is always kept, so
// a decision never deletes every complete backup. An incomplete backup (failed, or still
// uploading) is deleted only when it is older than the newest complete backup and older than
// IncompleteGrace. The reasons are, in this order: "newest complete", "last N" (N-th newest
// complete), "daily 2026-11-24", "weekly 2026-W48", "monthly 2026-11", and for an incomplete
// backup the reason it is spared. The result depends only on the arguments, not on the order
// of backups.
func Apply(p Policy, backups []Backup, now time.Time, loc *time.Location) Decision {
	if loc == nil {
		loc = time.UTC
	}
	sorted := slices.Clone(backups)
	slices.SortStableFunc(sorted, newestFirst)

	reasons := map[string][]string{}
	keep := func(b Backup, reason string) { reasons[b.ID] = append(reasons[b.ID], reason) }

	var complete []Backup
	for _, b := range sorted {
		if b.Complete {
			complete = append(complete, b)
		}
	}
	if len(complete) > 0 {
		keep(complete[0], "newest complete")
	}
	for i, b := range complete[:min(max(p.KeepLast, 0), len(complete))] {
		keep(b, fmt.Sprintf("last %d", i+1))
	}
	keepPerPeriod(complete, p.Daily, "daily", func(t time.Time) string {
		return t.In(loc).Format("2006-01-02")
	}, keep)
	keepPerPeriod(complete, p.Weekly, "weekly", func(t time.Time) string {
		year, week := t.In(loc).ISOWeek()
		return fmt.Sprintf("%04d-W%02d", year, week)
	}, keep)
	keepPerPeriod(complete, p.Monthly, "monthly", func(t time.Time) string {
		return t.In(loc).Format("2006-01")
	}, keep)

	for _, b := range sorted {
		if b.Complete {
			continue
		}
		switch {
		case len(complete) == 0:
			keep(b, "incomplete: no complete backup yet")
		case !b.Time.Before(complete[0].Time):
			keep(b, "incomplete: newer than the newest complete backup")
		case now.Sub(b.Time) <= IncompleteGrace:
			keep(b, "incomplete: younger than 24h")
		}
	}

	d := Decision{Keep: []Backup{}, Delete: []Backup{}, Reasons: reasons}
	for _, b := range sorted {
		if _, ok := reasons[b.ID]; ok {
			d.Keep = append(d.Keep, b)
		} else {
			d.Delete = append(d.Delete, b)
		}
	}
	return d
}

// keepPerPeriod keeps the newest backup of each of the n newest periods that have one.
// backups must be sorted newest first; a period's backups are then next to each other.
func keepPerPeriod(backups []Backup, n int, rule string, period func(time.Time) string, keep func(Backup, string)) {
	last, count := "", 0
	for _, b := range backups {
		if count >= n {
			return
		}
		if p := period(b.Time); p != last {
			last = p
			count++
			keep(b, rule+" "+p)
		}
	}
}

// newestFirst orders backups by time, newest first, then by ID and completeness so that the
// order never depends on the input's.
func newestFirst(a, b Backup) int {
	if c := b.Time.Compare(a.Time); c != 0 {
		return c
	}
	if c := strings.Compare(b.ID, a.ID); c != 0 {
		return c
	}
	return cmp.Compare(boolInt(b.Complete), boolInt(a.Complete))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
