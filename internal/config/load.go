package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"

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

// decode decodes the file's YAML over c. The environment is expanded in the parsed scalar
// values (expandValues), never in the text, so a variable's value stays inside its value: a
// newline in it cannot add a key, a quote cannot end a string.
func decode(c *Config, r io.Reader, env func(string) string) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file or comments only: defaults
		}
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document; keep the configuration in one")
	}
	problems, err := unknownKeys(raw)
	if err != nil {
		return err
	}
	expandValues(&doc, env, &problems)
	if err := doc.Decode(c); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			problems = append(problems, te.Errors...)
		} else {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// unknownField is yaml.v3's message for a key that the type has no field for (KnownFields).
var unknownField = regexp.MustCompile(`^(line \d+): field (.*) not found in type struct \{`)

// unknownKeys lists the keys of the YAML text that Config has no setting for, each as
// `line N: unknown key "name"`. yaml.v3 checks keys only when it decodes text (Node.Decode
// cannot), so the text is decoded into Config's shape: its structs, with every other type
// replaced by yaml.Node, which takes any value; values are checked by the real decode.
func unknownKeys(raw []byte) ([]string, error) {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	err := dec.Decode(reflect.New(configShape()).Interface())
	if err == nil || errors.Is(err, io.EOF) {
		return nil, nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return nil, err
	}
	var keys []string
	for _, m := range te.Errors {
		if sm := unknownField.FindStringSubmatch(m); sm != nil {
			keys = append(keys, fmt.Sprintf("%s: unknown key %q", sm[1], sm[2]))
		}
	}
	return keys, nil
}

var (
	nodeType    = reflect.TypeFor[yaml.Node]()
	configShape = sync.OnceValue(func() reflect.Type { return shapeOf(reflect.TypeFor[Config]()) })
)

// shapeOf is t with its structs (those that decode field by field) kept and every other type
// replaced by yaml.Node.
func shapeOf(t reflect.Type) reflect.Type {
	if reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		return nodeType
	}
	switch t.Kind() {
	case reflect.Pointer:
		return reflect.PointerTo(shapeOf(t.Elem()))
	case reflect.Slice:
		return reflect.SliceOf(shapeOf(t.Elem()))
	case reflect.Map:
		return reflect.MapOf(t.Key(), shapeOf(t.Elem()))
	case reflect.Struct:
		var fields []reflect.StructField
		for f := range t.Fields() {
			if f.IsExported() {
				fields = append(fields, reflect.StructField{Name: f.Name, Type: shapeOf(f.Type), Tag: f.Tag, Anonymous: f.Anonymous})
			}
		}
		return reflect.StructOf(fields)
	default:
		return nodeType
	}
}

// expandValues expands the environment (expand) in every scalar value under n: mapping
// values and sequence items, not keys, tags or comments. An alias is expanded where its
// anchor is, once. A plain scalar's type follows its new text (history: ${HISTORY} is a
// number); a quoted one stays a string. Each malformed reference adds a problem.
func expandValues(n *yaml.Node, env func(string) string, problems *[]string) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			expandValues(c, env, problems)
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			expandValues(n.Content[i], env, problems)
		}
	case yaml.ScalarNode:
		v, err := expand(n.Value, env)
		if err != nil {
			*problems = append(*problems, fmt.Sprintf("line %d: %v", n.Line, err))
			return
		}
		if v == n.Value {
			return
		}
		n.Value = v
		const kept = yaml.TaggedStyle | yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle
		if n.Style&kept == 0 {
			n.Tag = "" // resolved again from the new value
		}
	}
}

// varName is what ${...} may hold.
var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expand replaces each ${NAME} in s by env(NAME) ("" when unset), in one pass: a value that
// itself holds ${...} is not expanded again. $${ stands for a literal ${; any other $ (a lone
// one, $NAME, $$) is kept as written. ${ without a closing brace or a valid name is an error,
// so that a shell-style default (${NAME:-x}) is not taken for text.
func expand(s string, env func(string) string) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' { // $${: a literal ${
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", fmt.Errorf("${ without a closing }: write ${NAME}, or $${ for a literal ${")
		}
		name := s[i+2 : i+2+end]
		if !varName.MatchString(name) {
			return "", fmt.Errorf("${%s} is not a variable: only ${NAME} is expanded (no default or other operator); $${ is a literal ${", name)
		}
		b.WriteString(env(name))
		s = s[i+2+end+1:]
	}
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
	{"HASTACK_AGENT_DB_PASSWORD", "database.password_file",
		func(c *Config) *string { return &c.Database.PasswordFile }, func(c *Config) *string { return &c.Database.Password }},
	{"HASTACK_AGENT_DB_REPL_PASSWORD", "database.repl_password_file",
		func(c *Config) *string { return &c.Database.ReplPasswordFile }, func(c *Config) *string { return &c.Database.ReplPassword }},
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
