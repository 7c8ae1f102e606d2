// Package setup makes the agent's configuration for the stack of a repository: what `agent
// init` (and so scripts/up, the README's one command) does. It reads the stack's .env with
// Compose's own dotenv rules (compose-go), so a value such as `hastack <alerts@example.com>`
// means what it means to Compose, and writes YAML with a YAML library from the agent's own
// configuration types, validated as the agent will load it.
package setup

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"gopkg.in/yaml.v3"

	"github.com/hastack/hastack/internal/config"
	"github.com/hastack/hastack/internal/receivers"
	"github.com/hastack/hastack/internal/setting"
)

// Options are what the operator chooses (scripts/up's environment); the rest comes from the
// stack's .env and secrets.
type Options struct {
	Repo           string        // the repository; its stack/ is deployed
	Ref            string        // the branch to follow
	StateDir       string        // the agent's state; agent.yml, api-token and backup.yml live there
	Listen         string        // the API's address
	MetricsListen  string        // a second /metrics address ("" for none)
	Poll           time.Duration // how often the repository is fetched
	BackupSchedule string        // cron, for the bundled object store
	DrillSchedule  string
	DBFailover     string // auto or manual
}

// Result is the configuration made, with what it was made from.
type Result struct {
	Config    config.Config
	Env       map[string]string // the stack's .env as Compose reads it
	Receivers receivers.Settings
	Warnings  []string
}

// ReadEnv reads a .env file as Compose does (no variable of the process is looked up: the
// file alone says what it says). A missing file is an empty environment.
func ReadEnv(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	env, err := dotenv.UnmarshalBytesWithLookup(b, func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, &setting.Error{Field: path, Problem: err.Error()}
	}
	return env, nil
}

// Build makes the agent's configuration for the stack in o.Repo.
func Build(o Options) (Result, error) {
	stack := filepath.Join(o.Repo, "stack")
	env, err := ReadEnv(filepath.Join(stack, ".env"))
	if err != nil {
		return Result{}, err
	}
	get := func(k, def string) string {
		if v := strings.TrimSpace(env[k]); v != "" {
			return v
		}
		return def
	}
	recv, err := receivers.Load(env, filepath.Join(stack, "secrets", "alertmanager"))
	if err != nil {
		return Result{}, err
	}
	res := Result{Env: env, Receivers: recv}

	c := config.Default()
	c.Source.URL, c.Source.Ref, c.Source.Path = o.Repo, o.Ref, "stack"
	c.Source.PollInterval = config.Duration(o.Poll)
	c.Compose.Project = "hastack"
	c.Compose.EnvFile = filepath.Join(stack, ".env")
	// Generated secrets, the operator's nginx/ssl certificate and .env stay in the
	// repository's stack/.
	c.SharedDir = stack
	c.StateDir, c.WorkDir = o.StateDir, filepath.Join(o.StateDir, "releases")
	c.Listen, c.MetricsListen = o.Listen, o.MetricsListen
	c.API.TokenFile = filepath.Join(o.StateDir, "api-token")

	manifestKey := filepath.Join(stack, "secrets", "agent", "manifest_key")
	// Point-in-time recovery: the binary log archived beside the dumps, unless the operator's
	// own backup.yml says archive: {enabled: false}.
	c.Backup.Archive.Enabled = true
	if custom := filepath.Join(o.StateDir, "backup.yml"); fileExists(custom) {
		// An off-site store of the operator's own: that file is the whole backup: section.
		b, err := os.ReadFile(custom)
		if err != nil {
			return Result{}, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		var doc struct {
			Backup *config.Backup `yaml:"backup"`
		}
		doc.Backup = &c.Backup
		if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
			return Result{}, &setting.Error{Field: custom, Problem: err.Error()}
		}
		if c.Backup.ManifestKeyFile == "" {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s has no manifest_key_file: backups are unsigned and restores refuse them (docs/backup.md); use %s", custom, manifestKey))
		}
	} else {
		// The bundled object store (on this host: not off-site; see docs/backup.md).
		c.Backup.Schedule, c.Backup.Drill.Schedule = o.BackupSchedule, o.DrillSchedule
		c.Backup.S3.Endpoint = "http://127.0.0.1:" + get("OBJECTSTORE_PORT", "9000")
		c.Backup.S3.Bucket = get("OBJECTSTORE_BUCKET", "backups")
		c.Backup.S3.PathStyle = true
		c.Backup.S3.AccessKeyID = get("OBJECTSTORE_USER", "hastack")
		c.Backup.S3.SecretAccessKeyFile = filepath.Join(stack, "secrets", "objectstore", "secret_key")
		c.Backup.ManifestKeyFile = manifestKey
	}

	// The agent's own alerts: to Alertmanager, and straight to the same receivers when it
	// does not answer.
	c.Alerts.AlertmanagerURL = "http://127.0.0.1:" + get("ALERTMANAGER_PORT", "9093")
	c.Alerts.Link = AlertLink(env)
	if recv.SlackOn() {
		c.Alerts.Slack.WebhookURLFile, c.Alerts.Slack.Channel = recv.SlackWebhookFile, recv.SlackChannel
	}
	if recv.EmailOn() {
		c.Alerts.Email = config.AlertsEmail{
			Smarthost: recv.Smarthost, From: recv.EmailFrom, To: recv.EmailTo,
			Username: recv.SMTPUsername, PasswordFile: recv.SMTPPasswordFile, RequireTLS: recv.RequireTLS,
		}
	}

	// The database watch: automatic failover (docs/failover.md).
	c.Database.Failover = o.DBFailover
	c.Database.PasswordFile = filepath.Join(stack, "secrets", "db", "agent_password")
	c.Database.ReplPasswordFile = filepath.Join(stack, "secrets", "db", "repl_password")

	res.Config = c
	return res, nil
}

// agentDashboard is the path of the Grafana dashboard "Agent" (stack/grafana/dashboards/agent.json,
// uid hastack-agent): what `agent status` tells, without the API token.
const agentDashboard = "/d/hastack-agent"

// AlertLink is the link in the agent's own alerts (alerts.link) for the stack's .env:
// AGENT_ALERT_LINK when set, else the Agent dashboard on Grafana, which nginx serves with TLS
// on GRAFANA_PORT (default 3000), at the first name of TLS_HOSTNAMES (names the certificate is
// made for, the host as people reach it), else localhost. "" when Grafana does not run
// (COMPOSE_PROFILES without "upstream"): no link rather than one to nothing.
func AlertLink(env map[string]string) string {
	get := func(k, def string) string {
		if v := strings.TrimSpace(env[k]); v != "" {
			return v
		}
		return def
	}
	if v := get("AGENT_ALERT_LINK", ""); v != "" {
		return v // the agent's validation judges it (alerts.link)
	}
	if !slices.Contains(strings.Split(strings.ReplaceAll(get("COMPOSE_PROFILES", ""), " ", ""), ","), "upstream") {
		return ""
	}
	host := "localhost"
	for _, name := range strings.Split(get("TLS_HOSTNAMES", ""), ",") {
		if name = strings.TrimSpace(name); name != "" {
			host = name
			break
		}
	}
	return "https://" + net.JoinHostPort(host, get("GRAFANA_PORT", "3000")) + agentDashboard
}

// Check loads the configuration as the agent will (its secret files read, every setting
// validated): the files it names must exist.
func (r Result) Check() error {
	b, err := encode(r.Config)
	if err != nil {
		return err
	}
	_, err = config.LoadFrom(bytes.NewReader(b), func(string) string { return "" }, os.ReadFile)
	return err
}

// Write writes c to path as YAML, atomically, readable by its owner only.
func Write(path string, c config.Config) error {
	b, err := encode(c)
	if err != nil {
		return err
	}
	head := "# Written by `agent init` (scripts/up) from the stack's .env and secrets; run it again after\n" +
		"# changing them. See docs/agent.md for every setting.\n"
	return writeFile(path, append([]byte(head), b...))
}

// encode writes c as YAML. The agent expands ${VAR} in the values it reads, so a value that
// holds "${" (a password, a channel) is written as "$${", which reads back as itself.
func encode(c config.Config) ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return nil, fmt.Errorf("encode the configuration: %w", err)
	}
	escapeExpansion(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("encode the configuration: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func escapeExpansion(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode {
		n.Value = strings.ReplaceAll(n.Value, "${", "$${")
	}
	for _, c := range n.Content {
		escapeExpansion(c)
	}
}

// EnsureKey makes a file holding 32 random bytes in hex (an API token, a manifest key) unless
// it has content already; its directory is made 0700, the file 0600.
func EnsureKey(path string) (made bool, err error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return false, os.Chmod(path, 0o600)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return false, err
	}
	return true, writeFile(path, []byte(hex.EncodeToString(b)+"\n"))
}

func writeFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Summary is what scripts/up prints once the stack is up: where each part is reached.
func (r Result) Summary() string {
	get := func(k, def string) string {
		if v := strings.TrimSpace(r.Env[k]); v != "" {
			return v
		}
		return def
	}
	c := r.Config
	port := ":" + get("HTTPS_PORT", "443")
	if port == ":443" {
		port = ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "The stack is up, deployed by the agent from %s. Commit to stack/ to deploy a change.\n", c.Source.Ref)
	fmt.Fprintf(&b, "  Web service   https://localhost%s/   (self-signed certificate unless stack/nginx/ssl/ has yours)\n", port)
	fmt.Fprintf(&b, "  Prometheus    http://%s:%s/\n", get("PROMETHEUS_BIND", "127.0.0.1"), get("PROMETHEUS_PORT", "9090"))
	fmt.Fprintf(&b, "  Alertmanager  http://%s:%s/   (receivers: slack %v, e-mail %v; docs/alerts.md)\n",
		get("ALERTMANAGER_BIND", "127.0.0.1"), get("ALERTMANAGER_PORT", "9093"), r.Receivers.SlackOn(), r.Receivers.EmailOn())
	fmt.Fprintf(&b, "  Agent         docker exec hastack-agent agent status     (metrics: http://%s/metrics)\n", c.Listen)
	if c.Backup.Schedule != "" {
		fmt.Fprintf(&b, "  Backups       docker exec hastack-agent agent backups    (schedule: %s; now: agent backup)\n", c.Backup.Schedule)
	}
	if strings.Contains(get("COMPOSE_PROFILES", ""), "upstream") {
		fmt.Fprintf(&b, "  Grafana       https://localhost:%s/   user admin, password: sudo cat stack/secrets/grafana/admin_password\n", get("GRAFANA_PORT", "3000"))
	}
	b.WriteString("  MariaDB root password: sudo cat stack/secrets/db/root_password\n")
	return b.String()
}
