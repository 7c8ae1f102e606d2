package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/config"
	"github.com/hastack/hastack/internal/docker"
	"github.com/hastack/hastack/internal/mariadb"
)

const drillSynopsis = `drill [--config FILE] [--json] [--allow-unsigned ID | ID | latest]

A restore drill: the backup (default: the newest complete one) is restored into a throw-away
MariaDB container (the primary's image, no network), every table's rows are compared with the
manifest, and the container is removed. It reads the backup once and does not touch the stack's
databases. Like a restore, it refuses a backup whose manifest is not signed with
backup.manifest_key_file's key (the scheduled drill always does). agent run does this on
backup.drill.schedule.`

func cmdDrill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("drill", drillSynopsis, stderr)
	configPath := fs.String("config", os.Getenv("HASTACK_AGENT_CONFIG"), "configuration file (env HASTACK_AGENT_CONFIG)")
	identity := fs.String("identity", "", "age identity file for an encrypted backup (default: backup.age_identity_file)")
	manifestKey := fs.String("manifest-key", "", "key file that checks the manifest's signature (default: backup.manifest_key_file)")
	allowUnsigned := fs.Bool("allow-unsigned", false, "drill the backup named by ID although its manifest is not signed, or signed with a key not at hand (never one with a wrong signature)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return errUsage
	}
	req := drillRequest{choice: backupChoice{which: fs.Arg(0), keyFile: *manifestKey, allowUnsigned: *allowUnsigned}, identity: *identity}
	if err := req.choice.check(); err != nil {
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
	req.progress = newProgress(stderr).report
	rep, err := drill(ctx, cfg, engine, req)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, rep)
	}
	fmt.Fprintf(stdout, "restore drill passed: backup %s (taken %s) restored into %s: %d tables, %d rows, as in its manifest (%s)\n",
		rep.Backup, rep.Taken.Local().Format("2006-01-02 15:04:05"), rep.Scratch, rep.Tables, rep.Rows, rep.Took.Round(time.Millisecond))
	return nil
}

// doDrill restores a backup ("" or "latest": the newest complete one) into a scratch container
// and compares it with its manifest; the container is removed whatever happens. It is the
// scheduled drill's: only a backup whose signature checks with backup.manifest_key_file.
func doDrill(ctx context.Context, cfg config.Config, engine *docker.Client, which, identity string, progress func(backup.RestoreProgress)) (backup.DrillReport, error) {
	return drill(ctx, cfg, engine, drillRequest{choice: backupChoice{which: which}, identity: identity, progress: progress})
}

// drillRequest is what one drill restores, and how.
type drillRequest struct {
	choice   backupChoice
	identity string // age identity file; "": backup.age_identity_file
	progress func(backup.RestoreProgress)
}

func drill(ctx context.Context, cfg config.Config, engine *docker.Client, req drillRequest) (backup.DrillReport, error) {
	store, err := openStore(ctx, cfg)
	if err != nil {
		return backup.DrillReport{}, err
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
	return backup.Drill(ctx, backup.DrillOptions{Backup: m, Auth: e.Auth, AllowUnsigned: req.choice.allowUnsigned,
		Reader: store, Identities: ids, Scratch: s, Progress: req.progress})
}
