package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/hastack/hastack/internal/docker"
	"github.com/hastack/hastack/internal/setup"
)

func cmdInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("init", "init --repo DIR --ref BRANCH [flags]", stderr)
	repo := fs.String("repo", "", "the repository whose stack/ the agent deploys (absolute)")
	ref := fs.String("ref", "", "the branch to follow")
	state := fs.String("state", "/var/lib/hastack-agent", "the agent's state directory: agent.yml, api-token and an optional backup.yml go there")
	listen := fs.String("listen", "127.0.0.1:9700", "the agent's API and /metrics address")
	metrics := fs.String("metrics-listen", "auto", "a second /metrics address, where the stack's Prometheus scrapes the agent: auto for the Docker bridge's address, port 9700; empty for none")
	poll := fs.Duration("poll", 10*time.Second, "how often the repository is checked")
	backupSchedule := fs.String("backup-schedule", "0 3 * * *", "when to back the database up to the bundled object store (cron); ignored when the state directory has a backup.yml")
	drillSchedule := fs.String("drill-schedule", "0 5 * * 0", "when to run a restore drill (cron)")
	failover := fs.String("db-failover", "auto", "auto: fail the database over by itself; manual: alert only")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("init: unexpected argument %q", fs.Arg(0))
	}
	if !filepath.IsAbs(*repo) || *ref == "" {
		return usagef("init: --repo (an absolute path) and --ref are required")
	}
	if *metrics == "auto" {
		*metrics = ""
		if engine, err := docker.New(); err == nil {
			ip, err := engine.BridgeGateway(ctx)
			engine.Close()
			if err == nil {
				*metrics = ip + ":9700"
			} else {
				fmt.Fprintf(stderr, "init: warning: %v: Prometheus will not scrape the agent\n", err)
			}
		}
	}
	res, err := setup.Build(setup.Options{
		Repo: *repo, Ref: *ref, StateDir: *state, Listen: *listen, MetricsListen: *metrics, Poll: *poll,
		BackupSchedule: *backupSchedule, DrillSchedule: *drillSchedule, DBFailover: *failover,
	})
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(stderr, "init: warning:", w)
	}
	// The API's bearer token, and the key that signs backup manifests (restores run a backup's
	// SQL as root, so only what this agent wrote is restored: keep a copy off the host).
	for _, key := range []string{res.Config.API.TokenFile, res.Config.Backup.ManifestKeyFile} {
		if key == "" {
			continue
		}
		made, err := setup.EnsureKey(key)
		if err != nil {
			return fmt.Errorf("init: %s: %w", key, err)
		}
		if made {
			fmt.Fprintln(stderr, "init: made", key)
		}
	}
	if err := res.Check(); err != nil {
		return err
	}
	path := filepath.Join(*state, "agent.yml")
	if err := setup.Write(path, res.Config); err != nil {
		return fmt.Errorf("init: write %s: %w", path, err)
	}
	fmt.Fprintf(stderr, "init: wrote %s (receivers: slack %v, e-mail %v)\n", path, res.Receivers.SlackOn(), res.Receivers.EmailOn())
	fmt.Fprint(stdout, res.Summary())
	return nil
}
