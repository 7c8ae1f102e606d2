//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Host ports of the stack under test and of the suite's own receivers: chosen free when the
// suite starts (freePorts), so the suite neither clashes with nor reaches anything else on the
// host, such as a user's stack on its default ports.
var (
	httpPort, httpsPort, prometheusPort, grafanaPort, objectPort, alertmgrPort,
	smtpPort, slackSinkPort, agentMetricsPort = ports9(freePorts(9))
)

const tlsHostnames = "ha.example.test,192.0.2.10"

func ports9(p []string) (a, b, c, d, e, f, g, h, i string) {
	return p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]
}

// freePorts finds n ports that nothing listens on, on any address, from a random start in
// 20000-29999 (below Linux's ephemeral range, which outgoing connections take from). All are
// held open until all are found, so they differ.
func freePorts(n int) []string {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	var out []string
	start := 20000 + rand.IntN(10000)
	for i := 0; len(out) < n && i < 10000; i++ {
		port := strconv.Itoa(20000 + (start-20000+i)%10000)
		l, err := net.Listen("tcp", ":"+port)
		if err != nil {
			continue
		}
		held = append(held, l)
		out = append(out, port)
	}
	if len(out) < n {
		panic(fmt.Sprintf("e2e: found only %d free ports in 20000-29999, need %d", len(out), n))
	}
	return out
}

// project is the compose project of the stack under test. It runs beside a user's own "hastack"
// stack without touching it: its own project name, host ports, and container names prefixed
// with "e2e-" (docker-compose.override.yml in the copy). docker-compose.yml's seed names
// (web1, db_slave, ...) are checked by TestComposeKeepsSeedNamesAndExposesOnlyWhatUsersAskFor.
const (
	project = "hastack-e2e"
	prefix  = "e2e-"
	// frontNetwork (nginx <-> web) has a subnet of its own, so a test can take a container's
	// address away from it (docker run --ip needs a user-configured subnet); the monitoring
	// network's gateway address is where the alert receivers of the tests listen (gatewayIP).
	frontNetwork     = project + "_front"
	frontNetPrefix   = "10.213.78" // FRONT_NET_PREFIX: web1 is .11, web2 .12
	dataNetPrefix    = "10.213.79" // DATA_NET_PREFIX: db_master is .21, db_slave .22
	monitoringSubnet = "10.213.77.0/24"
)

// stack is the HA stack under test: a copy of ../stack in a temporary directory, so the suite
// never touches the working tree's secrets or .env.
type stack struct {
	dir      string
	profiles string
}

// c returns the container name of a service of the stack under test.
func c(service string) string { return prefix + service }

// requireTools fails the test run with what to install when a prerequisite is missing.
func requireTools() error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("docker not found: install Docker Engine (Debian: apt-get install docker.io)")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return fmt.Errorf("docker engine unreachable (%s): start it (systemctl start docker)", strings.TrimSpace(string(out)))
	}
	out, err := exec.Command("docker", "compose", "version", "--short").CombinedOutput()
	if err != nil || !strings.HasPrefix(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), "2.") {
		return fmt.Errorf("docker compose v2 not found (%s): run scripts/bootstrap", strings.TrimSpace(string(out)))
	}
	for _, img := range []string{"debian:trixie-slim", "golang:1.26-trixie"} {
		if exec.Command("docker", "image", "inspect", img).Run() != nil {
			return fmt.Errorf("base image %s missing: run scripts/bootstrap", img)
		}
	}
	return nil
}

// newStack copies ../stack (and what it builds from: ../tools, and the Go module for lb-health and
// docker-proxy) without generated state.
func newStack() (*stack, error) {
	dir, err := os.MkdirTemp("", "hastack-e2e-")
	if err != nil {
		return nil, err
	}
	// The root's docker-compose.yml, .env and nginx (links into stack/) too: the seed's commands
	// run at the root.
	for _, d := range []string{"stack", "tools", "alert-rules", "go.mod", "go.sum", ".dockerignore", "cmd", "internal", "docker-compose.yml", ".env", "nginx"} {
		if out, err := exec.Command("cp", "-a", "../"+d, filepath.Join(dir, d)).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("copy %s: %v: %s", d, err, out)
		}
	}
	dst := filepath.Join(dir, "stack")
	for _, generated := range []string{".env", "secrets/db", "secrets/web", "secrets/grafana", "secrets/mysql_exporter", "secrets/objectstore", "secrets/alertmanager", "secrets/agent"} {
		os.RemoveAll(filepath.Join(dst, generated))
	}
	if err := prepareAlerting(dst); err != nil {
		return nil, err
	}
	matches, _ := filepath.Glob(filepath.Join(dst, "nginx/ssl/nginx.*"))
	for _, m := range matches {
		os.Remove(m)
	}
	var override strings.Builder
	override.WriteString("# Written by the e2e suite: container names that do not clash with a user's stack.\nservices:\n")
	for _, svc := range append(slices.Clone(longRunning), "secrets-init", "grafana") {
		fmt.Fprintf(&override, "  %s:\n    container_name: %s\n", svc, c(svc))
	}
	fmt.Fprintf(&override, "networks:\n")
	fmt.Fprintf(&override, "  monitoring:\n    ipam:\n      config:\n        - subnet: %s\n", monitoringSubnet)
	if err := os.WriteFile(filepath.Join(dst, "docker-compose.override.yml"), []byte(override.String()), 0o644); err != nil {
		return nil, err
	}
	s := &stack{dir: dst}
	// Upstream-only images run only where they are present (see the "upstream" profile).
	if exec.Command("docker", "image", "inspect", "grafana/grafana:12.1.1").Run() == nil {
		s.profiles = "upstream"
	}
	return s, nil
}

func (s *stack) env() []string { return append(os.Environ(), s.settings()...) }

// settings are the variables the stack under test runs with: ports, profiles, names.
func (s *stack) settings() []string {
	return append([]string{
		"COMPOSE_PROJECT_NAME=" + project, "COMPOSE_PROFILES=" + s.profiles,
		"HTTP_PORT=" + httpPort, "HTTPS_PORT=" + httpsPort,
		"PROMETHEUS_PORT=" + prometheusPort, "GRAFANA_PORT=" + grafanaPort,
		"OBJECTSTORE_PORT=" + objectPort, "ALERTMANAGER_PORT=" + alertmgrPort,
		"WEB_BIND=127.0.0.1", "GRAFANA_BIND=127.0.0.1", "PROMETHEUS_BIND=127.0.0.1", "OBJECTSTORE_BIND=127.0.0.1", "ALERTMANAGER_BIND=127.0.0.1",
		"TLS_HOSTNAMES=" + tlsHostnames, "FRONT_NET_PREFIX=" + frontNetPrefix, "DATA_NET_PREFIX=" + dataNetPrefix,
	}, alertSettings()...)
}

// run runs a command in the stack directory and returns its combined output.
func (s *stack) run(ctx context.Context, name string, args ...string) (string, error) {
	return s.runIn(ctx, s.dir, name, args...)
}

// runIn runs a command in dir with the stack's environment.
//
// `docker pause` is tried again (5 times at most) when the cgroup v1 freezer gave up ("unable to
// freeze"): it does when a task does not freeze in time (one in the kernel, as in an fsync on
// fuse-overlayfs; seen once in a full run), and leaves the container running. The fault the
// tests inject is the freeze, not its first attempt.
func (s *stack) runIn(ctx context.Context, dir, name string, args ...string) (string, error) {
	var buf bytes.Buffer
	var err error
	for attempt := 1; ; attempt++ {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = s.env()
		buf.Reset()
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err = cmd.Run()
		if err == nil || attempt == 5 || name != "docker" || len(args) == 0 || args[0] != "pause" || !strings.Contains(buf.String(), "unable to freeze") {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		return buf.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(buf.String(), 40))
	}
	return buf.String(), nil
}

func (s *stack) compose(ctx context.Context, args ...string) (string, error) {
	return s.run(ctx, "docker", append([]string{"compose"}, args...)...)
}

// secret reads a generated secret, e.g. "db/root_password".
func (s *stack) secret(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "secrets", name))
	if err != nil {
		t.Fatalf("read secret %s: %v", name, err)
	}
	return strings.TrimSpace(string(b))
}

// sql runs statements with the mariadb client inside a database service as user/password.
func (s *stack) sql(ctx context.Context, service, user, password, statements string) (string, error) {
	return s.run(ctx, "docker", "exec", "-e", "MYSQL_PWD="+password, c(service),
		"mariadb", "-u", user, "-N", "-B", "-e", statements)
}

func (s *stack) rootSQL(t testing.TB, ctx context.Context, service, statements string) string {
	t.Helper()
	out, err := s.sql(ctx, service, "root", s.secret(t, "db/root_password"), statements)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

type psEntry struct {
	Name    string `json:"Name"`
	Service string `json:"Service"`
	State   string `json:"State"`
	Health  string `json:"Health"`
}

// ps lists the project's containers (all states).
func (s *stack) ps(ctx context.Context) ([]psEntry, error) {
	out, err := s.compose(ctx, "ps", "-a", "--format", "json")
	if err != nil {
		return nil, err
	}
	var entries []psEntry
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var e psEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("parse compose ps line %q: %w", line, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// health returns a service's health status ("healthy", "starting", ...) or its state.
func health(ctx context.Context, service string) string {
	out, err := exec.CommandContext(ctx, "docker", "inspect", "--format",
		"{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}", c(service)).Output()
	if err != nil {
		return "absent"
	}
	return strings.TrimSpace(string(out))
}

// waitHealthy waits until every named service reports healthy.
func waitHealthy(ctx context.Context, timeout time.Duration, containers ...string) error {
	deadline := time.Now().Add(timeout)
	for {
		var bad []string
		for _, c := range containers {
			if h := health(ctx, c); h != "healthy" {
				bad = append(bad, c+"="+h)
			}
		}
		if len(bad) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy after %v: %s", timeout, strings.Join(bad, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// eventually polls cond every interval until it returns nil or timeout passes.
func eventually(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}

// httpsClient trusts any certificate (the stack's is self-signed) and keeps connections alive.
func httpsClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
			MaxIdleConnsPerHost: 100,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func siteURL(path string) string { return "https://127.0.0.1:" + httpsPort + path }

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
