package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/binlog"
	"github.com/hastack/hastack/internal/config"
	"github.com/hastack/hastack/internal/s3store"
)

func cmdBackups(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("backups", `backups [--config FILE] [--json] [--archive]

Lists the backups in the store, newest first, with what checking each manifest's signature
found; then the binlog archive (point-in-time recovery): the span it covers and any hole in it.`, stderr)
	configPath := fs.String("config", os.Getenv("HASTACK_AGENT_CONFIG"), "configuration file (env HASTACK_AGENT_CONFIG)")
	asJSON := fs.Bool("json", false, "print the list as JSON (with each manifest)")
	archiveOnly := fs.Bool("archive", false, "print only the binlog archive's span and holes (with --json: an object)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	store, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	keys, err := loadManifestKeys(cfg, "")
	if err != nil {
		return err
	}
	if *archiveOnly {
		span, err := archiveSpan(ctx, store, keys)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, span)
		}
		printArchive(stdout, span)
		return nil
	}
	entries, err := backup.List(ctx, catalog{store})
	if err != nil {
		return err
	}
	// One small read per complete backup: whether restore would accept it shows here first.
	for i := range entries {
		if entries[i].Complete {
			if err := backup.Authenticate(ctx, catalog{store}, keys, &entries[i]); err != nil {
				return err
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tSOURCE\tGTID\tSIZE\tSIGNATURE\tSTATE")
	for _, e := range entries {
		source, gtid, state := "-", "-", "complete"
		if e.Manifest != nil {
			source, gtid = e.Manifest.Source.Container, e.Manifest.GTID
		}
		if !e.Complete {
			state = "INCOMPLETE: " + e.Problem
		} else if e.Manifest.Restorable() != nil {
			state = "complete, not restorable: version 1 manifest with ambiguous table names"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.Local().Format("2006-01-02 15:04:05"), source, gtid, humanBytes(e.Bytes), signatureState(e), state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	span, err := archiveSpan(ctx, store, keys)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	printArchive(stdout, span)
	return nil
}

// archiveSpanReport is what `agent backups` says of the binlog archive.
type archiveSpanReport struct {
	Segments int           `json:"segments"`
	Bytes    int64         `json:"bytes"`
	From     string        `json:"from_gtid"` // the position it starts after
	To       string        `json:"to_gtid"`   // the position after its last transaction
	FromTime time.Time     `json:"from_time,omitzero"`
	ToTime   time.Time     `json:"to_time,omitzero"`
	Holes    []binlog.Hole `json:"holes"`
	Rejected int           `json:"rejected"` // segments not used: invalid, or their signature refused
}

// archiveSpan reads the binlog archive's chain.
func archiveSpan(ctx context.Context, store *s3store.Store, keys *backup.ManifestKeys) (archiveSpanReport, error) {
	chain, err := binlog.List(ctx, archiveStore{store}, binlog.ListOptions{Keys: keys, AllowUnsigned: keys == nil})
	if err != nil {
		return archiveSpanReport{}, fmt.Errorf("binlog archive: %w", err)
	}
	r := chain.Range()
	rep := archiveSpanReport{Segments: len(chain.Segments), From: r.From.String(), To: r.To.String(),
		FromTime: r.FromTime, ToTime: r.ToTime, Holes: r.Holes, Rejected: len(chain.Rejected)}
	if rep.Holes == nil {
		rep.Holes = []binlog.Hole{}
	}
	for _, s := range chain.Segments {
		rep.Bytes += s.Bytes
	}
	return rep, nil
}

func printArchive(w io.Writer, a archiveSpanReport) {
	fmt.Fprintln(w, "BINLOG ARCHIVE (point-in-time recovery: agent restore --at; docs/backup.md)")
	if a.Segments == 0 {
		fmt.Fprintln(w, "  empty (backup.archive.enabled starts it)")
		return
	}
	when := func(t time.Time) string {
		if t.IsZero() {
			return "?"
		}
		return t.Local().Format("2006-01-02 15:04:05")
	}
	fmt.Fprintf(w, "  transactions committed %s .. %s (GTID %s .. %s), %d segments, %s\n",
		when(a.FromTime), when(a.ToTime), orDash(a.From), orDash(a.To), a.Segments, humanBytes(a.Bytes))
	for _, h := range a.Holes {
		fmt.Fprintf(w, "  HOLE after %s (%s) until %s (%s): no point in between can be restored; a backup taken after it starts a new span\n",
			orDash(h.From.String()), when(h.FromTime), orDash(h.To.String()), when(h.ToTime))
	}
	if a.Rejected > 0 {
		fmt.Fprintf(w, "  %d segments not used (invalid, or their signature refused)\n", a.Rejected)
	}
}

// signatureState says in a word or two what checking a backup's manifest signature found.
func signatureState(e backup.Entry) string {
	if !e.Complete {
		return "-"
	}
	switch e.Auth.Status {
	case backup.AuthVerified:
		return "verified"
	case backup.AuthBad:
		return "WRONG"
	case backup.AuthNoKey:
		return "signed, no key"
	case backup.AuthUnknownKey:
		return "signed, other key " + e.Auth.KeyID
	}
	return "unsigned"
}

// catalog lists and reads a backup store for backup.List.
type catalog struct{ s *s3store.Store }

// List lists the dumps' objects: not the binlog archive's, which sort after them.
func (c catalog) List(ctx context.Context) ([]backup.Object, error) {
	return listObjects(ctx, c.s, "", backup.KeysBefore)
}

// listObjects lists the store's objects under prefix, before the key before ("" for all), as
// the backup packages see them.
func listObjects(ctx context.Context, s *s3store.Store, prefix, before string) ([]backup.Object, error) {
	objs, err := s.ListBefore(ctx, prefix, before)
	if err != nil {
		return nil, err
	}
	out := make([]backup.Object, len(objs))
	for i, o := range objs {
		out[i] = backup.Object{Key: o.Key, Size: o.Size}
	}
	return out, nil
}

func (c catalog) Get(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	rc, n, err := c.s.Get(ctx, key)
	if errors.Is(err, s3store.ErrNotFound) {
		return nil, 0, fmt.Errorf("%w: %w", backup.ErrNotFound, err)
	}
	return rc, n, err
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
