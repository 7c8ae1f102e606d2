package main

import (
	"context"
	"io"
	"os"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hastack/hastack/internal/config"
	"github.com/hastack/hastack/internal/docker"
	"github.com/hastack/hastack/internal/failover"
)

const archiveSynopsis = `archive [--config FILE] [--log-format text|json]

Runs the binlog archive in the foreground until interrupted, as agent run does with
backup.archive.enabled: it follows the binary log of the server the roles name the primary and
stores it beside the backups (docs/backup.md). For an agent run without the archive, or to see
it work. Run only one archive per store: two would supersede each other's segments.`

func cmdArchive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("archive", archiveSynopsis, stderr)
	configPath := fs.String("config", os.Getenv("HASTACK_AGENT_CONFIG"), "configuration file (env HASTACK_AGENT_CONFIG)")
	logFormat := fs.String("log-format", "json", "log format: json or text")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("archive: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	if cfg.Database.Password == "" {
		return &config.FieldError{Field: "database.password_file", Problem: "not set: the archive reads the primary's binary log with the agent's database account (stack/secrets/db/agent_password)"}
	}
	engine, err := docker.New()
	if err != nil {
		return err
	}
	defer engine.Close()
	log := newLogger(stderr, *logFormat)
	cl, closeCl, err := newCluster(ctx, cfg, engine, log)
	if err != nil {
		return err
	}
	defer closeCl()
	var cluster atomic.Pointer[failover.Cluster]
	cluster.Store(cl)
	events, stopAlerts, err := startAlerts(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopAlerts()
	a, err := newArchiver(ctx, cfg, &cluster, events, prometheus.NewRegistry(), log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
