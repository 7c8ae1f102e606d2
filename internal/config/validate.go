package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/setting"
)

// FieldError is one invalid setting (setting.Error: the source's settings are validated by
// gitsource, with the same type).
type FieldError = setting.Error

// Limits enforced by Validate.
const (
	MinPollInterval = 5 * time.Second
	MinHistory      = 1
	MaxHistory      = 1000
)

// projectName is compose's rule for project names.
var projectName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Validate checks every setting. It returns nil or every problem found, each a *FieldError
// (errors.As finds the first; errors.Join joins them).
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}

	// source: its URL, ref and credentials are gitsource's to judge (the transports are its)
	if strings.TrimSpace(c.Source.Ref) == "" {
		bad("source.ref", "required: a branch, a tag or a full commit id") // gitsource would take its default
	} else if err := c.Source.GitOptions("").Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := relativePath(c.Source.Path); err != nil {
		bad("source.path", "%v (use \".\" for the repository root)", err)
	}
	if p := time.Duration(c.Source.PollInterval); p < 0 {
		bad("source.poll_interval", "must not be negative, got %v (0 disables polling)", p)
	} else if p != 0 && p < MinPollInterval {
		bad("source.poll_interval", "%v is below the minimum of %v (0 disables polling)", p, MinPollInterval)
	}

	// compose
	if !projectName.MatchString(c.Compose.Project) {
		bad("compose.project", "%q is not a compose project name: lowercase letters, digits, '_' and '-', "+
			"starting with a letter or digit", c.Compose.Project)
	}
	if len(c.Compose.Files) == 0 {
		bad("compose.files", "at least one compose file is required")
	}
	for i, f := range c.Compose.Files {
		if err := relativePath(f); err != nil {
			bad(fmt.Sprintf("compose.files[%d]", i), "%v", err)
		}
	}
	if c.Compose.HealthTimeout <= 0 {
		bad("compose.health_timeout", "must be greater than 0, got %v", c.Compose.HealthTimeout)
	}

	// drift
	switch c.Drift.Mode {
	case DriftRestore, DriftReport, DriftOff:
	default:
		bad("drift.mode", "%q is not one of restore, report, off", c.Drift.Mode)
	}
	if c.Drift.GracePeriod < 0 {
		bad("drift.grace_period", "must not be negative, got %v", c.Drift.GracePeriod)
	}
	if c.Drift.Mode != DriftOff && c.Drift.CheckInterval <= 0 {
		bad("drift.check_interval", "must be greater than 0, got %v", c.Drift.CheckInterval)
	}

	// directories, listen, history
	if c.StateDir == "" {
		bad("state_dir", "required")
	}
	if p := c.Backup.S3.PartSizeMiB; p != 0 && (p < 5 || p > 5120) {
		bad("backup.s3.part_size_mib", "%d is outside S3's limits: use 5 to 5120, or 0 for 5 (backups up to 50 GiB compressed)", p)
	}
	if c.Backup.TimeZone != "" {
		if _, err := time.LoadLocation(c.Backup.TimeZone); err != nil {
			bad("backup.time_zone", "%v", err)
		}
	}
	if a := c.Backup.Archive; a.Enabled {
		if a.FlushInterval < Duration(100*time.Millisecond) || a.FlushInterval > Duration(time.Minute) {
			bad("backup.archive.flush_interval", "%v: use 100ms to 1m (it is how much a disaster can lose)", a.FlushInterval)
		}
		if a.ServerID == 0 || a.ServerID == 1 || a.ServerID == 2 {
			bad("backup.archive.server_id", "%d: use an id no database server or replica has (the stack's are 1 and 2; default 4001)", a.ServerID)
		}
		if c.Backup.S3.Bucket == "" {
			bad("backup.archive.enabled", "the archive needs a store: set backup.s3.bucket")
		}
		if c.Database.Failover == "off" {
			bad("backup.archive.enabled", "the archive follows the server the database watch names the primary: database.failover must be auto or manual")
		}
	}
	if f := c.Backup.ManifestKeyFile; f != "" && !filepath.IsAbs(f) {
		bad("backup.manifest_key_file", "%q is relative: use an absolute path (a relative one depends on where the agent runs)", f)
	}
	if c.SharedDir != "" && !filepath.IsAbs(c.SharedDir) {
		bad("shared_dir", "%q is relative: use an absolute path (bind mounts resolve on the host)", c.SharedDir)
	}
	if !filepath.IsAbs(c.WorkDir) {
		bad("work_dir", "%q is not an absolute path: bind mounts resolve on the host, "+
			"so the agent's container must mount work_dir at the same absolute path", c.WorkDir)
	}
	loopback, err := isLoopback(c.Listen)
	if err != nil {
		bad("listen", "%v", err)
	} else if !loopback && c.API.Token == "" && c.API.TokenFile == "" {
		bad("api.token_file", "required when listen (%s) is not a loopback address: "+
			"set api.token_file or HASTACK_AGENT_API_TOKEN(_FILE), or listen on 127.0.0.1", c.Listen)
	}
	if c.History < MinHistory || c.History > MaxHistory {
		bad("history", "%d is outside %d..%d", c.History, MinHistory, MaxHistory)
	}
	for _, fe := range c.Database.validate() {
		errs = append(errs, fe)
	}
	for _, fe := range c.Alerts.validate() {
		errs = append(errs, fe)
	}
	return errors.Join(errs...)
}

// MinResendInterval is the shortest alerts.resend_interval.
const MinResendInterval = 5 * time.Second

// validate checks the alerts section. A secret's value is never part of a problem.
func (a Alerts) validate() []*FieldError {
	var errs []*FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if a.AlertmanagerURL != "" {
		if err := httpURL(a.AlertmanagerURL); err != nil {
			bad("alerts.alertmanager_url", "%s: %v (\"\" turns posting to Alertmanager off)", shownURL(a.AlertmanagerURL), err)
		}
	}
	if r := time.Duration(a.ResendInterval); r < MinResendInterval {
		bad("alerts.resend_interval", "%v is below the minimum of %v", r, MinResendInterval)
	}
	if r := time.Duration(a.RepeatInterval); r < 0 {
		bad("alerts.repeat_interval", "must not be negative, got %v (0 sends no reminders)", r)
	}
	if a.Link != "" {
		if err := linkURL(a.Link); err != nil {
			bad("alerts.link", "%s: %v (\"\" for no link; `agent init` takes it from AGENT_ALERT_LINK in stack/.env)", shownURL(a.Link), err)
		}
	}

	if a.Slack.WebhookURL != "" {
		if err := httpURL(a.Slack.WebhookURL); err != nil {
			// The URL is a secret: say what is wrong without repeating it.
			bad("alerts.slack.webhook_url_file", "does not hold an http(s) URL such as "+
				"https://hooks.slack.com/services/... (nor does HASTACK_AGENT_SLACK_WEBHOOK_URL, if set)")
		}
	} else if a.Slack.Channel != "" {
		bad("alerts.slack.channel", "set without a webhook: set alerts.slack.webhook_url_file too")
	}

	e := a.Email
	if e.Smarthost == "" && e.From == "" && len(e.To) == 0 && e.Username == "" && e.Password == "" && e.PasswordFile == "" {
		return errs // e-mail off
	}
	const together = "required for e-mail alerts (smarthost, from and to go together)"
	if e.Smarthost == "" {
		bad("alerts.email.smarthost", together)
	} else if host, port, err := net.SplitHostPort(e.Smarthost); err != nil || host == "" {
		bad("alerts.email.smarthost", "%q is not host:port, e.g. smtp.example.com:587", e.Smarthost)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		bad("alerts.email.smarthost", "%q: port %q is not a number from 1 to 65535", e.Smarthost, port)
	}
	if e.From == "" {
		bad("alerts.email.from", together)
	} else if _, err := mail.ParseAddress(e.From); err != nil {
		bad("alerts.email.from", "%q is not an e-mail address: %v", e.From, err)
	}
	if len(e.To) == 0 {
		bad("alerts.email.to", together)
	}
	for i, to := range e.To {
		if _, err := mail.ParseAddress(to); err != nil {
			bad(fmt.Sprintf("alerts.email.to[%d]", i), "%q is not an e-mail address: %v", to, err)
		}
	}
	hasPassword := e.Password != "" || e.PasswordFile != ""
	if e.Username != "" && !hasPassword {
		bad("alerts.email.password_file", "required with alerts.email.username "+
			"(or HASTACK_AGENT_SMTP_PASSWORD(_FILE))")
	}
	if e.Username == "" && hasPassword {
		bad("alerts.email.username", "required with a password: set the SMTP user")
	}
	return errs
}

// httpURL accepts an absolute http or https URL with a host.
func httpURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("want an http:// or https:// URL")
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

// linkURL accepts the link put in every alert: an http(s) URL, which people open from Slack
// and e-mail, so it carries no credentials.
func linkURL(raw string) error {
	if err := httpURL(raw); err != nil {
		return err
	}
	if u, _ := url.Parse(raw); u.User != nil {
		return errors.New("has a user or password: the link reaches Slack and e-mail as written (Grafana asks for its own login)")
	}
	return nil
}

// shownURL is raw quoted, without its password if it has one: for problems about a URL.
func shownURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return strconv.Quote(u.Redacted())
	}
	return "the URL"
}

// Warnings returns problems that do not stop the agent but deserve a log line: secret files
// readable by group or others, and credentials the source URL does not use.
func (c Config) Warnings() []string {
	return c.warnings(os.Stat)
}

func (c Config) warnings(stat func(string) (fs.FileInfo, error)) []string {
	var ws []string
	for _, f := range []struct{ field, path string }{
		{"source.token_file", c.Source.TokenFile},
		{"source.ssh_key_file", c.Source.SSHKeyFile},
		{"webhook.secret_file", c.Webhook.SecretFile},
		{"api.token_file", c.API.TokenFile},
		{"backup.age_identity_file", c.Backup.AgeIdentityFile},
		{"backup.manifest_key_file", c.Backup.ManifestKeyFile},
		{"alerts.slack.webhook_url_file", c.Alerts.Slack.WebhookURLFile},
		{"alerts.email.password_file", c.Alerts.Email.PasswordFile},
	} {
		if f.path == "" {
			continue
		}
		fi, err := stat(f.path)
		if err != nil {
			continue // a missing file is reported by whoever reads it
		}
		if mode := fi.Mode().Perm(); mode&0o077 != 0 {
			ws = append(ws, fmt.Sprintf("%s: %s is readable by group or others (mode %04o); chmod 600 it",
				f.field, f.path, mode))
		}
	}
	return ws
}

// relativePath accepts a relative slash-separated path that stays inside its root.
func relativePath(p string) error {
	if p == "" {
		return errors.New("required")
	}
	if path.IsAbs(p) || filepath.IsAbs(p) {
		return fmt.Errorf("%q must be relative", p)
	}
	if clean := path.Clean(p); clean == ".." || strings.HasPrefix(clean, "../") {
		return fmt.Errorf("%q leaves the repository", p)
	}
	return nil
}

// isLoopback reports whether a listen address only accepts connections from this host.
func isLoopback(addr string) (bool, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("%q is not host:port: %v", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return false, fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// validate checks the database section.
func (d Database) validate() []*FieldError {
	var errs []*FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	switch d.Failover {
	case "auto", "manual", "off":
	default:
		bad("database.failover", "%q is not one of auto, manual, off", d.Failover)
	}
	if !d.Enabled() {
		return errs
	}
	if len(d.Servers) != 2 || d.Servers[0] == d.Servers[1] || d.Servers[0] == "" || d.Servers[1] == "" {
		bad("database.servers", "want two different Compose services (primary first), got %q", d.Servers)
	}
	for field, v := range map[string]string{"database.network": d.Network, "database.user": d.User,
		"database.repl_user": d.ReplUser, "database.roles_service": d.RolesService} {
		if v == "" {
			bad(field, "required when the database watch is on (database.password_file set)")
		}
	}
	if d.ReplPassword == "" {
		bad("database.repl_password_file", "required when the database watch is on: the replicas' password (stack/secrets/db/repl_password), or HASTACK_AGENT_DB_REPL_PASSWORD(_FILE)")
	}
	if !strings.HasPrefix(d.RolesDir, "/") {
		bad("database.roles_dir", "%q is not an absolute path in %s", d.RolesDir, d.RolesService)
	}
	return errs
}
