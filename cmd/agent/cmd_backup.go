package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"filippo.io/age"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/binlog"
	"github.com/hastack/hastack/internal/config"
	"github.com/hastack/hastack/internal/docker"
	"github.com/hastack/hastack/internal/s3store"
)

// version is the agent's version, set at build time (-ldflags "-X main.version=...").
var version = "dev"

func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("backup", "backup [--config FILE] [--json]", stderr)
	configPath := fs.String("config", os.Getenv("HASTACK_AGENT_CONFIG"), "configuration file (env HASTACK_AGENT_CONFIG)")
	asJSON := fs.Bool("json", false, "print the manifest as JSON")
	noPrune := fs.Bool("no-prune", false, "do not apply backup.retention after the backup")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	engine, err := docker.New()
	if err != nil {
		return err
	}
	defer engine.Close()
	m, pruned, err := doBackup(ctx, cfg, engine, !*noPrune, "")
	if err != nil {
		return err
	}
	signer := ""
	if keys, err := loadManifestKeys(cfg, ""); err == nil {
		signer = keys.SigningKeyID()
	}
	s3 := cfg.Backup.S3
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "backup\t%s\n", m.ID)
	fmt.Fprintf(tw, "source\t%s (%s, %s)\n", m.Source.Container, m.Source.Role, m.Source.ServerVersion)
	fmt.Fprintf(tw, "gtid\t%s\n", m.GTID)
	fmt.Fprintf(tw, "object\t%s%s (%d bytes, %d uncompressed, sha256 %s)\n", s3.Prefix, m.DumpKey, m.StoredBytes, m.RawBytes, m.SHA256)
	if signer != "" {
		fmt.Fprintf(tw, "signed\t%s%s (key id %s, backup.manifest_key_file)\n", s3.Prefix, backup.SignatureKey(m.ID), signer)
	} else {
		fmt.Fprintf(tw, "signed\tNO: set backup.manifest_key_file, or restores and drills of this backup need --allow-unsigned\n")
	}
	fmt.Fprintf(tw, "took\t%s\n", m.Finished.Sub(m.Started).Round(1e6))
	if len(pruned.Backups) > 0 {
		fmt.Fprintf(tw, "pruned\t%s (backup.retention)\n", strings.Join(pruned.Backups, ", "))
	}
	if pruned.Segments > 0 {
		fmt.Fprintf(tw, "pruned archive\t%d binlog segments, %s (binlog retention: docs/backup.md)\n", pruned.Segments, humanBytes(pruned.SegmentBytes))
	}
	tw.Flush()
	names := slices.Collect(maps.Keys(m.UserTables()))
	slices.SortFunc(names, backup.TableName.Compare)
	for _, t := range names {
		fmt.Fprintf(stdout, "  %s: %d rows\n", t, m.Tables[t].Rows)
	}
	return nil
}

// loadManifestKeys reads the manifest keys from file, else from backup.manifest_key_file; it
// returns nil (no keys) when neither is set.
func loadManifestKeys(cfg config.Config, file string) (*backup.ManifestKeys, error) {
	field := "--manifest-key"
	if file == "" {
		file, field = cfg.Backup.ManifestKeyFile, "backup.manifest_key_file"
	}
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: read the manifest key: %w", field, err)
	}
	keys, err := backup.ParseManifestKeys(b)
	if err != nil {
		return nil, &config.FieldError{Field: field, Problem: fmt.Sprintf("%s: %v", file, err)}
	}
	return keys, nil
}

// parseRecipients parses backup.age_recipients: what dumps and archive segments are encrypted to.
func parseRecipients(keys []string) ([]age.Recipient, error) {
	var recipients []age.Recipient
	for _, r := range keys {
		rec, err := age.ParseX25519Recipient(r)
		if err != nil {
			return nil, &config.FieldError{Field: "backup.age_recipients", Problem: err.Error()}
		}
		recipients = append(recipients, rec)
	}
	return recipients, nil
}

// pruneReport is what applying the retention policies after a backup deleted.
type pruneReport struct {
	Backups      []string // ids of the backups deleted (backup.retention)
	Segments     int      // binlog archive segments deleted (binlog.Retention)
	SegmentBytes int64    // their size
}

// LogValue logs it as a group: backups, binlog_segments, binlog_bytes.
func (p pruneReport) LogValue() slog.Value {
	return slog.GroupValue(slog.Any("backups", p.Backups), slog.Int("binlog_segments", p.Segments), slog.Int64("binlog_bytes", p.SegmentBytes))
}

// doBackup takes one backup as configured and, when prune is set, applies the retention
// policy to the backups, then the binlog archive's retention (pruneArchive). It returns the
// manifest and what was pruned.
func doBackup(ctx context.Context, cfg config.Config, engine *docker.Client, prune bool, note string) (backup.Manifest, pruneReport, error) {
	cfg = followRoles(ctx, cfg, engine)
	recipients, err := parseRecipients(cfg.Backup.AgeRecipients)
	if err != nil {
		return backup.Manifest{}, pruneReport{}, err
	}
	// A configured key that cannot be read fails the backup: an unsigned backup would be
	// refused by the restore that needs it.
	keys, err := loadManifestKeys(cfg, "")
	if err != nil {
		return backup.Manifest{}, pruneReport{}, err
	}
	store, err := openStore(ctx, cfg)
	if err != nil {
		return backup.Manifest{}, pruneReport{}, err
	}
	m, err := backup.Run(ctx, backup.Options{Replica: cfg.Backup.Replica, Primary: cfg.Backup.Primary,
		PasswordFile: cfg.Backup.PasswordFile, Recipients: recipients, Keys: keys, AgentVersion: version, Note: note,
		Taken: func(ctx context.Context, id string) (bool, error) {
			objs, err := store.List(ctx, id+"/")
			return len(objs) > 0, err
		}}, dockerDB{engine}, store)
	if err != nil || !prune {
		return m, pruneReport{}, err
	}
	loc, err := backupLocation(cfg)
	if err != nil {
		return m, pruneReport{}, err
	}
	r := cfg.Backup.Retention
	now := time.Now()
	dec, err := backup.Prune(ctx, catalog{store}, store, backup.Policy{KeepLast: r.KeepLast, Daily: r.Daily, Weekly: r.Weekly, Monthly: r.Monthly},
		now, loc)
	if err != nil {
		return m, pruneReport{}, fmt.Errorf("backup %s done, but pruning failed: %w", m.ID, err)
	}
	var p pruneReport
	for _, b := range dec.Delete {
		p.Backups = append(p.Backups, b.ID)
	}
	segs, err := pruneArchive(ctx, catalog{store}, archiveStore{store}, store, keys, now)
	for _, s := range segs {
		p.Segments++
		p.SegmentBytes += s.Bytes
	}
	if err != nil {
		return m, p, fmt.Errorf("backup %s done, but pruning the binlog archive failed: %w", m.ID, err)
	}
	return m, p, nil
}

// pruneArchive applies the binlog archive's retention after the backups' (binlog.Retention):
// it deletes the segments that no kept complete backup needs to reach any point after it, the
// superseded ones and the leftovers of failed writes. An empty archive costs one LIST. It
// returns the segments deleted, also on an error.
func pruneArchive(ctx context.Context, dumps, archive backup.Catalog, d binlog.Deleter, keys *backup.ManifestKeys, now time.Time) ([]binlog.Deletion, error) {
	// Without a manifest key the archiver accepts unsigned segments: so does retention, or it
	// would see the whole archive as rejected.
	chain, err := binlog.List(ctx, archive, binlog.ListOptions{Keys: keys, AllowUnsigned: keys == nil})
	if err != nil {
		return nil, err
	}
	if len(chain.Segments) == 0 && len(chain.Rejected) == 0 {
		return nil, nil
	}
	entries, err := backup.List(ctx, dumps)
	if err != nil {
		return nil, err
	}
	var kept []binlog.Position
	for _, e := range entries {
		if !e.Complete || e.Manifest == nil {
			continue
		}
		p, err := binlog.ParsePosition(e.Manifest.GTID)
		if err != nil {
			return nil, fmt.Errorf("backup %s: %w", e.ID, err)
		}
		kept = append(kept, p)
	}
	return binlog.Prune(ctx, d, binlog.Retention(chain, kept, now))
}

func backupLocation(cfg config.Config) (*time.Location, error) {
	if cfg.Backup.TimeZone == "" {
		return time.Local, nil
	}
	return time.LoadLocation(cfg.Backup.TimeZone)
}

// openStore connects to the configured S3 store and checks that the bucket answers.
func openStore(ctx context.Context, cfg config.Config) (*s3store.Store, error) {
	s3 := cfg.Backup.S3
	if s3.Bucket == "" {
		return nil, &config.FieldError{Field: "backup.s3.bucket", Problem: "required for backups: where do they go?"}
	}
	store, err := s3store.New(ctx, s3store.Options{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: s3.Bucket, Prefix: s3.Prefix,
		PathStyle: s3.PathStyle, AccessKeyID: s3.AccessKeyID, SecretAccessKey: s3.SecretAccessKey, CAFile: s3.CAFile,
		PartSize: int64(s3.PartSizeMiB) << 20})
	if err != nil {
		return nil, err
	}
	if err := store.Check(ctx); err != nil {
		return nil, err
	}
	return store, nil
}

// dockerDB runs dumps through the Docker API.
type dockerDB struct{ c *docker.Client }

func (d dockerDB) Ready(ctx context.Context, container string) (bool, error) {
	return d.c.ContainerReady(ctx, container)
}

func (d dockerDB) StartDump(ctx context.Context, container string, cmd []string) (backup.Dump, error) {
	e, err := d.c.ExecStream(ctx, container, cmd, nil)
	if err != nil {
		return nil, err
	}
	return execDump{e}, nil
}

type execDump struct{ e *docker.Exec }

func (x execDump) Output() io.Reader              { return x.e.Stdout }
func (x execDump) Stop()                          { x.e.Stdout.Close() }
func (x execDump) Wait(ctx context.Context) error { return x.e.Wait(ctx) }
