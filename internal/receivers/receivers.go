// Package receivers reads and validates where the stack's alerts go: the ALERT_* and
// ALERTMANAGER_* settings of the stack's .env and the files in secrets/alertmanager/. It is the
// one reading of them: `agent init` builds the agent's own fallback (its alerts: section) from
// it, and the same rules are documented in docs/alerts.md.
package receivers

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/hastack/hastack/internal/setting"
)

// Settings are the stack's alert receivers. A receiver whose settings are absent is off.
type Settings struct {
	// Slack: on when SlackWebhookFile is set (the secret file exists and holds a URL).
	SlackWebhookFile string
	SlackChannel     string
	// E-mail: on when EmailTo is not empty.
	EmailTo          []string
	EmailFrom        string
	Smarthost        string // host:port
	SMTPUsername     string
	SMTPPasswordFile string // with SMTPUsername
	RequireTLS       bool
	// WatchdogFile: the dead man's switch URL's file, when it exists.
	WatchdogFile string
	// Group timings, "" for Alertmanager's configured defaults.
	GroupWait, GroupInterval, RepeatInterval, WatchdogInterval string
	ExternalURL                                                string
}

// duration is Alertmanager's (Prometheus's) duration syntax.
var duration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

var smarthost = regexp.MustCompile(`^([^:\s\[\]]+|\[[0-9a-fA-F:]+\]):[0-9]+$`)

// Load reads the settings from env (the stack's .env, parsed with Compose's rules) and the
// secret files in dir (secrets/alertmanager/). A non-secret value may also be a file of dir
// (slack_channel, email_to, email_from, smtp_smarthost, smtp_username); the environment wins.
// Every problem is a *setting.Error naming the variable or file; all are returned, joined.
func Load(env map[string]string, dir string) (Settings, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &setting.Error{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	value := func(name, file string) string {
		v := strings.TrimSpace(env[name])
		if v == "" {
			v, _ = firstLine(filepath.Join(dir, file))
		}
		if strings.ContainsFunc(v, isControl) {
			bad(name, "contains a control character: remove it")
			return ""
		}
		return v
	}
	present := func(file string) string {
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
			return p
		}
		return ""
	}
	s := Settings{RequireTLS: true}
	if p := present("slack_webhook_url"); p != "" {
		url, err := firstLine(p)
		switch {
		case err != nil:
			bad("secrets/alertmanager/slack_webhook_url", "%v", err)
		case !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://"):
			bad("secrets/alertmanager/slack_webhook_url", "does not hold a URL (it must start with https://)")
		default:
			s.SlackWebhookFile = p
		}
	}
	s.SlackChannel = value("ALERT_SLACK_CHANNEL", "slack_channel")
	for _, to := range strings.Split(value("ALERT_EMAIL_TO", "email_to"), ",") {
		if to = strings.TrimSpace(to); to != "" {
			s.EmailTo = append(s.EmailTo, to)
		}
	}
	s.EmailFrom = value("ALERT_EMAIL_FROM", "email_from")
	s.Smarthost = value("ALERT_SMTP_SMARTHOST", "smtp_smarthost")
	s.SMTPUsername = value("ALERT_SMTP_USERNAME", "smtp_username")
	switch v := strings.TrimSpace(env["ALERT_SMTP_REQUIRE_TLS"]); v {
	case "", "true":
	case "false":
		s.RequireTLS = false
	default:
		bad("ALERT_SMTP_REQUIRE_TLS", "%q: want true or false", v)
	}
	password := present("smtp_password")
	switch {
	case len(s.EmailTo) > 0:
		if s.EmailFrom == "" {
			bad("ALERT_EMAIL_FROM", "ALERT_EMAIL_TO is set but ALERT_EMAIL_FROM is not: set the sender address")
		}
		if !smarthost.MatchString(s.Smarthost) {
			bad("ALERT_SMTP_SMARTHOST", "%q: want the SMTP server as host:port, e.g. smtp.example.com:587", s.Smarthost)
		}
		if password != "" && s.SMTPUsername == "" {
			bad("ALERT_SMTP_USERNAME", "secrets/alertmanager/smtp_password exists but ALERT_SMTP_USERNAME is not set: set the SMTP user")
		}
		if s.SMTPUsername != "" {
			s.SMTPPasswordFile = password
		}
	case s.EmailFrom != "" || s.Smarthost != "":
		bad("ALERT_EMAIL_TO", "ALERT_EMAIL_FROM or ALERT_SMTP_SMARTHOST is set but ALERT_EMAIL_TO is not: set the recipient(s)")
	}
	s.WatchdogFile = present("watchdog_url")
	for _, d := range []struct {
		name string
		to   *string
	}{
		{"ALERTMANAGER_GROUP_WAIT", &s.GroupWait}, {"ALERTMANAGER_GROUP_INTERVAL", &s.GroupInterval},
		{"ALERTMANAGER_REPEAT_INTERVAL", &s.RepeatInterval}, {"ALERTMANAGER_WATCHDOG_INTERVAL", &s.WatchdogInterval},
	} {
		v := strings.TrimSpace(env[d.name])
		if v != "" && !duration.MatchString(v) {
			bad(d.name, "%q: want a duration such as 30s, 5m or 4h", v)
			continue
		}
		*d.to = v
	}
	s.ExternalURL = strings.TrimSpace(env["ALERTMANAGER_EXTERNAL_URL"])
	return s, errors.Join(errs...)
}

// EmailOn and SlackOn tell which receivers are configured.
func (s Settings) EmailOn() bool { return len(s.EmailTo) > 0 }
func (s Settings) SlackOn() bool { return s.SlackWebhookFile != "" }

// firstLine reads a file's first line, trimmed.
func firstLine(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	if sc.Scan() {
		return strings.TrimSpace(sc.Text()), nil
	}
	return "", sc.Err()
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
