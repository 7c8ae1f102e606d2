package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"filippo.io/age"
	"golang.org/x/term"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/binlog"
	"github.com/hastack/hastack/internal/config"
	"github.com/hastack/hastack/internal/docker"
	"github.com/hastack/hastack/internal/mariadb"
	"github.com/hastack/hastack/internal/s3store"
)

const restoreSynopsis = `restore [flags] [ID|latest]

Brings a backup back. Its manifest must be signed with backup.manifest_key_file's key (anyone who
can write to the bucket could otherwise forge a backup that runs as root): an unsigned backup is
refused unless --allow-unsigned is given with its ID, a wrong signature always. The dump is loaded
by the mariadb client in sandbox mode (no shell commands). The whole object is downloaded and verified first (SHA-256, decryption,
decompression, the dump's closing line, every table's rows): a corrupt or truncated backup is
refused before the database is touched. Then, unless --no-safety-backup, the current database is
backed up; the backup's databases are dropped and loaded again on the target; the row counts are
checked against the manifest; and, on the primary, the replica must catch up (it replays the
restore from the binary log) with the same rows. Accounts the target already has are kept as
they are (their passwords come from the stack's secrets); the backup's other accounts are created.

With --at or --to-gtid, the binlog archive's segments the replay needs are downloaded once,
verified and kept in a private directory in $TMPDIR (else /tmp) before anything is touched; the
replay reads them from there, and the directory is removed when the restore ends.

Targets: "primary" (backup.primary, default), "new" (a fresh MariaDB container named
hastack-restore-ID, left running for you to inspect), or the name of another container running
MariaDB (root through its socket, or --target-password-file).`

func cmdRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("restore", restoreSynopsis, stderr)
	configPath := fs.String("config", os.Getenv("HASTACK_AGENT_CONFIG"), "configuration file (env HASTACK_AGENT_CONFIG)")
	at := fs.String("at", "", `restore the database as it was at this time (RFC 3339, or "2006-01-02 15:04:05" in backup.time_zone): the newest complete backup taken at or before it, then the binlog archive's transactions committed up to it (without an archive: the backup alone)`)
	toGTID := fs.String("to-gtid", "", "restore the database up to and including this transaction (domain-server-seq): the newest backup before it, then the binlog archive up to it")
	target := fs.String("target", "primary", `where to restore: primary, new, or a container name`)
	targetPassword := fs.String("target-password-file", "", "root password file inside the --target container (default: the unix socket)")
	noSafety := fs.Bool("no-safety-backup", false, "do not back the current database up first")
	identity := fs.String("identity", "", "age identity file for an encrypted backup (default: backup.age_identity_file)")
	manifestKey := fs.String("manifest-key", "", "key file that checks the manifest's signature (default: backup.manifest_key_file)")
	replayAccounts := fs.Bool("replay-account-changes", false, "with --at or --to-gtid: replay the archive's account and privilege changes (CREATE, ALTER, DROP USER, GRANT...) too; without it a replay that holds any is refused")
	allowUnsigned := fs.Bool("allow-unsigned", false, "restore the backup named by ID although its manifest is not signed, or signed with a key not at hand (never one with a wrong signature)")
	dryRun := fs.Bool("dry-run", false, "print the plan and change nothing (the backup's object is not read)")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	asJSON := fs.Bool("json", false, "print the result (or, with --dry-run, the plan) as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 || fs.NArg() == 1 && (*at != "" || *toGTID != "") || *at != "" && *toGTID != "" {
		return usagef("restore: give one backup or point: an ID, latest, --at TIME or --to-gtid GTID")
	}
	choice := backupChoice{which: fs.Arg(0), at: *at, keyFile: *manifestKey, allowUnsigned: *allowUnsigned}
	var stop binlog.Stop
	if *toGTID != "" {
		g, err := mariadb.ParseGTIDList(*toGTID)
		if err != nil || len(g) != 1 {
			return usagef("--to-gtid %q: want one GTID, domain-server-seq (agent backups --archive shows the archive's)", *toGTID)
		}
		stop.GTID, choice.beforeGTID = g[0], &g[0]
	}
	if err := choice.check(); err != nil {
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
	if *at != "" {
		loc, err := backupLocation(cfg)
		if err != nil {
			return err
		}
		if stop.Time, err = parseTime(*at, loc); err != nil {
			return usagef("--at %q: %v", *at, err)
		}
	}
	var (
		e       backup.Entry
		m       backup.Manifest
		ids     []age.Identity
		replay  *replayPlan
		archive pitrArchive
	)
	prog := newProgress(stderr)
	if *at != "" || *toGTID != "" {
		if archive.keys, err = loadManifestKeys(cfg, *manifestKey); err != nil {
			return err
		}
		archive.store, archive.allowUnsigned, archive.replayAccounts = store, *allowUnsigned, *replayAccounts
		// The binlog segments the replay needs are read from the store once, into the spool,
		// before anything is touched; it is removed when the restore ends, however it ends.
		if archive.spool, err = binlog.NewSpool(binlog.SpoolOptions{Progress: spoolProgress(prog.report)}); err != nil {
			return fmt.Errorf("%w; nothing was touched", err)
		}
		defer func() {
			if err := archive.spool.Close(); err != nil {
				fmt.Fprintf(stderr, "warning: %v\n", err)
			}
		}()
	}
	for {
		if e, err = chooseAuthenticated(ctx, cfg, store, choice); err != nil {
			return err
		}
		m = *e.Manifest
		if ids, err = loadIdentities(cfg, *identity, m.Encrypted); err != nil {
			return err
		}
		if *at == "" && *toGTID == "" {
			break
		}
		replay, err = planReplay(ctx, archive, ids, m, stop)
		prog.end()
		var tooNew *dumpAfterStopError
		if errors.As(err, &tooNew) {
			// Its snapshot is later than the point: the one before it, replayed further.
			fmt.Fprintf(stderr, "%v: using an older backup\n", tooNew)
			choice.skip = append(choice.skip, tooNew.ID)
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	engine, err := docker.New()
	if err != nil {
		return err
	}
	defer engine.Close()

	if !*dryRun && (*target == "primary" || *target == cfg.Backup.Primary || *target == cfg.Backup.Replica) {
		// No failover or switchover while the stack's databases are restored: the roles stay
		// as planned, and root (which may write on a read-only server) writes only the primary.
		unlock, err := lockDatabases(ctx, cfg)
		if err != nil {
			return err
		}
		defer unlock()
	}
	plan, err := planRestore(ctx, cfg, engine, m, *target, *targetPassword, !*noSafety)
	if err != nil {
		return err
	}
	plan.Auth = e.Auth
	if replay != nil {
		plan.Replay = replay
		plan.Notes = append(plan.Notes, replay.notes()...)
	} else if *at != "" {
		plan.Notes = append(plan.Notes, "the binlog archive is empty: the database comes back as backup "+m.ID+" has it, not as it was at "+*at)
	}
	if *dryRun {
		if *asJSON {
			return writeJSON(stdout, plan)
		}
		printPlan(stdout, cfg, plan)
		return nil
	}
	if !*asJSON {
		printPlan(stderr, cfg, plan)
	}
	if !*yes {
		if err := confirm(stderr, plan); err != nil {
			return err
		}
	}

	o := backup.RestoreOptions{Backup: m, Auth: e.Auth, AllowUnsigned: *allowUnsigned, Reader: store, Identities: ids, Progress: prog.report}
	switch plan.Kind {
	case "new":
		image, err := mariadbImage(ctx, cfg, engine)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "starting %s from %s\n", plan.Target, image)
		s, err := mariadb.StartScratch(ctx, engine, image, plan.Target, "restore")
		if err != nil {
			return err
		}
		o.Target = s
	default:
		o.Target = mariadb.ContainerServer{Engine: engine, Container: plan.Target, PasswordFile: plan.passwordFile}
	}
	if replay != nil {
		target := o.Target.(mariadb.ContainerServer)
		o.Replay = func(ctx context.Context) (string, error) { return replay.replay(ctx, target) }
	}
	if plan.Replica != "" {
		o.Replica = mariadb.ContainerServer{Engine: engine, Container: plan.Replica, PasswordFile: cfg.Backup.PasswordFile}
	}
	if plan.SafetyBackup {
		o.Safety = func(ctx context.Context) (backup.Manifest, error) {
			s, _, err := doBackup(ctx, cfg, engine, false, "safety backup before restoring "+m.ID)
			if err == nil {
				fmt.Fprintf(stderr, "safety backup %s taken (%s)\n", s.ID, humanBytes(s.StoredBytes))
			}
			return s, err
		}
	}
	rep, err := backup.Restore(ctx, o)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, rep)
	}
	fmt.Fprintf(stdout, "restored %s into %s: %d tables, %d rows, checked", rep.Backup, rep.Target, rep.Tables, rep.Rows)
	if rep.Replayed != "" {
		fmt.Fprintf(stdout, "; replayed from the binlog archive: %s", rep.Replayed)
	}
	if rep.Replica != "" {
		fmt.Fprintf(stdout, "; %s caught up (GTID %s) with the same rows", rep.Replica, rep.ReplicaGTID)
	}
	fmt.Fprintf(stdout, " (%s)\n", rep.Took.Round(time.Millisecond))
	if rep.SafetyBackup != "" {
		fmt.Fprintf(stdout, "the database as it was before is backup %s: agent restore %s\n", rep.SafetyBackup, rep.SafetyBackup)
	}
	if plan.Kind == "new" {
		fmt.Fprintf(stdout, "inspect it: docker exec -it %s mariadb; remove it: docker rm -fv %s\n", plan.Target, plan.Target)
	}
	return nil
}

// restorePlan is what a restore will do.
type restorePlan struct {
	Backup       backup.Manifest     `json:"backup"`
	Kind         string              `json:"kind"` // primary, new, container
	Target       string              `json:"target"`
	Replica      string              `json:"replica,omitempty"` // checked after the load
	SafetyBackup bool                `json:"safety_backup"`
	Databases    []string            `json:"databases"` // dropped and loaded again
	Auth         backup.Authenticity `json:"auth"`      // what checking the manifest's signature found
	Notes        []string            `json:"notes,omitempty"`
	Replay       *replayPlan         `json:"replay,omitempty"` // point-in-time: the archive after the backup
	passwordFile string
}

func planRestore(ctx context.Context, cfg config.Config, engine *docker.Client, m backup.Manifest, target, passwordFile string, safety bool) (restorePlan, error) {
	cfg = followRoles(ctx, cfg, engine)
	p := restorePlan{Backup: m, Kind: target, Target: target, Databases: m.Databases(), passwordFile: passwordFile}
	switch target {
	case "primary", cfg.Backup.Primary:
		p.Kind, p.Target, p.passwordFile = "primary", cfg.Backup.Primary, cfg.Backup.PasswordFile
		if ok, err := engine.ContainerReady(ctx, p.Target); err != nil || !ok {
			return p, fmt.Errorf("the primary %s is not running and healthy (%v): start the stack first (docker compose up -d), or restore elsewhere with --target new", p.Target, err)
		}
		p.SafetyBackup = safety
		if ok, _ := engine.ContainerReady(ctx, cfg.Backup.Replica); ok {
			p.Replica = cfg.Backup.Replica
		} else {
			p.Notes = append(p.Notes, fmt.Sprintf("the replica %s is not running and healthy: it is not checked; rebuild it from the primary afterwards", cfg.Backup.Replica))
		}
	case "new":
		p.Target = "hastack-restore-" + strings.ToLower(m.ID)
		p.Notes = append(p.Notes, "the new container is left running, without a network; remove it with docker rm -fv "+p.Target)
	case "":
		return p, &config.FieldError{Field: "--target", Problem: "empty"}
	default:
		p.Kind = "container"
		if ok, err := engine.ContainerReady(ctx, target); err != nil || !ok {
			return p, fmt.Errorf("--target %s is not a running container (%v)", target, err)
		}
		if target == cfg.Backup.Replica {
			return p, fmt.Errorf("--target %s is the replica: it is read-only and follows the primary; restore the primary, or use --target new", target)
		}
		p.SafetyBackup = false
		if safety {
			p.Notes = append(p.Notes, "no safety backup is taken of "+target+": it is not the stack's database")
		}
	}
	return p, nil
}

func printPlan(w io.Writer, cfg config.Config, p restorePlan) {
	m := p.Backup
	rows := int64(0)
	for _, t := range m.UserTables() {
		rows += t.Rows
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "backup\t%s, taken %s from %s (%s), GTID %s\n", m.ID, m.Started.Local().Format("2006-01-02 15:04:05 MST"), m.Source.Container, m.Source.Role, orDash(m.GTID))
	fmt.Fprintf(tw, "object\t%s%s, %s (%s of SQL), sha256 %s\n", cfg.Backup.S3.Prefix, m.DumpKey, humanBytes(m.StoredBytes), humanBytes(m.RawBytes), m.SHA256)
	fmt.Fprintf(tw, "data\t%d tables in %s, %d rows\n", len(m.UserTables()), orDash(strings.Join(p.Databases, ", ")), rows)
	if m.Note != "" {
		fmt.Fprintf(tw, "note\t%s\n", m.Note)
	}
	fmt.Fprintf(tw, "manifest\t%s\n", authLine(p.Auth))
	if r := p.Replay; r != nil {
		span := "none"
		if r.Transactions > 0 {
			span = fmt.Sprintf("%s (%s) .. %s (%s)", r.FirstGTID, r.FirstTime.Local().Format(time.DateTime), r.LastGTID, r.LastTime.Local().Format(time.DateTime))
		}
		fmt.Fprintf(tw, "binlog\tup to %s: %d transactions after %s, %s, in %d segments (verified)\n", r.Stop, r.Transactions, orDash(r.From), span, r.Segments)
	}
	tw.Flush()
	fmt.Fprintln(w, "steps:")
	n := 0
	step := func(format string, args ...any) {
		n++
		fmt.Fprintf(w, "  %d. "+format+"\n", append([]any{n}, args...)...)
	}
	step("download and verify the whole object (SHA-256, decompression, row counts): nothing is touched before it passes")
	if p.SafetyBackup {
		step("back up the current database (a safety backup, to undo this restore)")
	}
	if p.Kind == "new" {
		step("start a fresh MariaDB container %s", p.Target)
	}
	step("on %s: drop the databases %s, then load the dump; the accounts %s has are kept as they are", p.Target, orDash(strings.Join(p.Databases, ", ")), p.Target)
	step("check the row count of every table on %s against the backup", p.Target)
	if p.Replay != nil && p.Replay.Transactions > 0 {
		step("replay the binlog archive's %d transactions on %s (mariadb-binlog, as new transactions of %s)", p.Replay.Transactions, p.Target, p.Target)
	}
	if p.Replica != "" {
		step("wait for %s to replay the restore (GTID) with both replication threads running, and check its rows", p.Replica)
	}
	for _, note := range p.Notes {
		fmt.Fprintln(w, "note: "+note)
	}
}

// confirm asks on a terminal; elsewhere a restore needs --yes.
func confirm(w io.Writer, p restorePlan) error {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(os.Stdin.Fd())) || !term.IsTerminal(int(f.Fd())) {
		return usagef("restore replaces the databases %s on %s: pass --yes to confirm (--dry-run shows the plan)",
			strings.Join(p.Databases, ", "), p.Target)
	}
	fmt.Fprintf(w, "Restore into %s? Type yes: ", p.Target)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return errors.New("restore cancelled; nothing was changed")
	}
	return nil
}

// backupChoice is which backup a restore or drill wants and how its manifest is checked.
type backupChoice struct {
	which, at     string        // an ID, "" or "latest"; or a time (restore --at)
	beforeGTID    *mariadb.GTID // restore --to-gtid: the newest backup before it
	skip          []string      // ids not to choose (restore --at: their snapshot is after the point)
	keyFile       string        // --manifest-key; "" for backup.manifest_key_file
	allowUnsigned bool
}

// check refuses --allow-unsigned without a backup's ID: it trusts the bucket for one backup that
// someone looked at (agent backups), not for whatever is newest there.
func (c backupChoice) check() error {
	if c.allowUnsigned && (c.which == "" || c.which == "latest" || c.at != "" || c.beforeGTID != nil) {
		return usagef("--allow-unsigned needs the ID of the backup to trust (agent backups lists them and their signatures), not latest or --at: " +
			"whoever can write to the bucket can make an unsigned backup the newest")
	}
	return nil
}

// chooseAuthenticated picks the complete backup of c and checks its manifest's signature with
// the manifest key; it refuses a backup that backup.Authorize refuses, or that this agent
// cannot restore (an ambiguous version 1 manifest).
func chooseAuthenticated(ctx context.Context, cfg config.Config, store *s3store.Store, c backupChoice) (backup.Entry, error) {
	keys, err := loadManifestKeys(cfg, c.keyFile)
	if err != nil {
		return backup.Entry{}, err
	}
	var e backup.Entry
	if c.beforeGTID != nil {
		entries, lerr := backup.List(ctx, catalog{store})
		if lerr != nil {
			return e, lerr
		}
		e, err = pickBackupBefore(entries, *c.beforeGTID)
	} else {
		e, err = chooseBackup(ctx, cfg, store, c.which, c.at, c.skip)
	}
	if err != nil {
		return e, err
	}
	if err := backup.Authenticate(ctx, catalog{store}, keys, &e); err != nil {
		return e, err
	}
	if err := backup.Authorize(e.ID, e.Auth, c.allowUnsigned); err != nil {
		return e, fmt.Errorf("%w; nothing was touched", err)
	}
	return e, e.Manifest.Restorable()
}

// authLine says what checking a manifest's signature found, for the plan.
func authLine(a backup.Authenticity) string {
	switch a.Status {
	case backup.AuthVerified:
		return "signature verified (key id " + a.KeyID + ")"
	case backup.AuthNoKey, backup.AuthUnknownKey:
		return "signed with key id " + a.KeyID + ", NOT checked (no such key here): restored unchecked because of --allow-unsigned"
	}
	return "NOT signed: restored unchecked because of --allow-unsigned"
}

// chooseBackup picks the complete backup named by arg ("", "latest" or an ID) or by at.
func chooseBackup(ctx context.Context, cfg config.Config, store *s3store.Store, arg, at string, skip []string) (backup.Entry, error) {
	entries, err := backup.List(ctx, catalog{store})
	if err != nil {
		return backup.Entry{}, err
	}
	entries = slices.DeleteFunc(entries, func(e backup.Entry) bool { return slices.Contains(skip, e.ID) })
	loc, err := backupLocation(cfg)
	if err != nil {
		return backup.Entry{}, err
	}
	e, err := pickBackup(entries, arg, at, loc)
	if err != nil && len(entries) == 0 {
		return e, fmt.Errorf("%w in s3://%s/%s", err, cfg.Backup.S3.Bucket, cfg.Backup.S3.Prefix)
	}
	return e, err
}

// pickBackup chooses among entries (newest first) the complete backup named by arg ("",
// "latest" or an ID) or, with at, the newest complete one taken at or before that time.
func pickBackup(entries []backup.Entry, arg, at string, loc *time.Location) (backup.Entry, error) {
	var complete []backup.Entry
	for _, e := range entries {
		if e.Complete {
			complete = append(complete, e)
		}
	}
	if len(complete) == 0 {
		return backup.Entry{}, errors.New("no complete backup (agent backups lists what is there)")
	}
	switch {
	case at != "":
		t, err := parseTime(at, loc)
		if err != nil {
			return backup.Entry{}, usagef("--at %q: %v", at, err)
		}
		for _, e := range complete {
			if !e.Manifest.Started.After(t) {
				return e, nil
			}
		}
		return backup.Entry{}, fmt.Errorf("no complete backup taken at or before %s: the oldest is %s", t.Format(time.RFC3339), complete[len(complete)-1].ID)
	case arg == "" || arg == "latest":
		return complete[0], nil
	}
	i := slices.IndexFunc(entries, func(e backup.Entry) bool { return e.ID == arg })
	switch {
	case i < 0:
		return backup.Entry{}, fmt.Errorf("no backup %s (agent backups lists them)", arg)
	case !entries[i].Complete:
		return backup.Entry{}, fmt.Errorf("backup %s is not complete (%s): it cannot be restored", arg, entries[i].Problem)
	}
	return entries[i], nil
}

func parseTime(s string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New(`want RFC 3339 ("2026-11-25T03:00:00Z") or "2026-11-25 03:00"`)
}

// loadIdentities reads the age identities for an encrypted backup.
func loadIdentities(cfg config.Config, file string, needed bool) ([]age.Identity, error) {
	if file == "" {
		file = cfg.Backup.AgeIdentityFile
	}
	if file == "" {
		if needed {
			return nil, errors.New("the backup is encrypted: give its age identity file with --identity (or backup.age_identity_file)")
		}
		return nil, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("age identity file: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("age identity file %s: %w", file, err)
	}
	return ids, nil
}

// mariadbImage is the image of scratch servers: the primary's, so that the client and server are
// as new as the dump's.
func mariadbImage(ctx context.Context, cfg config.Config, engine *docker.Client) (string, error) {
	image, err := engine.ImageOf(ctx, cfg.Backup.Primary)
	if err != nil {
		return "", fmt.Errorf("a scratch server runs the primary's image: %w", err)
	}
	return image, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progress shows a restore's steps; on a terminal it also shows bytes, rate and ETA in place.
type progress struct {
	w        io.Writer
	tty      bool
	step     string
	started  time.Time
	lastDraw time.Time
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progress) report(r backup.RestoreProgress) {
	now := time.Now()
	if r.Step != p.step {
		if p.tty && p.step != "" {
			fmt.Fprintln(p.w)
		}
		p.step, p.started, p.lastDraw = r.Step, now, time.Time{}
		if !p.tty {
			fmt.Fprintf(p.w, "%s: %s\n", now.Format("15:04:05"), stepTitle(r.Step))
			return
		}
	}
	if !p.tty {
		return
	}
	if r.Total == 0 || r.Read == 0 {
		fmt.Fprintf(p.w, "\r%s", stepTitle(r.Step))
		return
	}
	if now.Sub(p.lastDraw) < 200*time.Millisecond && r.Read < r.Total {
		return
	}
	p.lastDraw = now
	elapsed := now.Sub(p.started).Seconds()
	rate := float64(r.Read) / max(elapsed, 0.001)
	eta := time.Duration(float64(r.Total-r.Read)/max(rate, 1)) * time.Second
	fmt.Fprintf(p.w, "\r%s  %s / %s  %3.0f%%  %s/s  ETA %s   ", stepTitle(r.Step), humanBytes(r.Read), humanBytes(r.Total),
		100*float64(r.Read)/float64(r.Total), humanBytes(int64(rate)), eta.Round(time.Second))
}

// end finishes the line a step drew on a terminal, before something else is written there.
func (p *progress) end() {
	if p.tty && p.step != "" {
		fmt.Fprintln(p.w)
	}
	p.step = ""
}

func stepTitle(step string) string {
	switch step {
	case "verify":
		return "verifying the backup"
	case "safety-backup":
		return "taking a safety backup"
	case "load":
		return "loading"
	case "check":
		return "checking row counts"
	case "replay":
		return "replaying the binlog archive"
	case "archive":
		return "verifying the binlog archive"
	case "replica":
		return "waiting for the replica"
	}
	return step
}
