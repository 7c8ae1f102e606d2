package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hastack/hastack/internal/alerts"
	"github.com/hastack/hastack/internal/config"
	"github.com/hastack/hastack/internal/docker"
	"github.com/hastack/hastack/internal/failover"
	"github.com/hastack/hastack/internal/mariadb"
)

const dbUsage = `Usage: agent db COMMAND [--config FILE]

  status [--json]     both servers: role, GTID position, replication threads, lag, semi-sync
  switchover          make the replica the primary, the primary its replica (planned; writes
                      pause at most 1 s, or nothing changes)
  failover [--force]  promote the replica now, the primary being dead; without --force only when
                      the replica has every write the primary acknowledged
  reseed SERVICE [--force]
                      copy the primary's data again into a quarantined server (its diverged
                      binary logs are kept in its volume) and wait until it replicates
  watch               the watch of 'agent run' on its own: fail over automatically

The database section of the configuration (docs/failover.md); the agent's database password in
database.password_file or HASTACK_AGENT_DB_PASSWORD(_FILE).
`

func cmdDB(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, dbUsage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	sub := args[0]
	fs := newFlags("db "+sub, "db "+sub+" [--config FILE]", stderr)
	configPath := fs.String("config", os.Getenv("HASTACK_AGENT_CONFIG"), "configuration file (env HASTACK_AGENT_CONFIG)")
	asJSON := fs.Bool("json", false, "status: print JSON")
	force := fs.Bool("force", false, "failover: promote even when the replica may lack acknowledged writes; reseed: re-seed a server that is not quarantined")
	timeout := fs.Duration("timeout", 30*time.Minute, "reseed: how long to wait for the server to replicate again")
	logFormat := fs.String("log-format", "", "watch: text or json (default: text on a terminal)")
	switch sub {
	case "status", "switchover", "failover", "watch", "reseed":
	default:
		fmt.Fprintf(stderr, "agent db: unknown command %q\n\n%s", sub, dbUsage)
		return errUsage
	}
	// The server to re-seed may come before or after the flags.
	var service string
	rest := args[1:]
	if sub == "reseed" && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		service, rest = rest[0], rest[1:]
	}
	if err := parse(fs, rest); err != nil {
		return err
	}
	if sub == "reseed" && service == "" {
		if fs.NArg() != 1 {
			fmt.Fprintf(stderr, "agent db reseed: name the server to re-seed (a service of database.servers)\n\n%s", dbUsage)
			return errUsage
		}
		service = fs.Arg(0)
	} else if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agent db %s: unexpected argument %q\n", sub, fs.Arg(0))
		return errUsage
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	if cfg.Database.Password == "" {
		return &config.FieldError{Field: "database.password_file", Problem: "not set: the agent's database password (stack/secrets/db/agent_password), or HASTACK_AGENT_DB_PASSWORD(_FILE)"}
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

	switch sub {
	case "status":
		rep, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, rep)
		}
		printDBReport(stdout, rep)
		return nil
	}
	events, stopAlerts, err := startAlerts(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopAlerts()
	cl.Notify = events.Event
	if sub == "watch" {
		return watchDB(ctx, cfg, engine, cl, log)
	}
	if sub == "reseed" {
		return reseedDB(ctx, cfg, engine, cl, service, *force, *timeout, stdout)
	}
	unlock, err := lockDatabases(ctx, cfg)
	if err != nil {
		return err
	}
	defer unlock()
	switch sub {
	case "switchover":
		pause, err := cl.Switchover(ctx)
		if err != nil {
			return err
		}
		rep, _ := cl.Status(ctx)
		fmt.Fprintf(stdout, "switched over: %s is the primary (writes paused %s)\n", rep.Primary, pause.Round(time.Millisecond))
	case "failover":
		if err := cl.Failover(ctx, *force); err != nil {
			if errors.Is(err, failover.ErrNotSafe) {
				return fmt.Errorf("%w; check `agent db status`, then `agent db failover --force` to accept the risk", err)
			}
			return err
		}
		cl.StartFenced(ctx) // the old primary, read-only: the watch makes it a replica
		rep, _ := cl.Status(ctx)
		fmt.Fprintf(stdout, "failed over: %s is the primary\n", rep.Primary)
	}
	return nil
}

// reseedDB re-seeds a server from the primary and waits until it replicates again.
func reseedDB(ctx context.Context, cfg config.Config, engine *docker.Client, cl *failover.Cluster, service string, force bool, timeout time.Duration, stdout io.Writer) error {
	unlock, err := lockDatabases(ctx, cfg)
	if err != nil {
		return err
	}
	n, token, err := cl.RequestReseed(ctx, service, force)
	unlock()
	if err != nil {
		return err
	}
	if err := engine.Restart(ctx, n.Container, 30*time.Second); err != nil {
		return fmt.Errorf("re-seed %s: restart it: %w", service, err)
	}
	fmt.Fprintf(stdout, "%s restarted to copy the primary's data again (request %s); its binary logs are kept in its volume as diverged-%s-*\n", n.Container, token, token)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := cl.WaitReseeded(wctx, n, dbLock(cfg), func(s string) { fmt.Fprintln(stdout, s) }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s replicates from the primary again: released\n", n.Container)
	return nil
}

func dbLock(cfg config.Config) failover.FileLock {
	return failover.FileLock{File: filepath.Join(cfg.StateDir, "db.lock")}
}

// lockDatabases takes the database lock (waiting at most 30 s for a failover or switchover in
// progress) for an operation that must not see the roles change.
func lockDatabases(ctx context.Context, cfg config.Config) (func(), error) {
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return dbLock(cfg).Lock(lctx)
}

// dbNode is a server as the agent last resolved it, cached so that a stopped container (whose
// address Docker may not report) is still found.
type dbNode struct {
	Service   string `json:"service"`
	Container string `json:"container"`
	Addr      string `json:"address"`
}

// resolveDBNodes finds the containers of the database services and their addresses on the
// database network, falling back to the last ones found.
func resolveDBNodes(ctx context.Context, cfg config.Config, engine *docker.Client) ([2]dbNode, string, error) {
	var nodes [2]dbNode
	cache := filepath.Join(cfg.StateDir, "db-nodes.json")
	var cached struct {
		Nodes [2]dbNode `json:"nodes"`
		Roles string    `json:"roles_container"`
	}
	if b, err := os.ReadFile(cache); err == nil {
		_ = json.Unmarshal(b, &cached)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	containers, err := engine.ProjectContainers(ctx, cfg.Compose.Project)
	if err != nil {
		return nodes, "", err
	}
	byService := map[string]string{}
	for _, c := range containers {
		byService[c.Service] = c.Name
	}
	network := cfg.Compose.Project + "_" + cfg.Database.Network
	for i, svc := range cfg.Database.Servers {
		nodes[i] = dbNode{Service: svc, Container: byService[svc]}
		if nodes[i].Container != "" {
			if nodes[i].Addr, err = engine.IPOn(ctx, nodes[i].Container, network); err != nil {
				return nodes, "", err
			}
		}
		if nodes[i].Addr == "" && cached.Nodes[i].Service == svc {
			nodes[i] = cached.Nodes[i]
		}
		if nodes[i].Container == "" || nodes[i].Addr == "" {
			return nodes, "", fmt.Errorf("database server %s: no container of project %s with an address on network %s (is the stack up?)", svc, cfg.Compose.Project, network)
		}
	}
	roles := byService[cfg.Database.RolesService]
	if roles == "" {
		roles = cached.Roles
	}
	if roles == "" {
		return nodes, "", fmt.Errorf("database.roles_service %s: no container in project %s", cfg.Database.RolesService, cfg.Compose.Project)
	}
	cached.Nodes, cached.Roles = nodes, roles
	if b, err := json.Marshal(cached); err == nil {
		_ = os.WriteFile(cache, b, 0o600)
	}
	return nodes, roles, nil
}

// newCluster builds the failover cluster of the configuration.
func newCluster(ctx context.Context, cfg config.Config, engine *docker.Client, log *slog.Logger) (*failover.Cluster, func(), error) {
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, nil, err
	}
	nodes, rolesContainer, err := resolveDBNodes(ctx, cfg, engine)
	if err != nil {
		return nil, nil, err
	}
	cl := &failover.Cluster{
		Engine: engine,
		Roles: &failover.VolumeRoles{Volume: engine, Container: rolesContainer, Dir: cfg.Database.RolesDir,
			CacheFile: filepath.Join(cfg.StateDir, "db-roles.json")},
		Log:          log.With("component", "db"),
		ReplUser:     cfg.Database.ReplUser,
		ReplPassword: cfg.Database.ReplPassword,
		Mode:         failover.Mode(cfg.Database.Failover),
		FailAfter:    2,
		Observations: &failover.FileObservations{File: filepath.Join(cfg.StateDir, "db-observation.json")},
	}
	var servers []*mariadb.Server
	for i, n := range nodes {
		s, err := mariadb.Open(n.Addr, cfg.Database.User, cfg.Database.Password, time.Second)
		if err != nil {
			return nil, nil, err
		}
		servers = append(servers, s)
		cl.Nodes[i] = &failover.Node{Service: n.Service, Container: n.Container, Addr: n.Addr, DB: s}
	}
	closeAll := func() {
		for _, s := range servers {
			s.Close()
		}
	}
	return cl, closeAll, nil
}

// watchDB runs the watch until ctx ends: the roles read from the volume first, Docker's death
// events forwarded so that a dead primary is failed over at once.
func watchDB(ctx context.Context, cfg config.Config, engine *docker.Client, cl *failover.Cluster, log *slog.Logger) error {
	if v, ok := cl.Roles.(*failover.VolumeRoles); ok {
		// The roles as the containers see them, not a cache: retried until they can be read.
		for {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			rf, err := v.Refresh(rctx)
			cancel()
			if err == nil {
				log.Info("database watch", "primary", rf.Primary, "quarantined", strings.Join(rf.Quarantined, ","), "mode", cfg.Database.Failover)
				break
			}
			log.Error("database watch: cannot read the roles file; retrying", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
			}
		}
	}
	go forwardDeaths(ctx, engine, cfg.Compose.Project, cl, log)
	cl.Watch(ctx, dbLock(cfg), 500*time.Millisecond)
	return nil
}

// forwardDeaths tells the cluster about its containers' deaths as Docker reports them.
func forwardDeaths(ctx context.Context, engine *docker.Client, project string, cl *failover.Cluster, log *slog.Logger) {
	for ctx.Err() == nil {
		evs, errs := engine.Events(ctx, project)
		for ev := range evs {
			if ev.Action != "die" {
				continue
			}
			for _, n := range cl.Nodes {
				if n.Service == ev.Service {
					cl.Died(n.Container)
				}
			}
		}
		if err := <-errs; err != nil && ctx.Err() == nil {
			log.Warn("database watch: docker events ended; reconnecting", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func printDBReport(w io.Writer, rep failover.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tADDRESS\tROLE\tUP\tREAD-ONLY\tGTID\tIO/SQL\tLAG\tSEMI-SYNC\tNOTE")
	for _, s := range rep.Servers {
		up, ro, io, lag, semi := "no", "-", "-", "-", "-"
		if s.Up {
			up, ro = "yes", yesNo(s.ReadOnly)
			if s.ReplicaIO != "" {
				io = s.ReplicaIO + "/" + s.ReplicaSQL
			}
			if s.LagSeconds != nil {
				lag = fmt.Sprintf("%ds", *s.LagSeconds)
			}
			if s.Role == "primary" {
				semi = map[bool]string{true: "on", false: "OFF"}[s.SemiSync]
			}
		}
		note := s.LastError
		if !s.Up {
			note = s.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Container, s.Addr, s.Role, up, ro, orDash(s.GTID), io, lag, semi, note)
	}
	tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// followRoles returns cfg with backup.primary and backup.replica swapped when the roles file
// names the configured replica the primary (after a failover or a switchover): a backup dumps
// the replica of the moment, a restore loads the primary of the moment. Without a roles file, or
// when the servers cannot be resolved, cfg is returned as it is.
func followRoles(ctx context.Context, cfg config.Config, engine *docker.Client) config.Config {
	nodes, rolesContainer, err := resolveDBNodes(ctx, cfg, engine)
	if err != nil {
		return cfg
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := engine.ReadFile(rctx, rolesContainer, cfg.Database.RolesDir+"/primary")
	if err != nil {
		return cfg
	}
	named := strings.TrimSpace(string(b))
	if named == nodes[1].Addr && cfg.Backup.Primary == nodes[0].Container && cfg.Backup.Replica == nodes[1].Container {
		cfg.Backup.Primary, cfg.Backup.Replica = cfg.Backup.Replica, cfg.Backup.Primary
	}
	return cfg
}

// startAlerts delivers a command's alert events where agent run's go (the alerts section);
// stop delivers the last ones before the command returns.
func startAlerts(ctx context.Context, cfg config.Config, log *slog.Logger) (events *alerts.Logger, stop func(), err error) {
	delivery, err := newAlertDelivery(cfg.Alerts, log, prometheus.NewRegistry())
	if err != nil {
		return nil, nil, err
	}
	dctx, stopDelivery := context.WithCancel(ctx)
	delivered := make(chan struct{})
	go func() { defer close(delivered); delivery.Run(dctx) }()
	return alerts.NewLogger(log, prometheus.NewRegistry()).DeliverTo(delivery), func() { stopDelivery(); <-delivered }, nil
}
