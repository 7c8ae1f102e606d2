package backup

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin without the system's zoneinfo
)

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		p    Policy
		want string // "" for valid
	}{
		{Policy{KeepLast: 1}, ""},
		{Policy{Daily: 7}, ""},
		{Policy{Weekly: 4}, ""},
		{Policy{Monthly: 12}, ""},
		{Policy{KeepLast: 3, Daily: 7, Weekly: 4, Monthly: 12}, ""},
		{Policy{}, "retention: would keep nothing but the newest: set keep_last"},
		{Policy{KeepLast: -1, Daily: 7}, "retention: keep_last: must not be negative (got -1)"},
		{Policy{Daily: -2, Monthly: -1}, "retention: daily: must not be negative (got -2)\nretention: monthly: must not be negative (got -1)"},
		{Policy{Weekly: -1}, "retention: weekly: must not be negative (got -1)"},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%+v: Validate() = %v, want nil", tt.p, err)
			}
			continue
		}
		if err == nil || err.Error() != tt.want {
			t.Errorf("%+v: Validate() = %v, want %q", tt.p, err, tt.want)
		}
		var pe *PolicyError
		if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%+v: %v is not a *PolicyError matching ErrInvalidPolicy", tt.p, err)
		}
	}
}

// A backup in a retention test, named by a label the expectations refer to.
type tb struct {
	label    string
	t        time.Time
	complete bool
}

func TestApply(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	local := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	utc := func(s string) time.Time {
		tm, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	ok := func(s string) tb { return tb{s, local(s), true} }
	failed := func(s string) tb { return tb{s, local(s), false} }

	tests := []struct {
		name    string
		policy  Policy
		backups []tb
		now     time.Time
		keep    []string            // labels, newest first
		delete  []string            // labels, newest first
		reasons map[string][]string // by label
	}{
		{
			name:    "empty",
			policy:  Policy{KeepLast: 3, Daily: 7},
			now:     local("2026-11-24 12:00"),
			reasons: map[string][]string{},
		},
		{
			name:    "only incomplete: nothing to compare with, nothing deleted",
			policy:  Policy{KeepLast: 1},
			backups: []tb{failed("2026-11-24 03:00"), failed("2026-10-01 03:00")},
			now:     local("2026-11-24 12:00"),
			keep:    []string{"2026-11-24 03:00", "2026-10-01 03:00"},
			reasons: map[string][]string{
				"2026-11-24 03:00": {"incomplete: no complete backup yet"},
				"2026-10-01 03:00": {"incomplete: no complete backup yet"},
			},
		},
		{
			name:   "keep last only",
			policy: Policy{KeepLast: 3},
			backups: []tb{
				ok("2026-11-20 03:00"), ok("2026-11-24 03:00"), ok("2026-11-21 03:00"),
				ok("2026-11-23 03:00"), ok("2026-11-22 03:00"), ok("2026-11-24 15:00"),
			},
			now:    local("2026-11-24 16:00"),
			keep:   []string{"2026-11-24 15:00", "2026-11-24 03:00", "2026-11-23 03:00"},
			delete: []string{"2026-11-22 03:00", "2026-11-21 03:00", "2026-11-20 03:00"},
			reasons: map[string][]string{
				"2026-11-24 15:00": {"newest complete", "last 1"},
				"2026-11-24 03:00": {"last 2"},
				"2026-11-23 03:00": {"last 3"},
			},
		},
		{
			name:   "keep last counts only complete backups",
			policy: Policy{KeepLast: 2},
			backups: []tb{
				ok("2026-11-24 03:00"), failed("2026-11-23 03:00"), ok("2026-11-22 03:00"), ok("2026-11-21 03:00"),
			},
			now:    local("2026-11-24 12:00"),
			keep:   []string{"2026-11-24 03:00", "2026-11-22 03:00"},
			delete: []string{"2026-11-23 03:00", "2026-11-21 03:00"},
			reasons: map[string][]string{
				"2026-11-24 03:00": {"newest complete", "last 1"},
				"2026-11-22 03:00": {"last 2"},
			},
		},
		{
			// Days in Berlin, not UTC: 00:30 local is the previous day in UTC. 2026-03-29 has
			// 23 hours.
			name:   "daily across the spring DST change in Europe/Berlin",
			policy: Policy{Daily: 3},
			backups: []tb{
				ok("2026-03-27 23:30"),
				ok("2026-03-28 00:30"), ok("2026-03-28 23:30"),
				ok("2026-03-29 00:30"), ok("2026-03-29 03:30"), ok("2026-03-29 23:30"),
				ok("2026-03-30 00:30"), ok("2026-03-30 23:30"),
			},
			now:    local("2026-03-31 12:00"),
			keep:   []string{"2026-03-30 23:30", "2026-03-29 23:30", "2026-03-28 23:30"},
			delete: []string{"2026-03-30 00:30", "2026-03-29 03:30", "2026-03-29 00:30", "2026-03-28 00:30", "2026-03-27 23:30"},
			reasons: map[string][]string{
				"2026-03-30 23:30": {"newest complete", "daily 2026-03-30"},
				"2026-03-29 23:30": {"daily 2026-03-29"},
				"2026-03-28 23:30": {"daily 2026-03-28"},
			},
		},
		{
			// 2026-10-25 has 25 hours: 02:30 happens twice, at 00:30 and 01:30 UTC.
			name:   "daily across the autumn DST change in Europe/Berlin",
			policy: Policy{Daily: 3},
			backups: []tb{
				ok("2026-10-24 00:30"), ok("2026-10-24 23:30"),
				ok("2026-10-25 00:30"),
				{"2026-10-25 02:30 CEST", utc("2026-10-25 00:30"), true},
				{"2026-10-25 02:30 CET", utc("2026-10-25 01:30"), true},
				ok("2026-10-26 00:30"),
			},
			now:    local("2026-10-26 12:00"),
			keep:   []string{"2026-10-26 00:30", "2026-10-25 02:30 CET", "2026-10-24 23:30"},
			delete: []string{"2026-10-25 02:30 CEST", "2026-10-25 00:30", "2026-10-24 00:30"},
			reasons: map[string][]string{
				"2026-10-26 00:30":     {"newest complete", "daily 2026-10-26"},
				"2026-10-25 02:30 CET": {"daily 2026-10-25"},
				"2026-10-24 23:30":     {"daily 2026-10-24"},
			},
		},
		{
			// 2026 has 53 ISO weeks: 2026-12-28 to 2027-01-03 is 2026-W53.
			name:   "weekly across a year boundary into ISO week 53",
			policy: Policy{Weekly: 3},
			backups: []tb{
				ok("2026-12-21 12:00"), ok("2026-12-22 12:00"), // 2026-W52
				ok("2026-12-29 12:00"), ok("2027-01-02 12:00"), // 2026-W53
				ok("2027-01-05 12:00"), // 2027-W01
			},
			now:    local("2027-01-05 13:00"),
			keep:   []string{"2027-01-05 12:00", "2027-01-02 12:00", "2026-12-22 12:00"},
			delete: []string{"2026-12-29 12:00", "2026-12-21 12:00"},
			reasons: map[string][]string{
				"2027-01-05 12:00": {"newest complete", "weekly 2027-W01"},
				"2027-01-02 12:00": {"weekly 2026-W53"},
				"2026-12-22 12:00": {"weekly 2026-W52"},
			},
		},
		{
			// 2025-12-29 is in ISO week 1 of 2026; Monday 00:30 in Berlin is Sunday in UTC.
			name:   "weekly: ISO week 1 starts in December, weeks in Berlin",
			policy: Policy{Weekly: 3},
			backups: []tb{
				ok("2025-12-20 12:00"),                         // 2025-W51
				ok("2025-12-27 12:00"), ok("2025-12-28 23:30"), // 2025-W52
				ok("2025-12-29 00:30"), ok("2026-01-02 12:00"), // 2026-W01
			},
			now:    local("2026-01-02 13:00"),
			keep:   []string{"2026-01-02 12:00", "2025-12-28 23:30", "2025-12-20 12:00"},
			delete: []string{"2025-12-29 00:30", "2025-12-27 12:00"},
			reasons: map[string][]string{
				"2026-01-02 12:00": {"newest complete", "weekly 2026-W01"},
				"2025-12-28 23:30": {"weekly 2025-W52"},
				"2025-12-20 12:00": {"weekly 2025-W51"},
			},
		},
		{
			// 2026-03-01 00:30 in Berlin is still February in UTC.
			name:   "monthly",
			policy: Policy{Monthly: 2},
			backups: []tb{
				ok("2026-01-15 03:00"), ok("2026-01-31 03:00"),
				ok("2026-02-10 03:00"), ok("2026-02-28 23:30"),
				ok("2026-03-01 00:30"),
			},
			now:    local("2026-03-01 12:00"),
			keep:   []string{"2026-03-01 00:30", "2026-02-28 23:30"},
			delete: []string{"2026-02-10 03:00", "2026-01-31 03:00", "2026-01-15 03:00"},
			reasons: map[string][]string{
				"2026-03-01 00:30": {"newest complete", "monthly 2026-03"},
				"2026-02-28 23:30": {"monthly 2026-02"},
			},
		},
		{
			name:   "monthly counts months that have backups, not calendar months",
			policy: Policy{Monthly: 3},
			backups: []tb{
				ok("2025-06-01 03:00"), ok("2025-11-30 03:00"), ok("2026-04-02 03:00"), ok("2026-04-30 03:00"),
			},
			now:    local("2026-05-01 12:00"),
			keep:   []string{"2026-04-30 03:00", "2025-11-30 03:00", "2025-06-01 03:00"},
			delete: []string{"2026-04-02 03:00"},
			reasons: map[string][]string{
				"2026-04-30 03:00": {"newest complete", "monthly 2026-04"},
				"2025-11-30 03:00": {"monthly 2025-11"},
				"2025-06-01 03:00": {"monthly 2025-06"},
			},
		},
		{
			name:   "overlapping rules list every reason",
			policy: Policy{KeepLast: 2, Daily: 2, Weekly: 2, Monthly: 2},
			backups: []tb{
				ok("2026-11-24 03:00"), // Tue, W48
				ok("2026-11-23 03:00"), // Mon, W48
				ok("2026-11-22 03:00"), // Sun, W47
				ok("2026-11-16 03:00"), // Mon, W47
				ok("2026-10-31 03:00"), // Sat, W44
			},
			now:    local("2026-11-24 12:00"),
			keep:   []string{"2026-11-24 03:00", "2026-11-23 03:00", "2026-11-22 03:00", "2026-10-31 03:00"},
			delete: []string{"2026-11-16 03:00"},
			reasons: map[string][]string{
				"2026-11-24 03:00": {"newest complete", "last 1", "daily 2026-11-24", "weekly 2026-W48", "monthly 2026-11"},
				"2026-11-23 03:00": {"last 2", "daily 2026-11-23"},
				"2026-11-22 03:00": {"weekly 2026-W47"},
				"2026-10-31 03:00": {"monthly 2026-10"},
			},
		},
		{
			name:   "incomplete backups newer than the newest complete are kept, however old",
			policy: Policy{KeepLast: 1},
			backups: []tb{
				failed("2026-11-24 11:30"), // uploading
				failed("2026-11-21 03:00"), // failed, but the last complete one is older still
				ok("2026-11-20 03:00"),
				ok("2026-11-19 03:00"),
			},
			now:    local("2026-11-24 12:00"),
			keep:   []string{"2026-11-24 11:30", "2026-11-21 03:00", "2026-11-20 03:00"},
			delete: []string{"2026-11-19 03:00"},
			reasons: map[string][]string{
				"2026-11-24 11:30": {"incomplete: newer than the newest complete backup"},
				"2026-11-21 03:00": {"incomplete: newer than the newest complete backup"},
				"2026-11-20 03:00": {"newest complete", "last 1"},
			},
		},
		{
			name:   "old incomplete backups are deleted, those younger than 24h kept",
			policy: Policy{KeepLast: 5},
			backups: []tb{
				ok("2026-11-24 03:00"),
				failed("2026-11-23 12:00"), // exactly 24h old
				failed("2026-11-23 11:59"),
				failed("2026-11-22 03:00"),
				ok("2026-11-21 03:00"),
			},
			now:    local("2026-11-24 12:00"),
			keep:   []string{"2026-11-24 03:00", "2026-11-23 12:00", "2026-11-21 03:00"},
			delete: []string{"2026-11-23 11:59", "2026-11-22 03:00"},
			reasons: map[string][]string{
				"2026-11-24 03:00": {"newest complete", "last 1"},
				"2026-11-23 12:00": {"incomplete: younger than 24h"},
				"2026-11-21 03:00": {"last 2"},
			},
		},
		{
			name:    "a policy that keeps nothing still keeps the newest complete",
			policy:  Policy{},
			backups: []tb{failed("2026-11-24 11:00"), ok("2026-11-24 03:00"), ok("2026-11-23 03:00"), failed("2026-11-01 03:00")},
			now:     local("2026-11-24 12:00"),
			keep:    []string{"2026-11-24 11:00", "2026-11-24 03:00"},
			delete:  []string{"2026-11-23 03:00", "2026-11-01 03:00"},
			reasons: map[string][]string{
				"2026-11-24 11:00": {"incomplete: newer than the newest complete backup"},
				"2026-11-24 03:00": {"newest complete"},
			},
		},
		{
			name:    "an invalid policy is applied as if negative were zero",
			policy:  Policy{KeepLast: -3, Daily: -1, Weekly: -1, Monthly: -1},
			backups: []tb{ok("2026-11-24 03:00"), ok("2026-11-23 03:00")},
			now:     local("2026-11-24 12:00"),
			keep:    []string{"2026-11-24 03:00"},
			delete:  []string{"2026-11-23 03:00"},
			reasons: map[string][]string{"2026-11-24 03:00": {"newest complete"}},
		},
		{
			name:    "a clock behind the backups changes nothing",
			policy:  Policy{KeepLast: 1},
			backups: []tb{failed("2026-11-22 03:00"), ok("2026-11-23 03:00"), failed("2026-11-21 03:00")},
			now:     local("2026-11-20 12:00"),
			keep:    []string{"2026-11-23 03:00", "2026-11-22 03:00", "2026-11-21 03:00"},
			reasons: map[string][]string{
				"2026-11-23 03:00": {"newest complete", "last 1"},
				"2026-11-22 03:00": {"incomplete: younger than 24h"},
				"2026-11-21 03:00": {"incomplete: younger than 24h"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in []Backup
			labelOf := map[string]string{}
			for _, b := range tt.backups {
				id := NewID(b.t)
				if _, dup := labelOf[id]; dup {
					t.Fatalf("two backups with id %s", id)
				}
				labelOf[id] = b.label
				in = append(in, Backup{ID: id, Time: b.t, Complete: b.complete})
			}
			orig := slices.Clone(in)

			d := Apply(tt.policy, in, tt.now, berlin)

			if !slices.Equal(in, orig) {
				t.Errorf("Apply modified its input")
			}
			labels := func(bs []Backup) []string {
				out := []string{}
				for _, b := range bs {
					out = append(out, labelOf[b.ID])
				}
				return out
			}
			want := func(s []string) []string {
				if s == nil {
					return []string{}
				}
				return s
			}
			if got := labels(d.Keep); !slices.Equal(got, want(tt.keep)) {
				t.Errorf("keep\n  %q\nwant\n  %q", got, want(tt.keep))
			}
			if got := labels(d.Delete); !slices.Equal(got, want(tt.delete)) {
				t.Errorf("delete\n  %q\nwant\n  %q", got, want(tt.delete))
			}
			gotReasons := map[string][]string{}
			for id, r := range d.Reasons {
				gotReasons[labelOf[id]] = r
			}
			if !reflect.DeepEqual(gotReasons, tt.reasons) {
				t.Errorf("reasons\n  %q\nwant\n  %q", gotReasons, tt.reasons)
			}

			// The same backups in another order give the same decision.
			rev := slices.Clone(in)
			slices.Reverse(rev)
			if d2 := Apply(tt.policy, rev, tt.now, berlin); !reflect.DeepEqual(d, d2) {
				t.Errorf("decision depends on the input's order:\n%+v\n%+v", d, d2)
			}
		})
	}
}

func TestApplyNilLocationIsUTC(t *testing.T) {
	// 23:30 and 00:30 UTC: different days in UTC, the same day in Berlin (UTC+1).
	a := time.Date(2026, 11, 23, 23, 30, 0, 0, time.UTC)
	b := time.Date(2026, 11, 24, 0, 30, 0, 0, time.UTC)
	in := []Backup{{NewID(b), b, true}, {NewID(a), a, true}}
	if d := Apply(Policy{Daily: 2}, in, b, nil); len(d.Keep) != 2 {
		t.Errorf("nil location: kept %d, want 2 (one per UTC day)", len(d.Keep))
	}
	if d := Apply(Policy{Daily: 2}, in, b, time.FixedZone("CET", 3600)); len(d.Keep) != 1 {
		t.Errorf("UTC+1: kept %d, want 1 (one day)", len(d.Keep))
	}
}

// TestApplyInvariants checks, on random backups and policies, what must hold whatever the
// rules say.
func TestApplyInvariants(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(20261124, 4))
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	locs := []*time.Location{time.UTC, berlin, nil}

	for i := range 1000 {
		p := Policy{
			KeepLast: rng.IntN(7) - 1, // -1 to 5: invalid and empty policies too
			Daily:    rng.IntN(10) - 1,
			Weekly:   rng.IntN(7) - 1,
			Monthly:  rng.IntN(7) - 1,
		}
		loc := locs[rng.IntN(len(locs))]
		n := rng.IntN(60)
		if i%10 == 0 {
			n = 0
		}
		seen := map[string]bool{}
		var in []Backup
		for range n {
			// Up to 400 days back, a few in the future; mostly whole hours so that several
			// share a day.
			tm := now.Add(-time.Duration(rng.Int64N(400*24))*time.Hour + time.Duration(rng.IntN(48))*time.Hour)
			if rng.IntN(4) == 0 {
				tm = tm.Add(time.Duration(rng.IntN(3600)) * time.Second)
			}
			id := NewID(tm)
			if seen[id] {
				continue
			}
			seen[id] = true
			in = append(in, Backup{ID: id, Time: tm, Complete: rng.IntN(5) != 0})
		}

		d := Apply(p, in, now, loc)
		ctx := fmt.Sprintf("case %d (policy %+v, %d backups)", i, p, len(in))

		// Keep and Delete partition the input.
		if len(d.Keep)+len(d.Delete) != len(in) {
			t.Fatalf("%s: kept %d + deleted %d != %d", ctx, len(d.Keep), len(d.Delete), len(in))
		}
		where := map[string]string{}
		for _, b := range d.Keep {
			where[b.ID] = "keep"
		}
		for _, b := range d.Delete {
			if where[b.ID] != "" {
				t.Fatalf("%s: %s both kept and deleted", ctx, b.ID)
			}
			where[b.ID] = "delete"
		}
		for _, b := range in {
			if where[b.ID] == "" {
				t.Fatalf("%s: %s neither kept nor deleted", ctx, b.ID)
			}
		}

		// Newest first.
		for _, list := range [][]Backup{d.Keep, d.Delete} {
			if !slices.IsSortedFunc(list, func(a, b Backup) int { return b.Time.Compare(a.Time) }) {
				t.Fatalf("%s: not sorted newest first: %v", ctx, list)
			}
		}

		// Reasons exactly for kept backups.
		if len(d.Reasons) != len(d.Keep) {
			t.Fatalf("%s: %d reasons for %d kept", ctx, len(d.Reasons), len(d.Keep))
		}
		for _, b := range d.Keep {
			if len(d.Reasons[b.ID]) == 0 {
				t.Fatalf("%s: %s kept without a reason", ctx, b.ID)
			}
		}

		var newest *Backup
		completeKept, completeIn := 0, 0
		for _, b := range in {
			if b.Complete {
				completeIn++
				if newest == nil || b.Time.After(newest.Time) {
					newest = &b
				}
				if where[b.ID] == "keep" {
					completeKept++
				}
			}
		}
		// The newest complete backup is kept; never all complete backups deleted.
		if newest != nil && where[newest.ID] != "keep" {
			t.Fatalf("%s: newest complete %s deleted", ctx, newest.ID)
		}
		if completeIn > 0 && completeKept == 0 {
			t.Fatalf("%s: every complete backup deleted", ctx)
		}
		// No more complete backups kept than the rules allow.
		if limit := 1 + max(p.KeepLast, 0) + max(p.Daily, 0) + max(p.Weekly, 0) + max(p.Monthly, 0); completeKept > limit {
			t.Fatalf("%s: %d complete kept, more than %d", ctx, completeKept, limit)
		}
		// An incomplete backup is deleted only when older than the newest complete and than 24h.
		for _, b := range d.Delete {
			if !b.Complete && (newest == nil || !b.Time.Before(newest.Time) || now.Sub(b.Time) <= IncompleteGrace) {
				t.Fatalf("%s: incomplete %s deleted", ctx, b.ID)
			}
		}

		// Deterministic, whatever the input order.
		shuffled := slices.Clone(in)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if d2 := Apply(p, shuffled, now, loc); !reflect.DeepEqual(d, d2) {
			t.Fatalf("%s: decision depends on the input's order", ctx)
		}
	}
}

func TestApplyOrdersTiesByIDThenCompleteness(t *testing.T) {
	tm := time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)
	in := []Backup{
		{ID: "a", Time: tm, Complete: true},
		{ID: "b", Time: tm, Complete: false},
		{ID: "b", Time: tm, Complete: true},
		{ID: "c", Time: tm, Complete: true},
	}
	want := []Backup{in[3], in[2], in[1], in[0]}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10 {
		shuffled := slices.Clone(in)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		d := Apply(Policy{KeepLast: 10}, shuffled, tm, nil)
		if !slices.Equal(d.Keep, want) {
			t.Fatalf("keep = %v, want %v", d.Keep, want)
		}
	}
}
