package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// fakeEnv is an environment for LoadFrom.
type fakeEnv map[string]string

func (e fakeEnv) get(name string) string { return e[name] }

// fakeFiles is a file system for LoadFrom's secret files.
type fakeFiles map[string]string

func (f fakeFiles) read(name string) ([]byte, error) {
	s, ok := f[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return []byte(s), nil
}

// loadFixture loads testdata/<name> (none when name is "") with env and files.
func loadFixture(t *testing.T, name string, env fakeEnv, files fakeFiles) (Config, error) {
	t.Helper()
	if name == "" {
		return LoadFrom(nil, env.get, files.read)
	}
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return LoadFrom(f, env.get, files.read)
}

func TestDefault(t *testing.T) {
	c := Default()
	c.Source.URL = "file:///srv/hastack.git"
	if err := c.Validate(); err != nil {
		t.Fatalf("Default() with a URL does not validate: %v", err)
	}
	if err := Default().Validate(); err == nil {
		t.Fatal("Default() without a URL validates")
	}
}

func TestLoad(t *testing.T) {
	withURL := func(edit func(*Config)) Config {
		c := Default()
		c.Source.URL = "file:///srv/hastack.git"
		if edit != nil {
			edit(&c)
		}
		return c
	}
	tests := []struct {
		name    string
		fixture string
		env     fakeEnv
		files   fakeFiles
		want    Config
	}{
		{
			name:    "minimal file keeps the defaults",
			fixture: "minimal.yml",
			want:    withURL(nil),
		},
		{
			name:    "comments only",
			fixture: "empty.yml",
			env:     fakeEnv{"HASTACK_AGENT_SOURCE_URL": "file:///srv/hastack.git"},
			want:    withURL(nil),
		},
		{
			name: "no file: defaults and environment",
			env:  fakeEnv{"HASTACK_AGENT_SOURCE_URL": "file:///srv/hastack.git"},
			want: withURL(nil),
		},
		{
			name:    "zero poll interval disables polling",
			fixture: "zero_poll.yml",
			want:    withURL(func(c *Config) { c.Source.PollInterval = 0 }),
		},
		{
			name:    "full file",
			fixture: "full.yml",
			files: fakeFiles{
				"/run/secrets/git_token":      "ghp_git\n",
				"/run/secrets/webhook_secret": "hook secret\r\n",
				"/run/secrets/api_token":      "api-token",
			},
			want: Config{
				Source: Source{
					URL:          "https://git.example.com/ops/hastack.git",
					Ref:          "v1.4.0",
					Path:         "deploy/stack",
					PollInterval: Duration(90 * time.Second),
					Username:     "deploy",
					TokenFile:    "/run/secrets/git_token",
					Token:        "ghp_git",
				},
				Compose: Compose{
					Project:       "hastack_prod",
					Files:         []string{"docker-compose.yml", "docker-compose.prod.yml"},
					HealthTimeout: Duration(10 * time.Minute),
					EnvFile:       "/etc/hastack/stack.env",
				},
				Drift: Drift{
					Mode:          DriftReport,
					GracePeriod:   Duration(2 * time.Minute),
					CheckInterval: Duration(15 * time.Second),
				},
				StateDir: "/srv/agent",
				WorkDir:  "/srv/agent/releases",
				Listen:   "0.0.0.0:9800",
				History:  50,
				Webhook:  Webhook{SecretFile: "/run/secrets/webhook_secret", Secret: "hook secret"},
				API:      API{TokenFile: "/run/secrets/api_token", Token: "api-token"},
				Backup:   Default().Backup,
				Alerts:   Default().Alerts,
				Database: Default().Database,
			},
		},
		{
			name:    "alerts: every setting, secrets from files",
			fixture: "alerts.yml",
			files: fakeFiles{
				"/srv/stack/secrets/alertmanager/slack_webhook_url": "https://hooks.slack.com/services/T0/B0/XXXX\n",
				"/srv/stack/secrets/alertmanager/smtp_password":     "smtp secret\n",
			},
			want: withURL(func(c *Config) {
				c.Alerts = Alerts{
					AlertmanagerURL: "https://am.example.com:9443/prefix",
					ResendInterval:  Duration(30 * time.Second),
					RepeatInterval:  Duration(2 * time.Hour),
					Link:            "https://ha.example.com:3000/d/hastack-agent",
					Slack: AlertsSlack{
						WebhookURLFile: "/srv/stack/secrets/alertmanager/slack_webhook_url",
						Channel:        "#alerts",
						WebhookURL:     "https://hooks.slack.com/services/T0/B0/XXXX",
					},
					Email: AlertsEmail{
						Smarthost:    "smtp.example.com:587",
						From:         "hastack <alerts@example.com>",
						To:           []string{"ops@example.com", "Night Shift <night@example.com>"},
						Username:     "alerts@example.com",
						PasswordFile: "/srv/stack/secrets/alertmanager/smtp_password",
						RequireTLS:   false,
						Password:     "smtp secret",
					},
				}
			}),
		},
		{
			name:    "alerts: Alertmanager off, Slack from the environment",
			fixture: "alerts_off.yml",
			env:     fakeEnv{"HASTACK_AGENT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/ENV"},
			want: withURL(func(c *Config) {
				c.Alerts.AlertmanagerURL = ""
				c.Alerts.Slack.WebhookURL = "https://hooks.slack.com/services/T0/B0/ENV"
			}),
		},
		{
			name:    "alerts: secret files named in the environment",
			fixture: "alerts.yml",
			env: fakeEnv{
				"HASTACK_AGENT_SLACK_WEBHOOK_URL_FILE": "/s/slack",
				"HASTACK_AGENT_SMTP_PASSWORD":          "from-env",
			},
			files: fakeFiles{"/s/slack": "http://sink.internal:8080/hook\n"},
			want: func() Config {
				c, err := loadFixture(t, "alerts.yml", nil, fakeFiles{
					"/srv/stack/secrets/alertmanager/slack_webhook_url": "https://hooks.slack.com/services/T0/B0/XXXX",
					"/srv/stack/secrets/alertmanager/smtp_password":     "x",
				})
				if err != nil {
					t.Fatal(err)
				}
				c.Alerts.Slack.WebhookURLFile, c.Alerts.Slack.WebhookURL = "/s/slack", "http://sink.internal:8080/hook"
				c.Alerts.Email.PasswordFile, c.Alerts.Email.Password = "", "from-env"
				return c
			}(),
		},
		{
			name:    "environment expansion",
			fixture: "expand.yml",
			env: fakeEnv{
				"GIT_SERVER": "https://git.example.com",
				"GIT_REF":    "release",
				"PROJECT":    "shop",
				"HOME":       "/root",
				"VAR":        "never",
				"FILE":       "prod.yml",
				"HISTORY":    "7",
				"PATH_STYLE": "true",
				"PREFIX":     "backups/",
			},
			want: withURL(func(c *Config) {
				c.Source.URL = "https://git.example.com/ops/hastack.git"
				c.Source.Ref = "release"
				c.Compose.Project = "shop"
				c.Compose.EnvFile = "/etc/hastack/$HOME/${VAR}/cost$5.env"
				c.Compose.Files = []string{"prod.yml", "prod.yml.override"}
				c.StateDir = "/var/lib/agent"
				c.History = 7                     // a plain scalar takes the type of its value
				c.Backup.S3.PathStyle = true      // likewise
				c.Backup.S3.Prefix = "backups/\n" // a literal block keeps its newline
			}),
		},
		{
			name:    "a variable's value cannot add keys",
			fixture: "expand_injection.yml",
			env: fakeEnv{
				"REF":       "${GIT_TOKEN}",
				"GIT_TOKEN": "ghp_never",
				"STATE":     "/srv/state\nhistory: 999\nlisten: 0.0.0.0:80",
				"PREFIX":    "p\"\n  bucket: evil\n#",
				"UNRELATED": "x",
			},
			want: withURL(func(c *Config) {
				c.Source.Ref = "${GIT_TOKEN}" // expanded once: a value is not expanded again
				c.StateDir = "/srv/state\nhistory: 999\nlisten: 0.0.0.0:80"
				c.Backup.S3.Prefix = "p\"\n  bucket: evil\n#"
			}),
		},
		{
			name:    "environment overrides the file",
			fixture: "full.yml",
			env: fakeEnv{
				"HASTACK_AGENT_SOURCE_URL":      "https://git.example.com/other.git",
				"HASTACK_AGENT_SOURCE_REF":      "0123456789abcdef0123456789abcdef01234567",
				"HASTACK_AGENT_SOURCE_PATH":     ".",
				"HASTACK_AGENT_LISTEN":          "127.0.0.1:9900",
				"HASTACK_AGENT_STATE_DIR":       "/state",
				"HASTACK_AGENT_WORK_DIR":        "/work",
				"HASTACK_AGENT_COMPOSE_PROJECT": "other",
			},
			files: fakeFiles{
				"/run/secrets/git_token":      "t",
				"/run/secrets/webhook_secret": "s",
				"/run/secrets/api_token":      "a",
			},
			want: func() Config {
				c, err := loadFixture(t, "full.yml", nil, fakeFiles{
					"/run/secrets/git_token":      "t",
					"/run/secrets/webhook_secret": "s",
					"/run/secrets/api_token":      "a",
				})
				if err != nil {
					t.Fatal(err)
				}
				c.Source.URL = "https://git.example.com/other.git"
				c.Source.Ref = "0123456789abcdef0123456789abcdef01234567"
				c.Source.Path = "."
				c.Listen = "127.0.0.1:9900"
				c.StateDir = "/state"
				c.WorkDir = "/work"
				c.Compose.Project = "other"
				return c
			}(),
		},
		{
			name:    "secret values from the environment",
			fixture: "minimal.yml",
			env: fakeEnv{
				"HASTACK_AGENT_SOURCE_URL":     "https://git.example.com/hastack.git",
				"HASTACK_AGENT_GIT_TOKEN":      "git-token",
				"HASTACK_AGENT_WEBHOOK_SECRET": "hook",
				"HASTACK_AGENT_API_TOKEN":      "api",
			},
			want: withURL(func(c *Config) {
				c.Source.URL = "https://git.example.com/hastack.git"
				c.Source.Token = "git-token"
				c.Webhook.Secret = "hook"
				c.API.Token = "api"
			}),
		},
		{
			name:    "secret files from the environment",
			fixture: "minimal.yml",
			env: fakeEnv{
				"HASTACK_AGENT_SOURCE_URL":          "https://git.example.com/hastack.git",
				"HASTACK_AGENT_GIT_TOKEN_FILE":      "/s/git",
				"HASTACK_AGENT_WEBHOOK_SECRET_FILE": "/s/hook",
				"HASTACK_AGENT_API_TOKEN_FILE":      "/s/api",
			},
			files: fakeFiles{"/s/git": "g\n", "/s/hook": "h\n\n", "/s/api": "a"},
			want: withURL(func(c *Config) {
				c.Source.URL = "https://git.example.com/hastack.git"
				c.Source.TokenFile, c.Source.Token = "/s/git", "g"
				c.Webhook.SecretFile, c.Webhook.Secret = "/s/hook", "h\n" // one newline trimmed
				c.API.TokenFile, c.API.Token = "/s/api", "a"
			}),
		},
		{
			name:    "a secret value in the environment replaces the file's setting",
			fixture: "full.yml",
			env:     fakeEnv{"HASTACK_AGENT_API_TOKEN": "from-env"},
			files:   fakeFiles{"/run/secrets/git_token": "t", "/run/secrets/webhook_secret": "s"},
			want: func() Config {
				c, err := loadFixture(t, "full.yml", nil, fakeFiles{
					"/run/secrets/git_token":      "t",
					"/run/secrets/webhook_secret": "s",
					"/run/secrets/api_token":      "unused",
				})
				if err != nil {
					t.Fatal(err)
				}
				c.API = API{Token: "from-env"}
				return c
			}(),
		},
		{
			name:    "ssh source",
			fixture: "ssh.yml",
			want: withURL(func(c *Config) {
				c.Source.URL = "git@git.example.com:ops/hastack.git"
				c.Source.SSHKeyFile = "/run/secrets/deploy_key"
				c.Source.KnownHostsFile = "/etc/hastack/known_hosts"
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadFixture(t, tt.fixture, tt.env, tt.files)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
		env     fakeEnv
		files   fakeFiles
		field   string // the FieldError's field, when the error is one
		want    string // in the message
	}{
		{
			name:    "unknown key names the key and its line",
			fixture: "unknown_key.yml",
			want:    `config: line 4: unknown key "pol_interval"`,
		},
		{
			name:    "bad duration gives the line",
			fixture: "bad_duration.yml",
			want:    `line 4: invalid duration "five minutes"`,
		},
		{
			name:    "a shell-style default is refused, with its line",
			fixture: "expand_default.yml",
			want:    "config: line 3: ${GIT_REF:-main} is not a variable: only ${NAME} is expanded",
		},
		{
			name:    "an unterminated reference is refused, with its line",
			fixture: "expand_unterminated.yml",
			want:    "config: line 3: ${ without a closing }",
		},
		{
			name:    "every problem at once",
			fixture: "expand_bad_and_unknown.yml",
			want:    `config: line 2: unknown key "nope"; line 4: ${1X} is not a variable`,
		},
		{
			name:    "two documents",
			fixture: "two_documents.yml",
			want:    "more than one YAML document",
		},
		{
			name:    "git token value and file",
			fixture: "minimal.yml",
			env:     fakeEnv{"HASTACK_AGENT_GIT_TOKEN": "t", "HASTACK_AGENT_GIT_TOKEN_FILE": "/s/t"},
			field:   "HASTACK_AGENT_GIT_TOKEN, HASTACK_AGENT_GIT_TOKEN_FILE",
		},
		{
			name:    "webhook secret value and file",
			fixture: "minimal.yml",
			env:     fakeEnv{"HASTACK_AGENT_WEBHOOK_SECRET": "t", "HASTACK_AGENT_WEBHOOK_SECRET_FILE": "/s/t"},
			field:   "HASTACK_AGENT_WEBHOOK_SECRET, HASTACK_AGENT_WEBHOOK_SECRET_FILE",
		},
		{
			name:    "api token value and file",
			fixture: "minimal.yml",
			env:     fakeEnv{"HASTACK_AGENT_API_TOKEN": "t", "HASTACK_AGENT_API_TOKEN_FILE": "/s/t"},
			field:   "HASTACK_AGENT_API_TOKEN, HASTACK_AGENT_API_TOKEN_FILE",
		},
		{
			name:    "empty secret file named in the file",
			fixture: "full.yml",
			files:   fakeFiles{"/run/secrets/git_token": "\n"},
			field:   "source.token_file",
		},
		{
			name:    "empty secret file named in the environment",
			fixture: "minimal.yml",
			env:     fakeEnv{"HASTACK_AGENT_WEBHOOK_SECRET_FILE": "/s/hook"},
			files:   fakeFiles{"/s/hook": ""},
			field:   "HASTACK_AGENT_WEBHOOK_SECRET_FILE",
		},
		{
			name:    "slack webhook value and file",
			fixture: "minimal.yml",
			env:     fakeEnv{"HASTACK_AGENT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/x", "HASTACK_AGENT_SLACK_WEBHOOK_URL_FILE": "/s/t"},
			field:   "HASTACK_AGENT_SLACK_WEBHOOK_URL, HASTACK_AGENT_SLACK_WEBHOOK_URL_FILE",
		},
		{
			name:    "smtp password value and file",
			fixture: "minimal.yml",
			env:     fakeEnv{"HASTACK_AGENT_SMTP_PASSWORD": "p", "HASTACK_AGENT_SMTP_PASSWORD_FILE": "/s/p"},
			field:   "HASTACK_AGENT_SMTP_PASSWORD, HASTACK_AGENT_SMTP_PASSWORD_FILE",
		},
		{
			name:    "empty smtp password file",
			fixture: "alerts.yml",
			files: fakeFiles{
				"/srv/stack/secrets/alertmanager/slack_webhook_url": "https://hooks.slack.com/services/T0/B0/XXXX",
				"/srv/stack/secrets/alertmanager/smtp_password":     "\n",
			},
			field: "alerts.email.password_file",
		},
		{
			name:    "slack webhook file holding no URL",
			fixture: "alerts.yml",
			files: fakeFiles{
				"/srv/stack/secrets/alertmanager/slack_webhook_url": "T0/B0/XXXX",
				"/srv/stack/secrets/alertmanager/smtp_password":     "p",
			},
			field: "alerts.slack.webhook_url_file",
		},
		{
			name:    "missing slack webhook file",
			fixture: "alerts.yml",
			files:   fakeFiles{"/srv/stack/secrets/alertmanager/smtp_password": "p"},
			want:    "config: alerts.slack.webhook_url_file: read secret: open /srv/stack/secrets/alertmanager/slack_webhook_url",
		},
		{
			name:    "missing secret file",
			fixture: "full.yml",
			want:    "config: source.token_file: read secret: open /run/secrets/git_token",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadFixture(t, tt.fixture, tt.env, tt.files)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.field != "" {
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("%v is not a *FieldError", err)
				}
				if fe.Field != tt.field {
					t.Errorf("field %q, want %q (%v)", fe.Field, tt.field, err)
				}
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		fixture string // testdata/invalid_<fixture>.yml
		field   string
	}{
		{"missing_url", "source.url"},
		{"archive_server_id", "backup.archive.server_id"},
		{"archive_flush", "backup.archive.flush_interval"},
		{"archive_no_store", "backup.archive.enabled"},
		{"url_scheme", "source.url"},
		{"url_relative", "source.url"},
		{"ssh_no_known_hosts", "source.known_hosts_file"},
		{"scp_no_known_hosts", "source.known_hosts_file"},
		{"empty_ref", "source.ref"},
		{"url_password", "source.url"},
		{"https_with_ssh_key", "source.ssh_key_file"},
		{"file_with_username", "source.username"},
		{"ref_space", "source.ref"},
		{"absolute_path", "source.path"},
		{"path_escapes", "source.path"},
		{"poll_too_short", "source.poll_interval"},
		{"poll_negative", "source.poll_interval"},
		{"project_upper", "compose.project"},
		{"no_files", "compose.files"},
		{"file_escapes", "compose.files[0]"},
		{"health_timeout_zero", "compose.health_timeout"},
		{"drift_mode", "drift.mode"},
		{"grace_negative", "drift.grace_period"},
		{"check_interval_zero", "drift.check_interval"},
		{"empty_state_dir", "state_dir"},
		{"relative_work_dir", "work_dir"},
		{"listen_no_port", "listen"},
		{"listen_public_no_token", "api.token_file"},
		{"listen_all_no_token", "api.token_file"},
		{"history_zero", "history"},
		{"history_too_big", "history"},
		{"alerts_url_scheme", "alerts.alertmanager_url"},
		{"alerts_url_no_host", "alerts.alertmanager_url"},
		{"alerts_resend_too_short", "alerts.resend_interval"},
		{"alerts_repeat_negative", "alerts.repeat_interval"},
		{"alerts_link_scheme", "alerts.link"},
		{"alerts_link_relative", "alerts.link"},
		{"alerts_link_password", "alerts.link"},
		{"alerts_slack_channel_only", "alerts.slack.channel"},
		{"alerts_email_no_from", "alerts.email.from"},
		{"alerts_email_no_smarthost", "alerts.email.smarthost"},
		{"alerts_email_no_to", "alerts.email.to"},
		{"alerts_email_smarthost_no_port", "alerts.email.smarthost"},
		{"alerts_email_bad_to", "alerts.email.to[1]"},
		{"alerts_email_user_no_password", "alerts.email.password_file"},
		{"part_size", "backup.s3.part_size_mib"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen["invalid_"+tt.fixture+".yml"] = true
		t.Run(tt.fixture, func(t *testing.T) {
			_, err := loadFixture(t, "invalid_"+tt.fixture+".yml", nil, nil)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if fe.Field != tt.field {
				t.Errorf("field %q, want %q (%v)", fe.Field, tt.field, err)
			}
			if want := "config: " + tt.field + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("message %q does not start with %q", err, want)
			}
			if strings.Count(err.Error(), "config: ") != 1 {
				t.Errorf("fixture breaks more than one rule: %v", err)
			}
		})
	}
	fixtures, _ := filepath.Glob("testdata/invalid_*.yml")
	for _, f := range fixtures {
		if !seen[filepath.Base(f)] {
			t.Errorf("fixture %s has no test", f)
		}
	}
}

func TestValidateAcceptsLoopbackAndTokens(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:9700", "[::1]:9700", "localhost:9700", "127.0.0.2:0"} {
		c := Default()
		c.Source.URL = "file:///srv/hastack.git"
		c.Listen = listen
		if err := c.Validate(); err != nil {
			t.Errorf("listen %s: %v", listen, err)
		}
	}
	c := Default()
	c.Source.URL = "https://git.example.com/hastack.git"
	c.Listen = "0.0.0.0:9700"
	c.API.Token = "t"
	if err := c.Validate(); err != nil {
		t.Errorf("public listen with a token: %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.History = 0
	c.Compose.Project = "Bad"
	err := c.Validate()
	for _, field := range []string{"source.url", "compose.project", "history"} {
		if !strings.Contains(err.Error(), "config: "+field+": ") {
			t.Errorf("%q does not name %s", err, field)
		}
	}
}

func TestLoadPath(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "api_token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HASTACK_AGENT_LISTEN", "0.0.0.0:9700")
	t.Setenv("HASTACK_AGENT_API_TOKEN_FILE", token)
	c, err := Load("testdata/minimal.yml")
	if err != nil {
		t.Fatal(err)
	}
	if c.API.Token != "s3cret" || c.Listen != "0.0.0.0:9700" {
		t.Errorf("got listen %q token %q", c.Listen, c.API.Token)
	}

	_, err = Load("testdata/unknown_key.yml")
	if want := "config: testdata/unknown_key.yml: line 4: unknown key"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %v, want prefix %q", err, want)
	}
	if _, err := Load("testdata/absent.yml"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestRedacted(t *testing.T) {
	c := Default()
	c.Source.URL = "https://deploy:hunter2@git.example.com/hastack.git"
	c.Source.Token = "ghp_secret_token"
	c.Webhook.Secret = "webhook_secret"
	c.API.Token = "api_secret"
	c.Alerts.AlertmanagerURL = "https://am:am_password@am.example.com"
	c.Alerts.Slack.WebhookURL = "https://hooks.slack.com/services/slack_secret"
	c.Alerts.Email.Password = "smtp_secret"
	c.Alerts.Email.To = []string{"ops@example.com"}

	r := c.Redacted()
	if r.Source.Token != "REDACTED" || r.Webhook.Secret != "REDACTED" || r.API.Token != "REDACTED" ||
		r.Alerts.Slack.WebhookURL != "REDACTED" || r.Alerts.Email.Password != "REDACTED" {
		t.Errorf("secrets survive Redacted: %#v", r)
	}
	if r.Alerts.AlertmanagerURL != "https://am:xxxxx@am.example.com" {
		t.Errorf("Alertmanager URL redacted to %q", r.Alerts.AlertmanagerURL)
	}
	r.Alerts.Email.To[0] = "changed"
	if c.Alerts.Email.To[0] != "ops@example.com" {
		t.Error("Redacted shares alerts.email.to with the original")
	}
	if c.Source.Token != "ghp_secret_token" {
		t.Error("Redacted changed the original")
	}
	if Default().Redacted().API.Token != "" {
		t.Error("an unset secret becomes REDACTED")
	}
	for _, s := range []string{c.String(), r.Source.URL, fmt.Sprintf("%v %+v", r, r)} {
		for _, secret := range []string{"hunter2", "ghp_secret_token", "webhook_secret", "api_secret",
			"am_password", "slack_secret", "smtp_secret"} {
			if strings.Contains(s, secret) {
				t.Errorf("%q leaks %q", s, secret)
			}
		}
	}
	if !strings.Contains(c.String(), "poll_interval: 1m0s") {
		t.Errorf("String does not render durations: %s", c)
	}
}

// TestAlertSecretsNeverInErrors: a Slack webhook URL is a secret, and so is a password in the
// Alertmanager URL; an invalid one is reported without its value.
func TestAlertSecretsNeverInErrors(t *testing.T) {
	const marker = "SECRETMARKER"
	for _, tt := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"slack webhook not a URL", func(c *Config) { c.Alerts.Slack.WebhookURL = "hooks.slack.com/services/" + marker }, "alerts.slack.webhook_url_file"},
		{"slack webhook with a bad scheme", func(c *Config) { c.Alerts.Slack.WebhookURL = "ftp://hooks.slack.com/" + marker }, "alerts.slack.webhook_url_file"},
		{"slack webhook that does not parse", func(c *Config) { c.Alerts.Slack.WebhookURL = "https://hooks slack/%zz" + marker }, "alerts.slack.webhook_url_file"},
		{"alertmanager URL with a password", func(c *Config) { c.Alerts.AlertmanagerURL = "ftp://am:" + marker + "@am.example.com" }, "alerts.alertmanager_url"},
		{"link with a password", func(c *Config) { c.Alerts.Link = "https://admin:" + marker + "@grafana.example.com/d/hastack-agent" }, "alerts.link"},
		{"smtp password without a user", func(c *Config) {
			c.Alerts.Email = AlertsEmail{Smarthost: "smtp.example.com:587", From: "a@example.com", To: []string{"b@example.com"}, Password: marker}
		}, "alerts.email.username"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Source.URL = "file:///srv/hastack.git"
			tt.edit(&c)
			err := c.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("error %v, want a FieldError for %s", err, tt.field)
			}
			if strings.Contains(err.Error(), marker) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}

func TestAlertsEmailValid(t *testing.T) {
	c := Default()
	c.Source.URL = "file:///srv/hastack.git"
	c.Alerts.Email = AlertsEmail{
		Smarthost: "[::1]:25", From: "hastack <alerts@example.com>", To: []string{"ops@example.com"},
		Username: "u", Password: "p", RequireTLS: true,
	}
	c.Alerts.Slack = AlertsSlack{WebhookURL: "https://hooks.slack.com/services/T/B/X", Channel: "#ops"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !Default().Alerts.Email.RequireTLS || Default().Alerts.AlertmanagerURL != "http://127.0.0.1:9093" ||
		time.Duration(Default().Alerts.ResendInterval) != time.Minute {
		t.Errorf("defaults: %+v", Default().Alerts)
	}
}

// The link in every alert: any absolute http(s) URL people can open, or none.
func TestAlertsLink(t *testing.T) {
	if Default().Alerts.Link != "" {
		t.Errorf("default link %q, want none (agent init writes one)", Default().Alerts.Link)
	}
	for _, tt := range []struct {
		link  string
		valid bool
	}{
		{"", true},
		{"https://localhost:3000/d/hastack-agent", true},
		{"https://[2001:db8::1]:3000/d/hastack-agent?orgId=1", true},
		{"http://grafana.internal/d/hastack-agent", true},
		{"localhost:3000/d/hastack-agent", false},
		{"/d/hastack-agent", false},
		{"https:///d/hastack-agent", false},
		{"javascript:alert(1)", false},
		{"https://admin@grafana.example.com/d/hastack-agent", false},
	} {
		c := Default()
		c.Source.URL = "file:///srv/hastack.git"
		c.Alerts.Link = tt.link
		err := c.Validate()
		var fe *FieldError
		switch {
		case tt.valid && err != nil:
			t.Errorf("link %q: %v", tt.link, err)
		case !tt.valid && (!errors.As(err, &fe) || fe.Field != "alerts.link"):
			t.Errorf("link %q: error %v, want a FieldError for alerts.link", tt.link, err)
		case !tt.valid && !strings.Contains(err.Error(), "AGENT_ALERT_LINK"):
			t.Errorf("link %q: %v does not say where agent init takes the link from", tt.link, err)
		}
	}
}

func TestWarnings(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	closed := filepath.Join(dir, "closed")
	for name, mode := range map[string]os.FileMode{open: 0o644, closed: 0o600} {
		if err := os.WriteFile(name, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(name, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	c := Default()
	c.Source.URL = "https://git.example.com/hastack.git"
	c.Source.TokenFile, c.Source.Token = open, "x"
	c.Webhook.SecretFile = closed
	ws := c.Warnings()
	if len(ws) != 1 || !strings.HasPrefix(ws[0], "source.token_file: ") || !strings.Contains(ws[0], "0644") {
		t.Errorf("warnings %q, want one about source.token_file mode 0644", ws)
	}

	c = Default()
	c.Source.URL = "file:///srv/hastack.git"
	c.Alerts.Slack.WebhookURLFile = open
	c.Alerts.Email.PasswordFile = closed
	if ws := c.Warnings(); len(ws) != 1 || !strings.HasPrefix(ws[0], "alerts.slack.webhook_url_file: ") {
		t.Errorf("warnings %q, want one about alerts.slack.webhook_url_file", ws)
	}
}

func TestChildEnv(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    []string
	}{
		{
			name: "what compose needs passes through, in order",
			environ: []string{"PATH=/usr/bin:/bin", "HOME=/root", "DOCKER_HOST=unix:///run/docker.sock",
				"DOCKER_CONFIG=/root/.docker", "COMPOSE_PROFILES=grafana", "LANG=C.UTF-8", "EMPTY="},
			want: []string{"PATH=/usr/bin:/bin", "HOME=/root", "DOCKER_HOST=unix:///run/docker.sock",
				"DOCKER_CONFIG=/root/.docker", "COMPOSE_PROFILES=grafana", "LANG=C.UTF-8", "EMPTY="},
		},
		{
			name: "the agent's variables and AWS credentials are removed",
			environ: []string{"HASTACK_AGENT_GIT_TOKEN=ghp_x", "PATH=/bin", "HASTACK_AGENT_WEBHOOK_SECRET=w",
				"HASTACK_AGENT_API_TOKEN_FILE=/run/secrets/api", "HASTACK_AGENT_CONFIG=/etc/agent.yml",
				"AWS_ACCESS_KEY_ID=AKIA", "AWS_SECRET_ACCESS_KEY=s", "AWS_SESSION_TOKEN=t", "HOME=/root"},
			want: []string{"PATH=/bin", "HOME=/root"},
		},
		{
			name:    "only the prefix counts: similar names stay",
			environ: []string{"MY_HASTACK_AGENT_TOKEN=x", "HASTACK_AGENTX=y", "XAWS_KEY=z", "hastack_agent_git_token=lower"},
			want:    []string{"MY_HASTACK_AGENT_TOKEN=x", "HASTACK_AGENTX=y", "XAWS_KEY=z", "hastack_agent_git_token=lower"},
		},
		{
			name:    "a value that looks like a secret's assignment is not a name",
			environ: []string{"NOTE=HASTACK_AGENT_GIT_TOKEN=x"},
			want:    []string{"NOTE=HASTACK_AGENT_GIT_TOKEN=x"},
		},
		{
			name:    "empty",
			environ: nil,
			want:    []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ChildEnv(tt.environ); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ChildEnv(%q) = %q, want %q", tt.environ, got, tt.want)
			}
		})
	}
}

// TestChildEnvDropsEverySecret: whatever secret the configuration reads from the environment,
// its value variable never reaches a child process.
func TestChildEnvDropsEverySecret(t *testing.T) {
	for _, s := range secrets {
		env := ChildEnv([]string{s.env + "=secret-value", "PATH=/bin"})
		if !reflect.DeepEqual(env, []string{"PATH=/bin"}) {
			t.Errorf("%s: child environment %q", s.env, env)
		}
	}
}

func TestExpand(t *testing.T) {
	env := fakeEnv{"A": "alpha", "B_2": "b", "NL": "x\ny: z", "REF": "${A}", "EMPTY": ""}
	tests := []struct {
		in, want string
		wantErr  string
	}{
		{in: "no variable", want: "no variable"},
		{in: "${A}", want: "alpha"},
		{in: "x${A}y${B_2}z", want: "xalphaybz"},
		{in: "${UNSET}/path", want: "/path"},
		{in: "${EMPTY}", want: ""},
		{in: "$", want: "$"},
		{in: "pa$$word$", want: "pa$$word$"},
		{in: "$A and $B_2", want: "$A and $B_2"},
		{in: "cost: $5 {x}", want: "cost: $5 {x}"},
		{in: "$${A}", want: "${A}"},
		{in: "$$${A}", want: "$${A}"},
		{in: "$${A}${A}", want: "${A}alpha"},
		{in: "${NL}", want: "x\ny: z"},
		{in: "${REF}", want: "${A}"}, // one pass
		{in: "}${A}}", want: "}alpha}"},
		{in: "${A", wantErr: "${ without a closing }"},
		{in: "${}", wantErr: "${} is not a variable"},
		{in: "${A:-default}", wantErr: "${A:-default} is not a variable"},
		{in: "${1A}", wantErr: "${1A} is not a variable"},
		{in: "${A B}", wantErr: "${A B} is not a variable"},
		{in: "ok ${A} then ${", wantErr: "${ without a closing }"},
	}
	for _, tt := range tests {
		got, err := expand(tt.in, env.get)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("expand(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestUnknownKeysMatchesYAML: the keys unknownKeys reports are those yaml.v3's own KnownFields
// reports when it decodes the file into Config, for every fixture that expands nothing.
func TestUnknownKeysMatchesYAML(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yml")
	found := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "${") {
			continue
		}
		got, err := unknownKeys(raw)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		var want []string
		var te *yaml.TypeError
		if err := dec.Decode(new(Config)); errors.As(err, &te) {
			for _, m := range te.Errors {
				if sm := regexp.MustCompile(`^(line \d+): field (.*) not found in type `).FindStringSubmatch(m); sm != nil {
					want = append(want, fmt.Sprintf("%s: unknown key %q", sm[1], sm[2]))
				}
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: unknownKeys = %q, yaml.v3 says %q", f, got, want)
		}
		found += len(got)
	}
	if found < 7 { // unknown_key.yml has one, unknown_nested.yml six
		t.Errorf("%d unknown keys in testdata: the comparison proves little", found)
	}
}

func TestValidateDatabase(t *testing.T) {
	base := func() Config {
		c := Default()
		c.Source.URL = "https://git.example.com/ops/stack.git"
		c.Database.Password, c.Database.ReplPassword = "agent-pw", "repl-pw"
		return c
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("a complete database section: %v", err)
	}
	off := base()
	off.Database.Failover, off.Database.ReplPassword = "off", ""
	if err := off.Validate(); err != nil || off.Database.Enabled() {
		t.Fatalf("failover off needs nothing else and watches nothing: %v", err)
	}
	for _, tc := range []struct {
		field  string
		change func(*Config)
	}{
		{"database.failover", func(c *Config) { c.Database.Failover = "sometimes" }},
		{"database.servers", func(c *Config) { c.Database.Servers = []string{"db_master"} }},
		{"database.servers", func(c *Config) { c.Database.Servers = []string{"db", "db"} }},
		{"database.repl_password_file", func(c *Config) { c.Database.ReplPassword = "" }},
		{"database.network", func(c *Config) { c.Database.Network = "" }},
		{"database.roles_dir", func(c *Config) { c.Database.RolesDir = "var/lib" }},
	} {
		c := base()
		tc.change(&c)
		var fe *FieldError
		if err := c.Validate(); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: got %v, want a FieldError for it", tc.field, err)
		}
	}
	r := base().Redacted()
	if r.Database.Password != "REDACTED" || r.Database.ReplPassword != "REDACTED" {
		t.Fatalf("Redacted kept the database passwords: %+v", r.Database)
	}
}
