// Package config owns the agent's configuration: its shape, its defaults, how it is read from a
// YAML file and the environment, and the rules that make it valid.
//
// Load builds a Config in this order:
//
//  1. Default().
//
//  2. The YAML file, if any. Its values are expanded once parsed: ${VAR} in a value is
//     replaced by the environment variable's value (empty when unset), which stays inside that
//     value (a newline in it adds no key); $${ stands for a literal ${, any other $ is kept.
//     Unknown keys are an error that gives the line.
//
//  3. Environment overrides, each replacing one setting when set and non-empty:
//
//     HASTACK_AGENT_SOURCE_URL        source.url
//     HASTACK_AGENT_SOURCE_REF        source.ref
//     HASTACK_AGENT_SOURCE_PATH       source.path
//     HASTACK_AGENT_LISTEN            listen
//     HASTACK_AGENT_STATE_DIR         state_dir
//     HASTACK_AGENT_WORK_DIR          work_dir
//     HASTACK_AGENT_COMPOSE_PROJECT   compose.project
//
//  4. Secrets. Each is given either as a value or as a file holding the value (*_FILE); setting
//     both the value and its _FILE variable is an error. A variable overrides the file's setting.
//
//     HASTACK_AGENT_GIT_TOKEN,      HASTACK_AGENT_GIT_TOKEN_FILE       source.token_file
//     HASTACK_AGENT_WEBHOOK_SECRET, HASTACK_AGENT_WEBHOOK_SECRET_FILE  webhook.secret_file
//     HASTACK_AGENT_API_TOKEN,      HASTACK_AGENT_API_TOKEN_FILE       api.token_file
//     HASTACK_AGENT_SLACK_WEBHOOK_URL, HASTACK_AGENT_SLACK_WEBHOOK_URL_FILE  alerts.slack.webhook_url_file
//     HASTACK_AGENT_SMTP_PASSWORD,  HASTACK_AGENT_SMTP_PASSWORD_FILE   alerts.email.password_file
//     HASTACK_AGENT_DB_PASSWORD,    HASTACK_AGENT_DB_PASSWORD_FILE     database.password_file
//     HASTACK_AGENT_DB_REPL_PASSWORD, HASTACK_AGENT_DB_REPL_PASSWORD_FILE  database.repl_password_file
//
//     Files are read once, at load; one trailing newline (\n or \r\n) is trimmed and an empty
//     file is an error. The values end up in Source.Token, Webhook.Secret, API.Token,
//     Alerts.Slack.WebhookURL and Alerts.Email.Password, which are never written out: String
//     and Redacted hide them.
//
//  5. Validate, whose errors are *FieldError values naming the offending setting.
package config

import (
	"fmt"
	"net/url"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hastack/hastack/internal/gitsource"
)

// Config is the whole configuration of the agent.
type Config struct {
	Source   Source  `yaml:"source"`
	Compose  Compose `yaml:"compose"`
	Drift    Drift   `yaml:"drift"`
	StateDir string  `yaml:"state_dir"` // state.json and the git mirror live here
	// WorkDir receives one exported tree per deployed commit, <work_dir>/<commit>. It must be
	// absolute: bind mounts in the stack resolve on the host, so the agent's container mounts
	// this directory at the same path.
	WorkDir string `yaml:"work_dir"`
	// SharedDir holds what the stack generates or the operator adds and git ignores (secrets/,
	// nginx/ssl/, .env): each release links those paths here. Default: <work_dir>/shared. The
	// embedded default sets it to the repository's own stack/ directory, so the seed README's
	// paths (stack/secrets, stack/nginx/ssl) stay where they are.
	SharedDir string `yaml:"shared_dir"`
	Listen    string `yaml:"listen"` // address of /metrics, /healthz, the API and the webhook
	// MetricsListen is a second address serving /metrics and /healthz only, e.g. the Docker
	// bridge's gateway address, where the stack's Prometheus scrapes the agent; "" = none.
	MetricsListen string   `yaml:"metrics_listen"`
	History       int      `yaml:"history"` // deploys kept in state
	Webhook       Webhook  `yaml:"webhook"`
	API           API      `yaml:"api"`
	Backup        Backup   `yaml:"backup"`
	Alerts        Alerts   `yaml:"alerts"`
	Database      Database `yaml:"database"`
}

// Database is the watch over the MariaDB pair and its failover (docs/failover.md). It is on
// when the agent's database password is set (password_file or HASTACK_AGENT_DB_PASSWORD).
type Database struct {
	// Failover is what the watch does about a dead primary: auto (promote the replica when no
	// acknowledged write can be lost), manual (alert only) or off (no watch).
	Failover string `yaml:"failover"`
	// Servers are the two Compose services, the initial primary first.
	Servers []string `yaml:"servers"`
	// Network is the Compose network (its name in the compose file) where the agent reaches
	// the servers and the servers reach each other.
	Network string `yaml:"network"`
	// User is the agent's own account: replication administration, no data.
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
	// ReplUser is the account replicas connect to their primary with.
	ReplUser         string `yaml:"repl_user"`
	ReplPasswordFile string `yaml:"repl_password_file"`
	// RolesService mounts, writable at RolesDir, the volume where the roles file lives (read by
	// the database containers at their start and by the web servers).
	RolesService string `yaml:"roles_service"`
	RolesDir     string `yaml:"roles_dir"`

	Password     string `yaml:"-"` // read at load
	ReplPassword string `yaml:"-"`
}

// Enabled tells whether the agent watches the databases.
func (d Database) Enabled() bool { return d.Password != "" && d.Failover != "off" }

// Alerts is where the agent's own alert events (DeployFailed, BackupFailed, ...) go:
// Alertmanager's API, and straight to Slack and e-mail while Alertmanager cannot be reached.
type Alerts struct {
	// AlertmanagerURL is Alertmanager's base URL; the agent posts to <url>/api/v2/alerts.
	// "" turns posting off: events then go to Slack and e-mail directly.
	AlertmanagerURL string `yaml:"alertmanager_url"`
	// ResendInterval is how often firing alerts are posted again, so that Alertmanager keeps
	// them active, and how often a failed delivery is retried.
	ResendInterval Duration `yaml:"resend_interval"`
	// RepeatInterval reminds Slack and e-mail directly of an alert still firing while
	// Alertmanager stays unreachable; 0 sends each change once only.
	RepeatInterval Duration `yaml:"repeat_interval"`
	// Link is put in every alert the agent posts (Alertmanager's generatorURL) or sends
	// directly (a "Link:" line in Slack and e-mail): where a person sees what `agent status`
	// tells without the API token, the Grafana dashboard "Agent", e.g.
	// https://ha.example.com:3000/d/hastack-agent. An absolute http(s) URL without a user or
	// password (it reaches Slack and e-mail as written); "" for none. `agent init` sets it from
	// the stack's .env: AGENT_ALERT_LINK, else https://<first name of TLS_HOSTNAMES, else
	// localhost>:<GRAFANA_PORT>/d/hastack-agent when Grafana runs.
	Link  string      `yaml:"link"`
	Slack AlertsSlack `yaml:"slack"`
	Email AlertsEmail `yaml:"email"`
}

// AlertsSlack is the Slack incoming webhook used when Alertmanager cannot be reached: the
// same one Alertmanager uses (stack/secrets/alertmanager/slack_webhook_url).
type AlertsSlack struct {
	WebhookURLFile string `yaml:"webhook_url_file"`
	Channel        string `yaml:"channel"` // "" = the webhook's own channel

	WebhookURL string `yaml:"-"` // a secret: read at load, never logged
}

// AlertsEmail is the SMTP server and addresses used for critical alerts when Alertmanager
// cannot be reached.
type AlertsEmail struct {
	Smarthost    string   `yaml:"smarthost"` // host:port; port 465 is TLS from the start
	From         string   `yaml:"from"`
	To           []string `yaml:"to"`
	Username     string   `yaml:"username"` // PLAIN authentication when set
	PasswordFile string   `yaml:"password_file"`
	// RequireTLS refuses a server that does not offer STARTTLS; false only for a local relay.
	RequireTLS bool `yaml:"require_tls"`

	Password string `yaml:"-"` // read at load
}

// Backup is where and how `agent backup` dumps the database.
type Backup struct {
	// Schedule runs backups inside `agent run`: a cron expression ("0 3 * * *") or a
	// descriptor (@daily); "" leaves scheduling off (`agent backup` still works).
	Schedule string `yaml:"schedule"`
	// TimeZone of the schedule and of retention's days, e.g. "Asia/Seoul"; "" is local time.
	TimeZone      string   `yaml:"time_zone"`
	Replica       string   `yaml:"replica"`        // container dumped by default
	Primary       string   `yaml:"primary"`        // used when the replica is not healthy
	PasswordFile  string   `yaml:"password_file"`  // the root password's file inside those containers
	AgeRecipients []string `yaml:"age_recipients"` // encrypt to these age public keys when set
	// AgeIdentityFile holds the age identities (private keys) that decrypt encrypted backups,
	// for restore drills on this host; `agent restore --identity` also takes one.
	AgeIdentityFile string `yaml:"age_identity_file"`
	// ManifestKeyFile holds the key (random text, one line) that signs every backup's manifest
	// (HMAC-SHA256) and checks it before a restore or a drill: the store never sees it, so
	// whoever can write to the bucket cannot forge a backup that the agent restores. Later lines
	// are older keys that still check (rotation). "": backups are unsigned, and restores and
	// drills refuse them without --allow-unsigned.
	ManifestKeyFile string    `yaml:"manifest_key_file"`
	S3              S3        `yaml:"s3"`
	Retention       Retention `yaml:"retention"`
	Drill           Drill     `yaml:"drill"`
	Archive         Archive   `yaml:"archive"`
}

// Archive is the continuous binlog archive, the half of point-in-time recovery after the last
// dump: `agent run` follows the primary's binary log as a replica does (with the agent's
// database account, database.user, which needs REPLICATION SLAVE) and stores it beside the
// dumps in segments, encrypted and signed like them. It needs the database settings and a store.
type Archive struct {
	Enabled bool `yaml:"enabled"`
	// FlushInterval is how long a transaction waits at most before its segment is stored: the
	// archive's lag, and what a disaster can lose (default 1s).
	FlushInterval Duration `yaml:"flush_interval"`
	// ServerID is the archive's replica server id: unique among the servers and their
	// replicas (the stack's are 1 and 2; default 4001).
	ServerID uint32 `yaml:"server_id"`
}

// Drill is the restore drills' schedule: the newest complete backup is restored into a
// throw-away MariaDB container and compared with its manifest.
type Drill struct {
	// Schedule is a cron expression or descriptor, in backup.time_zone; "" leaves drills off
	// (`agent drill` still works).
	Schedule string `yaml:"schedule"`
}

// Retention is the grandfather-father-son policy applied after each backup: the newest
// complete backup and uploads in progress are always kept.
type Retention struct {
	KeepLast int `yaml:"keep_last"`
	Daily    int `yaml:"daily"`
	Weekly   int `yaml:"weekly"`
	Monthly  int `yaml:"monthly"`
}

// S3 is the object store backups go to: AWS, or any S3-compatible endpoint.
type S3 struct {
	Endpoint            string `yaml:"endpoint"` // "" = AWS
	Region              string `yaml:"region"`
	Bucket              string `yaml:"bucket"`
	Prefix              string `yaml:"prefix"`
	PathStyle           bool   `yaml:"path_style"`
	AccessKeyID         string `yaml:"access_key_id"` // "" = the usual AWS chain
	SecretAccessKeyFile string `yaml:"secret_access_key_file"`
	CAFile              string `yaml:"ca_file"`
	// PartSizeMiB is the multipart upload's part size: memory holds three parts, and S3 allows
	// 10,000 parts, so it bounds one backup to 10,000 x this (0: 5 MiB, 50 GiB).
	PartSizeMiB int `yaml:"part_size_mib"`

	SecretAccessKey string `yaml:"-"` // read at load
}

// Source is the git repository the agent follows.
type Source struct {
	URL  string `yaml:"url"`  // https://, http://, ssh://, user@host:path, file:// or an absolute path
	Ref  string `yaml:"ref"`  // branch, tag or full commit id
	Path string `yaml:"path"` // subdirectory holding the compose project; "." for the root
	// PollInterval is how often the source is fetched; 0 disables polling, leaving the webhook
	// and `agent sync`.
	PollInterval   Duration `yaml:"poll_interval"`
	Username       string   `yaml:"username"`         // https
	TokenFile      string   `yaml:"token_file"`       // https
	SSHKeyFile     string   `yaml:"ssh_key_file"`     // ssh
	KnownHostsFile string   `yaml:"known_hosts_file"` // ssh; required for ssh URLs

	Token string `yaml:"-"` // read from TokenFile or the environment at load
}

// GitOptions are the source's settings as gitsource takes them, its mirror in cacheDir.
// gitsource validates them: it is the one judge of URLs, refs and credentials.
func (s Source) GitOptions(cacheDir string) gitsource.Options {
	return gitsource.Options{
		URL: s.URL, Ref: s.Ref, Username: s.Username, Token: s.Token,
		SSHKeyFile: s.SSHKeyFile, KnownHostsFile: s.KnownHostsFile, CacheDir: cacheDir,
	}
}

// Compose is how the stack is applied.
type Compose struct {
	Project       string   `yaml:"project"`        // compose project name
	Files         []string `yaml:"files"`          // relative to Source.Path
	HealthTimeout Duration `yaml:"health_timeout"` // how long a deploy may take to become healthy
	EnvFile       string   `yaml:"env_file"`       // optional .env file kept outside git
}

// DriftMode says what the agent does about containers changed by hand.
type DriftMode string

// The drift modes.
const (
	DriftRestore DriftMode = "restore" // restore the committed state after the grace period
	DriftReport  DriftMode = "report"  // log and count, change nothing
	DriftOff     DriftMode = "off"     // do not look
)

// Drift is the watch over containers changed by hand.
type Drift struct {
	Mode DriftMode `yaml:"mode"`
	// GracePeriod is how long a drifted container is left alone before it is restored, so that
	// `docker stop web1` stays observable.
	GracePeriod   Duration `yaml:"grace_period"`
	CheckInterval Duration `yaml:"check_interval"` // periodic comparison, besides Docker events
	// RestoreRemoved: with mode restore, a stack with no container left (docker compose down)
	// is recreated like any drift; by default the agent alerts (StackRemoved) and waits.
	RestoreRemoved bool `yaml:"restore_removed"`
}

// Webhook is the push webhook endpoint, disabled when no secret is set.
type Webhook struct {
	SecretFile string `yaml:"secret_file"`

	Secret string `yaml:"-"` // HMAC key (GitHub, Gitea) or token (GitLab), read at load
}

// API is the agent's own HTTP API.
type API struct {
	// TokenFile holds the bearer token that POST /api/v1/sync requires; a token is mandatory
	// when Listen is not a loopback address.
	TokenFile string `yaml:"token_file"`

	Token string `yaml:"-"` // read at load
}

// Default returns the configuration used for every setting that the file and the environment
// leave out. Its Source.URL is empty, so it does not validate on its own.
func Default() Config {
	return Config{
		Source: Source{
			Ref:          "main",
			Path:         "stack",
			PollInterval: Duration(60 * time.Second),
		},
		Compose: Compose{
			Project:       "hastack",
			Files:         []string{"docker-compose.yml"},
			HealthTimeout: Duration(5 * time.Minute),
		},
		Drift: Drift{
			Mode:          DriftRestore,
			GracePeriod:   Duration(5 * time.Minute),
			CheckInterval: Duration(30 * time.Second),
		},
		StateDir: "/var/lib/hastack-agent",
		WorkDir:  "/var/lib/hastack-agent/releases",
		Listen:   "127.0.0.1:9700",
		History:  20,
		Backup: Backup{
			Replica: "db_slave", Primary: "db_master", PasswordFile: "/run/secrets/root_password",
			S3:        S3{Region: "us-east-1", Prefix: "hastack/"},
			Retention: Retention{KeepLast: 7, Daily: 7, Weekly: 4, Monthly: 6},
			Archive:   Archive{FlushInterval: Duration(time.Second), ServerID: 4001},
		},
		Database: Database{
			Failover: "auto", Servers: []string{"db_master", "db_slave"}, Network: "data",
			User: "agent", ReplUser: "repl", RolesService: "db-health", RolesDir: "/var/lib/hastack-lb",
		},
		Alerts: Alerts{
			AlertmanagerURL: "http://127.0.0.1:9093",
			ResendInterval:  Duration(time.Minute),
			RepeatInterval:  Duration(4 * time.Hour),
			Email:           AlertsEmail{RequireTLS: true},
		},
	}
}

// redactedValue replaces every secret in Redacted.
const redactedValue = "REDACTED"

// Redacted returns a copy of c that is safe to print or log: secret values are replaced by
// "REDACTED" and a password in the source URL or the Alertmanager URL is masked.
func (c Config) Redacted() Config {
	r := c
	r.Compose.Files = append([]string(nil), c.Compose.Files...)
	r.Backup.AgeRecipients = append([]string(nil), c.Backup.AgeRecipients...)
	r.Alerts.Email.To = append([]string(nil), c.Alerts.Email.To...)
	if r.Source.Token != "" {
		r.Source.Token = redactedValue
	}
	if r.Webhook.Secret != "" {
		r.Webhook.Secret = redactedValue
	}
	if r.API.Token != "" {
		r.API.Token = redactedValue
	}
	if r.Backup.S3.SecretAccessKey != "" {
		r.Backup.S3.SecretAccessKey = redactedValue
	}
	if r.Alerts.Slack.WebhookURL != "" {
		r.Alerts.Slack.WebhookURL = redactedValue
	}
	if r.Alerts.Email.Password != "" {
		r.Alerts.Email.Password = redactedValue
	}
	r.Database.Servers = append([]string(nil), c.Database.Servers...)
	if r.Database.Password != "" {
		r.Database.Password = redactedValue
	}
	if r.Database.ReplPassword != "" {
		r.Database.ReplPassword = redactedValue
	}
	if u, err := url.Parse(c.Source.URL); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			r.Source.URL = u.Redacted()
		}
	}
	if u, err := url.Parse(c.Alerts.AlertmanagerURL); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			r.Alerts.AlertmanagerURL = u.Redacted()
		}
	}
	return r
}

// String renders the configuration as YAML without its secrets, so that printing or logging a
// Config never leaks one.
func (c Config) String() string {
	out, err := yaml.Marshal(c.Redacted())
	if err != nil {
		return fmt.Sprintf("config: %v", err)
	}
	return string(out)
}

// Duration is a time.Duration written in Go syntax ("90s", "5m"); a bare 0 is accepted too.
type Duration time.Duration

// UnmarshalYAML reads a duration in Go syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 90s or 5m", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q: want Go syntax such as 90s or 5m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration in Go syntax.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String returns the duration in Go syntax.
func (d Duration) String() string { return time.Duration(d).String() }
