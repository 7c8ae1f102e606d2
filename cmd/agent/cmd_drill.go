package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/binlog"
	"github.com/hastack/hastack/internal/config"
	"github.com/hastack/hastack/internal/docker"
	"github.com/hastack/hastack/internal/mariadb"
	"github.com/hastack/hastack/internal/s3store"
)

const drillSynopsis = `drill [--config FILE] [--json] [--allow-unsigned ID | ID | latest | --at TIME | --random-point]

A restore drill: the backup (default: the newest complete one) is restored into a throw-away
MariaDB container (the primary's image, no network), every table's rows are compared with the
manifest, and the container is removed. It reads the backup once and does not touch the stack's
databases. Like a restore, it refuses a backup whose manifest is not signed with
backup.manifest_key_file's key (the scheduled drill always does).

With --at TIME, or --random-point (a second drawn at random from the recoverable window: from the
oldest complete backup whose GTID position the binlog archive replays from without a hole, to the
archive's last transaction), it is a point-in-time drill: the newest complete backup taken at or
before the point, as restore --at picks it, then the binlog archive's transactions committed up to
the point (every segment verified first). Every table is then compared with what the archive says
was committed by then: the backup's rows plus the rows written minus the rows deleted, and, for a
table of integer and string columns, a digest of its rows. Tables that DDL of the replay touches
are not compared, and the report lists them. agent run drills on backup.drill.schedule, at a random
point when the archive is not empty.`

func cmdDrill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("drill", drillSynopsis, stderr)
	configPath := fs.String("config", os.Getenv("HASTACK_AGENT_CONFIG"), "configuration file (env HASTACK_AGENT_CONFIG)")
	at := fs.String("at", "", `drill a point-in-time restore to this time (RFC 3339, or "2006-01-02 15:04:05" in backup.time_zone)`)
	random := fs.Bool("random-point", false, "drill a point-in-time restore to a second drawn at random from the recoverable window")
	identity := fs.String("identity", "", "age identity file for an encrypted backup (default: backup.age_identity_file)")
	manifestKey := fs.String("manifest-key", "", "key file that checks the manifest's signature (default: backup.manifest_key_file)")
	allowUnsigned := fs.Bool("allow-unsigned", false, "drill the backup named by ID although its manifest is not signed, or signed with a key not at hand (never one with a wrong signature)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 || fs.NArg() == 1 && (*at != "" || *random) || *at != "" && *random {
		return usagef("drill: give one backup or point: an ID, latest, --at TIME or --random-point")
	}
	req := drillRequest{choice: backupChoice{which: fs.Arg(0), keyFile: *manifestKey, allowUnsigned: *allowUnsigned}, identity: *identity,
		at: *at, random: *random}
	if err := req.choice.check(); err != nil {
		return err
	}
	if (req.at != "" || req.random) && req.choice.allowUnsigned {
		return usagef("--allow-unsigned needs the ID of the backup to trust, not --at or --random-point")
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	if req.at != "" {
		loc, err := backupLocation(cfg)
		if err != nil {
			return err
		}
		if _, err := parseTime(req.at, loc); err != nil {
			return usagef("--at %q: %v", req.at, err)
		}
	}
	engine, err := docker.New()
	if err != nil {
		return err
	}
	defer engine.Close()
	req.progress = newProgress(stderr).report
	rep, err := drill(ctx, cfg, engine, req)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, rep)
	}
	printDrill(stdout, rep)
	return nil
}

// doDrill is the scheduled drill: a point-in-time drill to a random point of the recoverable
// window when the binlog archive is not empty, else of the newest complete backup; only a backup
// whose signature checks with backup.manifest_key_file. The container is removed whatever happens.
func doDrill(ctx context.Context, cfg config.Config, engine *docker.Client, progress func(backup.RestoreProgress)) (backup.DrillReport, error) {
	return drill(ctx, cfg, engine, drillRequest{choice: backupChoice{which: "latest"}, random: true, orLatest: true, progress: progress})
}

// drillRequest is what one drill restores, and how.
type drillRequest struct {
	choice   backupChoice
	identity string // age identity file; "": backup.age_identity_file
	// at or random: a point-in-time drill (see drillSynopsis); orLatest: with random, drill
	// choice's backup alone when the archive is empty.
	at               string
	random, orLatest bool
	randN            func(int64) int64 // tests; nil: math/rand/v2
	progress         func(backup.RestoreProgress)
}

// drillPoint is the point a point-in-time drill restores to.
type drillPoint struct {
	at     time.Time
	chain  *binlog.Chain
	window *binlog.DrillWindow // when at was drawn from it
}

func drill(ctx context.Context, cfg config.Config, engine *docker.Client, req drillRequest) (backup.DrillReport, error) {
	store, err := openStore(ctx, cfg)
	if err != nil {
		return backup.DrillReport{}, err
	}
	var point *drillPoint
	if req.at != "" || req.random {
		if point, err = chooseDrillPoint(ctx, cfg, store, req); err != nil {
			return backup.DrillReport{}, err
		}
		if point != nil {
			req.choice.which, req.choice.at = "", point.at.UTC().Format(time.RFC3339)
		}
	}
	e, err := chooseAuthenticated(ctx, cfg, store, req.choice)
	if err != nil {
		return backup.DrillReport{}, err
	}
	m := *e.Manifest
	ids, err := loadIdentities(cfg, req.identity, m.Encrypted)
	if err != nil {
		return backup.DrillReport{}, err
	}
	var replay *binlog.ReplayOptions // point-in-time, with an archive: its segments, spooled
	var notes []string
	switch {
	case point == nil:
	case len(point.chain.Segments) == 0:
		notes = append(notes, "the binlog archive is empty: backup "+m.ID+" was drilled alone, not the database as it was at "+point.at.Local().Format(time.DateTime))
	default:
		from, err := binlog.ParsePosition(m.GTID)
		if err != nil {
			return backup.DrillReport{}, fmt.Errorf("backup %s: its GTID position %q: %w", m.ID, m.GTID, err)
		}
		// Every segment the replay needs is read from the store once, into the spool, before
		// anything starts; the drill's tally and its replay read them from there.
		spool, err := binlog.NewSpool(binlog.SpoolOptions{Progress: spoolProgress(req.progress)})
		if err != nil {
			return backup.DrillReport{}, fmt.Errorf("restore drill of %s: %w", m.ID, err)
		}
		defer func() {
			if err := spool.Close(); err != nil {
				slog.Warn("restore drill: the binlog spool was not removed", "err", err)
			}
		}()
		ro := binlog.ReplayOptions{From: from, Stop: binlog.Stop{Time: point.at}, Objects: store, Identities: ids}
		if _, err := spool.Fetch(ctx, point.chain, ro); err != nil {
			return backup.DrillReport{}, fmt.Errorf("restore drill of %s to %s UTC: %w", m.ID, point.at.UTC().Format(time.DateTime), err)
		}
		ro.Spool = spool
		replay = &ro
	}
	image, err := mariadbImage(ctx, cfg, engine)
	if err != nil {
		return backup.DrillReport{}, err
	}
	// Containers of a drill that a crash or kill interrupted.
	if old, err := engine.ScratchContainers(ctx, "drill"); err == nil {
		for _, name := range old {
			engine.RemoveScratch(ctx, name)
		}
	}
	name := fmt.Sprintf("hastack-drill-%s", strings.ToLower(m.ID))
	defer engine.RemoveScratch(context.WithoutCancel(ctx), name)
	s, err := mariadb.StartScratch(ctx, engine, image, name, "drill")
	if err != nil {
		return backup.DrillReport{}, fmt.Errorf("restore drill of %s: %w", m.ID, err)
	}
	o := backup.DrillOptions{Backup: m, Auth: e.Auth, AllowUnsigned: req.choice.allowUnsigned,
		Reader: store, Identities: ids, Scratch: s, Progress: req.progress}
	if replay != nil {
		o.Replay = binlog.DrillReplay(point.chain, *replay, point.at, s.ApplyBinlog)
		if w := point.window; w != nil {
			o.Replay.WindowFrom, o.Replay.WindowTo = w.From, w.To
		}
	}
	rep, err := backup.Drill(ctx, o)
	rep.Notes = append(rep.Notes, notes...)
	return rep, err
}

// chooseDrillPoint reads the binlog archive and says the point of a point-in-time drill: --at's
// time, or a second drawn at random from the recoverable window. It returns nil when req allows
// the newest backup alone and the archive is empty.
func chooseDrillPoint(ctx context.Context, cfg config.Config, store *s3store.Store, req drillRequest) (*drillPoint, error) {
	keys, err := loadManifestKeys(cfg, req.choice.keyFile)
	if err != nil {
		return nil, err
	}
	chain, err := binlog.List(ctx, archiveStore{store}, binlog.ListOptions{Keys: keys})
	if err != nil {
		return nil, fmt.Errorf("binlog archive: %w", err)
	}
	if !req.random {
		loc, err := backupLocation(cfg)
		if err != nil {
			return nil, err
		}
		at, err := parseTime(req.at, loc)
		if err != nil {
			return nil, usagef("--at %q: %v", req.at, err)
		}
		return &drillPoint{at: at, chain: chain}, nil
	}
	if len(chain.Segments) == 0 {
		if req.orLatest {
			return nil, nil
		}
		return nil, errors.New("--random-point needs the binlog archive, and it is empty (backup.archive.enabled; agent backups --archive)")
	}
	entries, err := backup.List(ctx, catalog{store})
	if err != nil {
		return nil, err
	}
	w, err := binlog.NewDrillWindow(entries, chain)
	if err != nil {
		return nil, fmt.Errorf("a point-in-time drill: %w", err)
	}
	n := req.randN
	if n == nil {
		n = rand.Int64N
	}
	return &drillPoint{at: w.Random(n), chain: chain, window: &w}, nil
}

// printDrill writes a passed drill's report for a person.
func printDrill(w io.Writer, rep backup.DrillReport) {
	p := rep.PointInTime
	if p == nil {
		fmt.Fprintf(w, "restore drill passed: backup %s (taken %s) restored into %s: %d tables, %d rows, as in its manifest (%s)\n",
			rep.Backup, rep.Taken.Local().Format(time.DateTime), rep.Scratch, rep.Tables, rep.Rows, rep.Took.Round(time.Millisecond))
		for _, n := range rep.Notes {
			fmt.Fprintln(w, "note: "+n)
		}
		return
	}
	window := ""
	if !p.WindowFrom.IsZero() {
		window = fmt.Sprintf(", a second drawn at random from the recoverable window %s .. %s", p.WindowFrom.Local().Format(time.DateTime), p.WindowTo.Local().Format(time.DateTime))
	}
	fmt.Fprintf(w, "restore drill passed: the database as it was at %s%s: backup %s (taken %s) restored into %s, then the binlog archive replayed (%s)\n",
		p.Point.Local().Format(time.DateTime), window, rep.Backup, rep.Taken.Local().Format(time.DateTime), rep.Scratch, rep.Took.Round(time.Millisecond))
	if p.Transactions == 0 {
		fmt.Fprintf(w, "replayed: no transaction after the backup's position %s up to the point\n", orDash(p.From))
	} else {
		fmt.Fprintf(w, "replayed: %d transactions after %s: %s .. %s, committed %s .. %s, from %d segments (verified), %s, stream SHA-256 %s\n",
			p.Transactions, orDash(p.From), p.FirstGTID, p.LastGTID, p.FirstTime.Local().Format(time.DateTime), p.LastTime.Local().Format(time.DateTime),
			p.Segments, humanBytes(p.Bytes), p.StreamSHA256)
	}
	if p.NotChecked != "" {
		fmt.Fprintf(w, "checked: the backup's %d tables as in its manifest; after the replay, no table: %s\n", len(p.Tables), p.NotChecked)
	} else {
		fmt.Fprintf(w, "checked against the archive: %d of the %d tables by their rows (%d rows after the replay), %d of them by a digest too\n",
			len(p.Tables), rep.Tables, rep.Rows, p.Digests)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  table\tbackup\t+written\t-deleted\tupdated\trows\tdigest")
		unchanged, unchangedRows := 0, int64(0)
		for _, t := range p.Tables {
			if t.Written == 0 && t.Deleted == 0 && t.Updated == 0 {
				unchanged++
				unchangedRows += t.Rows
				continue
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\t%s\n", t.Table, t.DumpRows, t.Written, t.Deleted, t.Updated, t.Rows, t.Digest)
		}
		tw.Flush()
		if unchanged > 0 {
			fmt.Fprintf(w, "  and %d other table(s) the replay does not change: %d rows, as in the backup\n", unchanged, unchangedRows)
		}
	}
	if len(p.Unknown) > 0 {
		fmt.Fprintln(w, "not checked (the archive does not say what their rows are):")
		for _, u := range p.Unknown {
			fmt.Fprintf(w, "  %s: %s\n", u.Table, u.Why)
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
}

// drillLogAttrs are a passed drill's attributes for a log line.
func drillLogAttrs(rep backup.DrillReport) []any {
	attrs := []any{"backup", rep.Backup, "tables", rep.Tables, "rows", rep.Rows, "took", rep.Took}
	if p := rep.PointInTime; p != nil {
		attrs = append(attrs, "point", p.Point, "transactions", p.Transactions, "last_gtid", p.LastGTID, "digests", p.Digests, "not_checked", len(p.Unknown))
	}
	return attrs
}
