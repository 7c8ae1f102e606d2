package receivers

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"
)

// Alertmanager renders Alertmanager's configuration: the template (a valid configuration by
// itself, which receives every alert and sends none) with the configured receivers' integrations
// added to its receivers by name (critical: Slack and e-mail; warning: Slack; watchdog: the dead
// man's switch) and the group timings set. Secrets stay in their files: the configuration names
// them (*_file) and holds none.
func (s Settings) Alertmanager(template []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(template, &doc); err != nil {
		return nil, fmt.Errorf("alertmanager template: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("alertmanager template: not a YAML mapping")
	}
	root := doc.Content[0]
	if route := mapValue(root, "route"); route != nil {
		setScalar(route, "group_wait", s.GroupWait)
		setScalar(route, "group_interval", s.GroupInterval)
		setScalar(route, "repeat_interval", s.RepeatInterval)
		if routes := mapValue(route, "routes"); routes != nil {
			for _, r := range routes.Content {
				if v := mapValue(r, "receiver"); v != nil && v.Value == "watchdog" {
					setScalar(r, "repeat_interval", s.WatchdogInterval)
				}
			}
		}
	}
	receivers := mapValue(root, "receivers")
	if receivers == nil || receivers.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("alertmanager template: no receivers list")
	}
	for _, r := range receivers.Content {
		name := mapValue(r, "name")
		if name == nil {
			continue
		}
		switch name.Value {
		case "watchdog":
			if s.WatchdogFile != "" {
				add(r, "webhook_configs", mapping("url_file", plain(s.WatchdogFile), "send_resolved", plain("false")))
			}
		case "critical":
			if s.SlackOn() {
				add(r, "slack_configs", s.slack())
			}
			if s.EmailOn() {
				add(r, "email_configs", s.email())
			}
		case "warning":
			if s.SlackOn() {
				add(r, "slack_configs", s.slack())
			}
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (s Settings) slack() *yaml.Node {
	kv := []any{"api_url_file", plain(s.SlackWebhookFile), "send_resolved", plain("true")}
	if s.SlackChannel != "" {
		kv = append(kv, "channel", quoted(s.SlackChannel))
	}
	kv = append(kv,
		"title", tmpl(`{{ template "hastack.title" . }}`),
		"title_link", tmpl(`{{ template "hastack.alertmanagerURL" . }}`),
		"text", tmpl(`{{ template "slack.hastack.text" . }}`),
		"color", tmpl(`{{ template "hastack.color" . }}`))
	return mapping(kv...)
}

func (s Settings) email() *yaml.Node {
	to := ""
	for i, a := range s.EmailTo {
		if i > 0 {
			to += ", "
		}
		to += a
	}
	kv := []any{"to", quoted(to), "from", quoted(s.EmailFrom), "smarthost", quoted(s.Smarthost),
		"require_tls", plain(fmt.Sprint(s.RequireTLS)), "send_resolved", plain("true")}
	if s.SMTPUsername != "" {
		kv = append(kv, "auth_username", quoted(s.SMTPUsername))
	}
	if s.SMTPPasswordFile != "" {
		kv = append(kv, "auth_password_file", plain(s.SMTPPasswordFile))
	}
	kv = append(kv,
		"headers", mapping("Subject", tmpl(`{{ template "email.hastack.subject" . }}`)),
		"text", tmpl(`{{ template "email.hastack.text" . }}`),
		"html", tmpl(`{{ template "email.hastack.html" . }}`))
	return mapping(kv...)
}

// The YAML nodes the renderer builds.
func plain(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }
func quoted(v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v, Style: yaml.DoubleQuotedStyle}
}
func tmpl(v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v, Style: yaml.SingleQuotedStyle}
}

// mapping makes a mapping of key, value pairs (a value is a *yaml.Node).
func mapping(kv ...any) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Content = append(m.Content, plain(kv[i].(string)), kv[i+1].(*yaml.Node))
	}
	return m
}

// mapValue returns the value of key in mapping m, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setScalar sets key of mapping m to v, unless v is empty.
func setScalar(m *yaml.Node, key, v string) {
	if v == "" {
		return
	}
	if n := mapValue(m, key); n != nil {
		n.Kind, n.Value, n.Style, n.Tag, n.LineComment = yaml.ScalarNode, v, 0, "", ""
		return
	}
	m.Content = append(m.Content, plain(key), plain(v))
}

// add appends item to the list under key of mapping m, making the list when it is not there.
func add(m *yaml.Node, key string, item *yaml.Node) {
	list := mapValue(m, key)
	if list == nil {
		list = &yaml.Node{Kind: yaml.SequenceNode}
		m.Content = append(m.Content, plain(key), list)
	}
	list.Content = append(list.Content, item)
}
