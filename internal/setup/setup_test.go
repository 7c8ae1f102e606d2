package setup

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/config"
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
