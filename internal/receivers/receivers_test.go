package receivers

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/setting"
)

func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   map[string]string
		files map[string]string
		check func(t *testing.T, s Settings)
		field string // the setting an error names, "" for none
	}{
		{name: "nothing: every receiver off", check: func(t *testing.T, s Settings) {
			if s.SlackOn() || s.EmailOn() || s.WatchdogFile != "" || !s.RequireTLS {
				t.Errorf("%+v", s)
			}
		}},
		{name: "slack and e-mail, the sender with a display name", env: map[string]string{
			"ALERT_SLACK_CHANNEL": "#alerts", "ALERT_EMAIL_TO": "ops@example.com, oncall@example.com",
			"ALERT_EMAIL_FROM": "hastack <alerts@example.com>", "ALERT_SMTP_SMARTHOST": "smtp.example.com:587",
			"ALERT_SMTP_USERNAME": "alerts@example.com", "ALERT_SMTP_REQUIRE_TLS": "false",
		}, files: map[string]string{"slack_webhook_url": "https://hooks.slack.com/services/T/B/X\n", "smtp_password": "pw\n"},
			check: func(t *testing.T, s Settings) {
				if !s.SlackOn() || s.SlackChannel != "#alerts" || !slices.Equal(s.EmailTo, []string{"ops@example.com", "oncall@example.com"}) ||
					s.EmailFrom != "hastack <alerts@example.com>" || s.RequireTLS || !strings.HasSuffix(s.SMTPPasswordFile, "smtp_password") {
					t.Errorf("%+v", s)
				}
			}},
		{name: "values from files, the environment wins", env: map[string]string{"ALERT_EMAIL_FROM": "env@example.com"},
			files: map[string]string{"email_to": "ops@example.com\n", "email_from": "file@example.com", "smtp_smarthost": "[::1]:25"},
			check: func(t *testing.T, s Settings) {
				if s.EmailFrom != "env@example.com" || !slices.Equal(s.EmailTo, []string{"ops@example.com"}) || s.Smarthost != "[::1]:25" {
					t.Errorf("%+v", s)
				}
			}},
		{name: "a webhook file without a URL", files: map[string]string{"slack_webhook_url": "T000/B000"}, field: "secrets/alertmanager/slack_webhook_url"},
		{name: "a recipient without a sender", env: map[string]string{"ALERT_EMAIL_TO": "a@example.com", "ALERT_SMTP_SMARTHOST": "smtp:25"}, field: "ALERT_EMAIL_FROM"},
		{name: "a server without a port", env: map[string]string{"ALERT_EMAIL_TO": "a@example.com", "ALERT_EMAIL_FROM": "b@example.com", "ALERT_SMTP_SMARTHOST": "smtp.example.com"}, field: "ALERT_SMTP_SMARTHOST"},
		{name: "a sender without a recipient", env: map[string]string{"ALERT_EMAIL_FROM": "b@example.com"}, field: "ALERT_EMAIL_TO"},
		{name: "a password without a user", env: map[string]string{"ALERT_EMAIL_TO": "a@example.com", "ALERT_EMAIL_FROM": "b@example.com", "ALERT_SMTP_SMARTHOST": "smtp:25"},
			files: map[string]string{"smtp_password": "pw"}, field: "ALERT_SMTP_USERNAME"},
		{name: "require TLS neither true nor false", env: map[string]string{"ALERT_SMTP_REQUIRE_TLS": "yes"}, field: "ALERT_SMTP_REQUIRE_TLS"},
		{name: "a bad duration", env: map[string]string{"ALERTMANAGER_GROUP_WAIT": "30 seconds"}, field: "ALERTMANAGER_GROUP_WAIT"},
		{name: "a control character", env: map[string]string{"ALERT_SLACK_CHANNEL": "#a\x1b[2J"}, field: "ALERT_SLACK_CHANNEL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Load(tc.env, dir)
			var se *setting.Error
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tc.field != "" && (!errors.As(err, &se) || se.Field != tc.field):
				t.Fatalf("Load: %v, want an error naming %s", err, tc.field)
			case tc.check != nil:
				tc.check(t, s)
			}
		})
	}
}
