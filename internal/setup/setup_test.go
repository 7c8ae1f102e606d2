package setup

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/config"
	"github.com/hastack/hastack/internal/setting"
)

// The .env the operator wrote, exactly as docs/alerts.md shows it (a sender with a
// display name, which a shell that sources .env cannot read), makes a configuration the agent
// loads, with its e-mail fallback, and YAML written by a library (a quote or a newline in a
// value stays inside it).
func TestBuildWritesAConfigurationTheAgentLoads(t *testing.T) {
	repo := t.TempDir()
	stack := filepath.Join(repo, "stack")
	os.MkdirAll(filepath.Join(stack, "secrets", "alertmanager"), 0o700)
	env := `# receivers
ALERTMANAGER_PORT=19093
OBJECTSTORE_PORT=19000
ALERT_SLACK_CHANNEL='#alerts: "ops" ${x}'  
ALERT_EMAIL_TO=ops@example.com,oncall@example.com
ALERT_EMAIL_FROM=hastack <alerts@example.com>
ALERT_SMTP_SMARTHOST=smtp.example.com:587
ALERT_SMTP_USERNAME=alerts@example.com
HTTPS_PORT=8443
COMPOSE_PROFILES=upstream
`
	os.WriteFile(filepath.Join(stack, ".env"), []byte(env), 0o644)
	os.WriteFile(filepath.Join(stack, "secrets", "alertmanager", "slack_webhook_url"), []byte("https://hooks.slack.com/services/T/B/X\n"), 0o600)
	os.WriteFile(filepath.Join(stack, "secrets", "alertmanager", "smtp_password"), []byte("pw\n"), 0o600)
	state := filepath.Join(t.TempDir(), "state")
	os.MkdirAll(state, 0o700)

	res, err := Build(Options{Repo: repo, Ref: "main", StateDir: state, Listen: "127.0.0.1:9700", Poll: 10 * time.Second,
		BackupSchedule: "0 3 * * *", DrillSchedule: "0 5 * * 0", DBFailover: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{res.Config.API.TokenFile, res.Config.Backup.ManifestKeyFile, res.Config.Backup.S3.SecretAccessKeyFile,
		res.Config.Database.PasswordFile, res.Config.Database.ReplPasswordFile} {
		if _, err := EnsureKey(key); err != nil {
			t.Fatal(err)
		}
	}
	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(state, "agent.yml")
	if err := Write(path, res.Config); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(path)
	if err != nil {
		t.Fatalf("the agent cannot load what init wrote: %v", err)
	}
	e := got.Alerts.Email
	if e.From != "hastack <alerts@example.com>" || !slices.Equal(e.To, []string{"ops@example.com", "oncall@example.com"}) ||
		e.Username != "alerts@example.com" || e.Password != "pw" || got.Alerts.Slack.Channel != `#alerts: "ops" ${x}` {
		t.Fatalf("alerts %+v", got.Alerts)
	}
	if got.Alerts.AlertmanagerURL != "http://127.0.0.1:19093" || got.Backup.S3.Endpoint != "http://127.0.0.1:19000" ||
		got.Source.URL != repo || got.SharedDir != stack || got.Compose.EnvFile != filepath.Join(stack, ".env") {
		t.Fatalf("config %+v", got)
	}
	if got.Alerts.Link != "https://localhost:3000/d/hastack-agent" {
		t.Errorf("alerts.link %q, want the Agent dashboard on localhost:3000", got.Alerts.Link)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("agent.yml mode %o, want 0600", fi.Mode().Perm())
	}
	if s := res.Summary(); !strings.Contains(s, "https://localhost:8443/") || !strings.Contains(s, "Grafana") {
		t.Fatalf("summary:\n%s", s)
	}
}

// A receiver setting that is wrong stops init with the setting's name, before anything is
// written.
func TestBuildRefusesABadReceiver(t *testing.T) {
	repo := t.TempDir()
	os.MkdirAll(filepath.Join(repo, "stack"), 0o700)
	os.WriteFile(filepath.Join(repo, "stack", ".env"), []byte("ALERT_EMAIL_TO=ops@example.com\n"), 0o644)
	_, err := Build(Options{Repo: repo, Ref: "main", StateDir: t.TempDir(), Listen: "127.0.0.1:9700", Poll: 10 * time.Second, DBFailover: "auto"})
	if err == nil || !strings.Contains(err.Error(), "ALERT_EMAIL_FROM") {
		t.Fatalf("Build = %v, want the missing sender named", err)
	}
}

// The link in the agent's alerts opens the Agent dashboard where people reach Grafana: the
// first name of TLS_HOSTNAMES (the certificate's), else localhost, on GRAFANA_PORT; or what
// AGENT_ALERT_LINK says; none when Grafana does not run.
func TestAlertLink(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"defaults", map[string]string{"COMPOSE_PROFILES": "upstream"}, "https://localhost:3000/d/hastack-agent"},
		{"first TLS name and the port", map[string]string{"COMPOSE_PROFILES": "upstream", "TLS_HOSTNAMES": " ha.example.com , 203.0.113.5",
			"GRAFANA_PORT": "8300"}, "https://ha.example.com:8300/d/hastack-agent"},
		{"empty names skipped", map[string]string{"COMPOSE_PROFILES": "upstream", "TLS_HOSTNAMES": ",,203.0.113.5"},
			"https://203.0.113.5:3000/d/hastack-agent"},
		{"IPv6", map[string]string{"COMPOSE_PROFILES": "upstream", "TLS_HOSTNAMES": "2001:db8::5"}, "https://[2001:db8::5]:3000/d/hastack-agent"},
		{"override", map[string]string{"COMPOSE_PROFILES": "upstream", "TLS_HOSTNAMES": "ha.example.com",
			"AGENT_ALERT_LINK": " https://grafana.example.com/d/hastack-agent "}, "https://grafana.example.com/d/hastack-agent"},
		{"override without Grafana", map[string]string{"AGENT_ALERT_LINK": "https://status.example.com/"}, "https://status.example.com/"},
		{"no Grafana, no link", map[string]string{"COMPOSE_PROFILES": "", "TLS_HOSTNAMES": "ha.example.com"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := AlertLink(tt.env); got != tt.want {
				t.Errorf("AlertLink = %q, want %q", got, tt.want)
			}
		})
	}
}

// A bad AGENT_ALERT_LINK stops init before anything is written, by the agent's own rule for
// alerts.link, and the message says where the value came from.
func TestBuildRefusesABadAlertLink(t *testing.T) {
	repo := t.TempDir()
	stack := filepath.Join(repo, "stack")
	os.MkdirAll(stack, 0o700)
	os.WriteFile(filepath.Join(stack, ".env"), []byte("AGENT_ALERT_LINK=grafana.example.com:3000/d/hastack-agent\n"), 0o644)
	state := t.TempDir()
	res, err := Build(Options{Repo: repo, Ref: "main", StateDir: state, Listen: "127.0.0.1:9700", Poll: 10 * time.Second, DBFailover: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{res.Config.API.TokenFile, res.Config.Backup.ManifestKeyFile, res.Config.Backup.S3.SecretAccessKeyFile,
		res.Config.Database.PasswordFile, res.Config.Database.ReplPasswordFile} {
		if _, err := EnsureKey(key); err != nil {
			t.Fatal(err)
		}
	}
	err = res.Check()
	var fe *setting.Error
	if !errors.As(err, &fe) || fe.Field != "alerts.link" || !strings.Contains(err.Error(), "AGENT_ALERT_LINK") {
		t.Fatalf("Check = %v, want a setting.Error for alerts.link naming AGENT_ALERT_LINK", err)
	}
}
