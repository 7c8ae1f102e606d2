package receivers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The shipped template rendered with every receiver: the integrations land on the receivers
// the routes name, secrets only as files, the timings from the settings; rendered with none,
// it is the template's own configuration.
func TestAlertmanagerRendersTheShippedTemplate(t *testing.T) {
	template, err := os.ReadFile("../../stack/alertmanager/alertmanager.tmpl.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, v := range map[string]string{"slack_webhook_url": "https://hooks.slack.example/services/T/B/SLACKMARKER",
		"smtp_password": "SMTPMARKER", "watchdog_url": "https://deadman.example/ping/WATCHDOGMARKER"} {
		os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o600)
	}
	s, err := Load(map[string]string{
		"ALERT_SLACK_CHANNEL": "#hastack-alerts", "ALERT_EMAIL_TO": "ops@example.com", "ALERT_EMAIL_FROM": "hastack <alerts@example.com>",
		"ALERT_SMTP_SMARTHOST": "smtp.example.com:587", "ALERT_SMTP_USERNAME": "alerts@example.com",
		"ALERTMANAGER_GROUP_WAIT": "1s", "ALERTMANAGER_GROUP_INTERVAL": "2s", "ALERTMANAGER_REPEAT_INTERVAL": "1m",
	}, dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Alertmanager(template)
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	for _, m := range []string{"SLACKMARKER", "SMTPMARKER", "WATCHDOGMARKER"} {
		if strings.Contains(got, m) {
			t.Errorf("a secret (%s) is in the configuration", m)
		}
	}
	for want, n := range map[string]int{
		"slack_configs:": 2, "api_url_file: " + filepath.Join(dir, "slack_webhook_url"): 2, `channel: "#hastack-alerts"`: 2,
		"email_configs:": 1, `to: "ops@example.com"`: 1, `from: "hastack <alerts@example.com>"`: 1, `smarthost: "smtp.example.com:587"`: 1,
		`auth_username: "alerts@example.com"`: 1, "auth_password_file: " + filepath.Join(dir, "smtp_password"): 1,
		"url_file: " + filepath.Join(dir, "watchdog_url"): 1, "send_resolved: true": 3,
		"group_wait: 1s": 1, "group_interval: 2s": 1, "repeat_interval: 1m": 1, "repeat_interval: 5m": 1,
		`title: '{{ template "hastack.title" . }}'`: 2,
	} {
		if c := strings.Count(got, want); c != n {
			t.Errorf("%q appears %d times, want %d", want, c, n)
		}
	}
	// Each integration under the receiver the routes name.
	var cfg struct {
		Receivers []map[string]any `yaml:"receivers"`
	}
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, r := range cfg.Receivers {
		for k := range r {
			if k != "name" {
				keys[r["name"].(string)] = append(keys[r["name"].(string)], k)
			}
		}
	}
	if len(keys["ui-only"]) != 0 || len(keys["watchdog"]) != 1 || len(keys["critical"]) != 2 || len(keys["warning"]) != 1 {
		t.Errorf("integrations by receiver: %v", keys)
	}
	if t.Failed() {
		t.Logf("rendered:\n%s", got)
	}

	none, err := Settings{RequireTLS: true}.Alertmanager(template)
	if err != nil {
		t.Fatal(err)
	}
	for _, unwanted := range []string{"slack_configs", "email_configs", "webhook_configs"} {
		if strings.Contains(string(none), unwanted) {
			t.Errorf("with no receiver, the configuration has %s", unwanted)
		}
	}
}
