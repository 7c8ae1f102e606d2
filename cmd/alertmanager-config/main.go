// Command alertmanager-config renders the stack's Alertmanager configuration for the
// Alertmanager container's entrypoint: the template and the receivers configured by the
// ALERT_* and ALERTMANAGER_* environment and the secret files (internal/receivers, the same
// reading `agent init` uses). Every problem is reported with the setting's name, and nothing is
// written then; no secret is ever printed or written into the configuration.
//
//	alertmanager-config [--template FILE] [--secrets DIR] [--out FILE]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hastack/hastack/internal/receivers"
)

func main() {
	fs := flag.NewFlagSet("alertmanager-config", flag.ContinueOnError)
	template := fs.String("template", "/etc/alertmanager/alertmanager.tmpl.yml", "the configuration template")
	secrets := fs.String("secrets", "/run/secrets", "the receivers' secret files, where Alertmanager reads them")
	out := fs.String("out", "", "write the configuration to this file (atomically, mode 0640) instead of standard output")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if err := run(*template, *secrets, *out); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "alertmanager-config: error:", line)
		}
		os.Exit(1)
	}
}

func run(template, secrets, out string) error {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	s, err := receivers.Load(env, secrets)
	if err != nil {
		return err
	}
	tmpl, err := os.ReadFile(template)
	if err != nil {
		return err
	}
	cfg, err := s.Alertmanager(tmpl)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "alertmanager-config:", describe(s))
	if out == "" {
		_, err := os.Stdout.Write(cfg)
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(cfg); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o640); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// describe says which receivers are on, for the container's log.
func describe(s receivers.Settings) string {
	slack := fmt.Sprint(s.SlackOn())
	if s.SlackOn() && s.SlackChannel != "" {
		slack += " (channel " + s.SlackChannel + ")"
	}
	email := fmt.Sprint(s.EmailOn())
	if s.EmailOn() {
		email += " (to " + strings.Join(s.EmailTo, ", ") + " via " + s.Smarthost + ")"
	}
	line := fmt.Sprintf("receivers: slack=%s email=%s watchdog=%v; critical -> slack+email, warning -> slack, info -> UI only",
		slack, email, s.WatchdogFile != "")
	if !s.SlackOn() && !s.EmailOn() {
		line += "\nalertmanager-config: no receiver configured: alerts are shown in Alertmanager's UI only (docs/alerts.md says how to add one)"
	}
	return line
}
