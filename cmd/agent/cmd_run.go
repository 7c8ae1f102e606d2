package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/term"

	"github.com/hastack/hastack/internal/alerts"
	"github.com/hastack/hastack/internal/api"
	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/compose"
	"github.com/hastack/hastack/internal/config"
	"github.com/hastack/hastack/internal/docker"
	"github.com/hastack/hastack/internal/failover"
	"github.com/hastack/hastack/internal/gitsource"
	agentsync "github.com/hastack/hastack/internal/sync"
)

// persistentPaths survive from one release to the next: generated secrets, the user's own
// certificate, and the stack's .env (all git-ignored in the stack).
var persistentPaths = []string{"secrets", "nginx/ssl", ".env"}

// livePaths are reloaded in place by the services that mount them (nginx's configuration:
// a change is checked with nginx -t and applied by a reload, not a new container).
var livePaths = []string{"nginx/conf"}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "run [--config FILE]", stderr)
	configPath := fs.String("config", os.Getenv("HASTACK_AGENT_CONFIG"), "configuration file (env HASTACK_AGENT_CONFIG); without one, defaults and HASTACK_AGENT_* variables")
	logFormat := fs.String("log-format", "", "text or json (default: text on a terminal, json otherwise)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	log := newLogger(stderr, *logFormat)
	for _, w := range cfg.Warnings() {
		log.Warn("config: " + w)
	}
	log.Info("starting", "config", cfg.Redacted().String())
	return runAgent(ctx, cfg, log)
}

func newLogger(w io.Writer, format string) *slog.Logger {
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// gitAdapter gives the reconciler the whole tree of a commit.
type gitAdapter struct{ src *gitsource.Source }

func (g gitAdapter) Fetch(ctx context.Context) (agentsync.Revision, error) {
	r, err := g.src.Fetch(ctx)
	return agentsync.Revision{Commit: r.Commit, Ref: r.Ref, Subject: r.Subject}, err
}

func (g gitAdapter) Export(ctx context.Context, commit, dst string) error {
	return g.src.Export(ctx, commit, "", dst)
}

func runAgent(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	src, err := gitsource.New(cfg.Source.GitOptions(filepath.Join(cfg.StateDir, "mirror")))
	if err != nil {
		return err
	}
	engine, err := docker.New()
	if err != nil {
		return err
	}
	defer engine.Close()
	if err := engine.Ping(ctx); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	delivery, err := newAlertDelivery(cfg.Alerts, log, reg)
	if err != nil {
		return err
	}
	events := alerts.NewLogger(log, reg).DeliverTo(delivery)
	alertsDone := make(chan struct{})
	go func() {
		defer close(alertsDone)
		delivery.Run(ctx) // its last round, after ctx ends, is bounded by a few seconds
	}()
	metrics := agentsync.NewMetrics(reg)
	var exclusive func(context.Context) (func(), error)
	var dbWatch func(context.Context)
	var dbCluster atomic.Pointer[failover.Cluster]
	if cfg.Database.Enabled() {
		exclusive = dbLock(cfg).Lock
		dbMetrics := failover.NewMetrics(reg)
		dbWatch = func(ctx context.Context) {
			// The stack may not be deployed yet (a first start): wait for its servers.
			var cl *failover.Cluster
			for {
				var closeCl func()
				var err error
				if cl, closeCl, err = newCluster(ctx, cfg, engine, log); err == nil {
					defer closeCl()
					break
				}
				log.Info("database watch: waiting for the database servers", "reason", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(10 * time.Second):
				}
			}
			cl.Notify, cl.Metrics = events.Event, dbMetrics
			dbCluster.Store(cl)
			if err := watchDB(ctx, cfg, engine, cl, log); err != nil {
				log.Error("database watch stopped", "err", err)
				events.Event(ctx, "DatabaseWatchFailed", true, nil, err.Error())
			}
		}
	}
	newStack := func(projectDir string, files []string) agentsync.Stack {
		return compose.Project{Name: cfg.Compose.Project, Dir: projectDir, Files: files, EnvFile: cfg.Compose.EnvFile, Output: io.Discard}
	}
	rec, err := agentsync.New(agentsync.Options{
		Project: cfg.Compose.Project, Subpath: cfg.Source.Path, ComposeFiles: cfg.Compose.Files,
		WorkDir: cfg.WorkDir, SharedDir: cfg.SharedDir, Persistent: persistentPaths, Live: livePaths,
		HealthTimeout: time.Duration(cfg.Compose.HealthTimeout), PollInterval: time.Duration(cfg.Source.PollInterval),
		DriftMode: agentsync.DriftMode(cfg.Drift.Mode), DriftGrace: time.Duration(cfg.Drift.GracePeriod), RestoreRemoved: cfg.Drift.RestoreRemoved, EnvFile: cfg.Compose.EnvFile,
		DriftInterval: time.Duration(cfg.Drift.CheckInterval), History: cfg.History,
		Exclusive: exclusive, ExclusiveServices: cfg.Database.Servers,
	}, gitAdapter{src}, engine, newStack, agentsync.NewStore(cfg.StateDir), events, metrics, log)
	if err != nil {
		return err
	}

	token := cfg.API.Token
	if token == "" {
		path := api.DefaultTokenFile(cfg.StateDir)
		if token, err = api.LoadOrCreateToken(path); err != nil {
			return fmt.Errorf("%w (or set api.token_file)", err)
		}
		log.Info("API token", "file", path)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (change listen in the configuration)", cfg.Listen, err)
	}
	srv := api.NewServer(api.Handler(rec, api.Options{
		Ref: cfg.Source.Ref, WebhookSecret: []byte(cfg.Webhook.Secret), APIToken: token, Listen: cfg.Listen,
		Gatherer: reg, Log: log, Alerts: events.Firing,
		Database: func() *failover.Report {
			if cl := dbCluster.Load(); cl != nil {
				if rep := cl.LastReport(); !rep.At.IsZero() {
					return &rep
				}
			}
			return nil
		},
	}))
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	log.Info("listening", "addr", ln.Addr().String(), "source", src.DisplayURL(), "ref", cfg.Source.Ref)
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w (change metrics_listen in the configuration)", cfg.MetricsListen, err)
		}
		msrv := api.NewServer(api.MetricsHandler(reg))
		go msrv.Serve(mln)
		defer msrv.Close()
		log.Info("serving metrics", "addr", mln.Addr().String())
	}

	go watchEvents(ctx, engine, cfg.Compose.Project, rec, log)
	dbDone := make(chan struct{})
	go func() {
		defer close(dbDone)
		if dbWatch != nil {
			dbWatch(ctx)
		}
	}()
	// Jobs run until ctx ends; the agent returns only once each has: a backup in progress
	// aborts its upload, a deploy's Compose gets SIGTERM and time (compose.StopGrace).
	var jobs gosync.WaitGroup
	if cfg.Backup.Schedule != "" {
		sched, err := newBackupScheduler(cfg, engine, events, backup.NewMetrics(reg), log)
		if err != nil {
			return err
		}
		jobs.Go(func() { sched.Run(ctx) })
	}
	if cfg.Backup.Drill.Schedule != "" {
		sched, err := newDrillScheduler(cfg, engine, events, backup.NewDrillMetrics(reg), log)
		if err != nil {
			return err
		}
		jobs.Go(func() { sched.Run(ctx) })
	}
	if cfg.Backup.Archive.Enabled {
		if !cfg.Database.Enabled() {
			return &config.FieldError{Field: "backup.archive.enabled", Problem: "the archive reads the primary's binary log with the agent's database account: set database.password_file (or HASTACK_AGENT_DB_PASSWORD)"}
		}
		jobs.Go(func() { runArchive(ctx, cfg, &dbCluster, events, reg, log) })
	}
	err = rec.Run(ctx)
	log.Info("stopping: waiting for the jobs in progress")
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(shutdown)
	jobs.Wait()
	<-dbDone // a failover in progress finishes its step
	<-alertsDone
	log.Info("stopped")
	return err
}

// newAlertDelivery builds the delivery of the agent's own alerts from the alerts: section:
// Alertmanager's API, and Slack and e-mail directly while Alertmanager does not answer.
func newAlertDelivery(cfg config.Alerts, log *slog.Logger, reg prometheus.Registerer) (*alerts.Delivery, error) {
	opts := alerts.Options{
		AlertmanagerURL: cfg.AlertmanagerURL,
		ResendInterval:  time.Duration(cfg.ResendInterval),
		RepeatInterval:  time.Duration(cfg.RepeatInterval),
		GeneratorURL:    cfg.Link,
	}
	if cfg.Slack.WebhookURL != "" {
		slack, err := alerts.NewSlack(cfg.Slack.WebhookURL, cfg.Slack.Channel, nil)
		if err != nil {
			return nil, &config.FieldError{Field: "alerts.slack.webhook_url_file", Problem: err.Error()}
		}
		opts.Slack = slack
	}
	if cfg.Email.Smarthost != "" {
		email, err := alerts.NewEmail(alerts.EmailOptions{
			Smarthost: cfg.Email.Smarthost, From: cfg.Email.From, To: cfg.Email.To,
			Username: cfg.Email.Username, Password: cfg.Email.Password, RequireTLS: cfg.Email.RequireTLS,
		})
		if err != nil {
			return nil, &config.FieldError{Field: "alerts.email", Problem: err.Error()}
		}
		opts.Email = email
	}
	return alerts.NewDelivery(opts, log, reg)
}

// newBackupScheduler runs `agent backup` on cfg.Backup.Schedule; a failure is the BackupFailed
// alert event, resolved by the next success.
func newBackupScheduler(cfg config.Config, engine *docker.Client, events *alerts.Logger, m *backup.Metrics, log *slog.Logger) (*backup.Scheduler, error) {
	loc, err := backupLocation(cfg)
	if err != nil {
		return nil, &config.FieldError{Field: "backup.time_zone", Problem: err.Error()}
	}
	job := func(ctx context.Context) error {
		man, pruned, err := doBackup(ctx, cfg, engine, true, "")
		if err != nil {
			events.Event(ctx, "BackupFailed", true, nil, fmt.Sprintf("backup failed: %v", err))
			return err
		}
		m.Completed(man)
		events.Event(ctx, "BackupFailed", false, nil, "")
		log.Info("backup complete", "id", man.ID, "source", man.Source.Container, "bytes", man.StoredBytes, "pruned", pruned)
		return nil
	}
	s, err := backup.NewScheduler(cfg.Backup.Schedule, loc, job, m, log.With("component", "backup"))
	if err != nil {
		return nil, &config.FieldError{Field: "backup.schedule", Problem: err.Error()}
	}
	return s, nil
}

// newDrillScheduler runs `agent drill` on cfg.Backup.Drill.Schedule; a failure is the
// DrillFailed alert event, resolved by the next drill that passes.
func newDrillScheduler(cfg config.Config, engine *docker.Client, events *alerts.Logger, m *backup.Metrics, log *slog.Logger) (*backup.Scheduler, error) {
	loc, err := backupLocation(cfg)
	if err != nil {
		return nil, &config.FieldError{Field: "backup.time_zone", Problem: err.Error()}
	}
	job := func(ctx context.Context) error {
		rep, err := doDrill(ctx, cfg, engine, nil)
		if err != nil {
			events.Event(ctx, "DrillFailed", true, nil, fmt.Sprintf("restore drill failed: %v", err))
			return err
		}
		m.Drilled(rep)
		events.Event(ctx, "DrillFailed", false, nil, "")
		log.Info("restore drill passed", drillLogAttrs(rep)...)
		return nil
	}
	s, err := backup.NewScheduler(cfg.Backup.Drill.Schedule, loc, job, m, log.With("component", "drill"))
	if err != nil {
		return nil, &config.FieldError{Field: "backup.drill.schedule", Problem: err.Error()}
	}
	return s, nil
}

// watchEvents checks for drift soon after a container of the project stops or disappears,
// besides the periodic check.
func watchEvents(ctx context.Context, engine *docker.Client, project string, rec *agentsync.Reconciler, log *slog.Logger) {
	for ctx.Err() == nil {
		evs, errs := engine.Events(ctx, project)
		for ev := range evs {
			switch ev.Action {
			case "die", "stop", "destroy", "health_status":
				rec.CheckDrift(ctx)
			}
		}
		if err := <-errs; err != nil && ctx.Err() == nil {
			log.Warn("docker events stream ended; reconnecting", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
}
