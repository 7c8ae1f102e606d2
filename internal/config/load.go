package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the configuration file at path (none when path is ""), applies the process
// environment and reads the secret files, then validates the result.
func Load(path string) (Config, error) {
	if path == "" {
		return load("", nil, os.Getenv, os.ReadFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	return load(path, f, os.Getenv, os.ReadFile)
}

// LoadFrom is Load with the file's content, the environment and the file system given by the
// caller. r may be nil for no file; env returns "" for an unset variable.
func LoadFrom(r io.Reader, env func(string) string, readFile func(string) ([]byte, error)) (Config, error) {
	return load("", r, env, readFile)
}

func load(name string, r io.Reader, env func(string) string, readFile func(string) ([]byte, error)) (Config, error) {
	c := Default()
	if r != nil {
		if err := decode(&c, r, env); err != nil {
			if name != "" {
				return Config{}, fmt.Errorf("config: %s: %w", name, err)
			}
			return Config{}, fmt.Errorf("config: %w", err)
		}
	}
	applyOverrides(&c, env)
	if err := readSecrets(&c, env, readFile); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// decode expands the environment in the file's text and decodes it over c.
func decode(c *Config, r io.Reader, env func(string) string) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	text := os.Expand(string(raw), func(name string) string {
		if name == "$" {
			return "$" // $$ escapes a dollar sign
		}
		return env(name)
	})
	dec := yaml.NewDecoder(strings.NewReader(text))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file or comments only: defaults
		}
		return yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document; keep the configuration in one")
	}
	return nil
}

var unknownField = regexp.MustCompile(`^(line \d+): field (\S+) not found in type \S+$`)

// yamlError rewrites yaml.v3's messages for a person: unknown keys are named as keys, not as
// Go struct fields.
func yamlError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = unknownField.ReplaceAllString(m, `$1: unknown key "$2"`)
	}
	return errors.New(strings.Join(msgs, "; "))
}

// overrides maps environment variables to the setting each replaces.
var overrides = []struct {
	name  string
	field func(*Config) *string
}{
	{"HASTACK_AGENT_SOURCE_URL", func(c *Config) *string { return &c.Source.URL }},
	{"HASTACK_AGENT_SOURCE_REF", func(c *Config) *string { return &c.Source.Ref }},
	{"HASTACK_AGENT_SOURCE_PATH", func(c *Config) *string { return &c.Source.Path }},
	{"HASTACK_AGENT_LISTEN", func(c *Config) *string { return &c.Listen }},
	{"HASTACK_AGENT_STATE_DIR", func(c *Config) *string { return &c.StateDir }},
	{"HASTACK_AGENT_WORK_DIR", func(c *Config) *string { return &c.WorkDir }},
	{"HASTACK_AGENT_SHARED_DIR", func(c *Config) *string { return &c.SharedDir }},
	{"HASTACK_AGENT_COMPOSE_PROJECT", func(c *Config) *string { return &c.Compose.Project }},
}

func applyOverrides(c *Config, env func(string) string) {
	for _, o := range overrides {
		if v := env(o.name); v != "" {
			*o.field(c) = v
		}
	}
}

// secrets lists each secret: its environment variable (the _FILE one adds the suffix), the
// setting naming its file, and where its value goes.
var secrets = []struct {
	env   string
	field string
	file  func(*Config) *string
	value func(*Config) *string
}{
	{"HASTACK_AGENT_GIT_TOKEN", "source.token_file",
		func(c *Config) *string { return &c.Source.TokenFile }, func(c *Config) *string { return &c.Source.Token }},
	{"HASTACK_AGENT_WEBHOOK_SECRET", "webhook.secret_file",
		func(c *Config) *string { return &c.Webhook.SecretFile }, func(c *Config) *string { return &c.Webhook.Secret }},
	{"HASTACK_AGENT_API_TOKEN", "api.token_file",
		func(c *Config) *string { return &c.API.TokenFile }, func(c *Config) *string { return &c.API.Token }},
	{"HASTACK_AGENT_S3_SECRET_ACCESS_KEY", "backup.s3.secret_access_key_file",
		func(c *Config) *string { return &c.Backup.S3.SecretAccessKeyFile }, func(c *Config) *string { return &c.Backup.S3.SecretAccessKey }},
	{"HASTACK_AGENT_SLACK_WEBHOOK_URL", "alerts.slack.webhook_url_file",
		func(c *Config) *string { return &c.Alerts.Slack.WebhookURLFile }, func(c *Config) *string { return &c.Alerts.Slack.WebhookURL }},
	{"HASTACK_AGENT_SMTP_PASSWORD", "alerts.email.password_file",
		func(c *Config) *string { return &c.Alerts.Email.PasswordFile }, func(c *Config) *string { return &c.Alerts.Email.Password }},
}

func readSecrets(c *Config, env func(string) string, readFile func(string) ([]byte, error)) error {
	for _, s := range secrets {
		value, file := env(s.env), env(s.env+"_FILE")
		switch {
		case value != "" && file != "":
			return &FieldError{Field: s.env + ", " + s.env + "_FILE", Problem: "both set; set only one"}
		case value != "":
			*s.value(c) = value
			*s.file(c) = "" // the environment overrides the file's setting
			continue
		case file != "":
			*s.file(c) = file
		}
		path := *s.file(c)
		if path == "" {
			continue
		}
		field := s.field
		if file != "" {
			field = s.env + "_FILE"
		}
		b, err := readFile(path)
		if err != nil {
			return fmt.Errorf("config: %s: read secret: %w", field, err)
		}
		if b2, ok := bytes.CutSuffix(b, []byte("\n")); ok {
			b = bytes.TrimSuffix(b2, []byte("\r"))
		}
		if len(b) == 0 {
			return &FieldError{Field: field, Problem: fmt.Sprintf("secret file %s is empty", path)}
		}
		*s.value(c) = string(b)
	}
	return nil
}

// ChildEnv returns environ (in os.Environ's form) without what the processes the agent starts
// (docker compose) must not inherit: every HASTACK_AGENT_* variable, the secrets among them,
// and every AWS_* variable, which hold the S3 client's credentials. PATH, HOME, DOCKER_* and
// the rest pass through unchanged.
func ChildEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "HASTACK_AGENT_") || strings.HasPrefix(name, "AWS_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
