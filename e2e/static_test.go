// Package e2e holds the stack's tests. This file's checks read the stack's files only (no
// Docker), so they run in every `go test ./...`; the end-to-end tests behind the e2e build tag
// run the real stack.
package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// panel is one dashboard panel and the PromQL of its targets.
type panel struct {
	Dashboard string // its dashboard's title
	UID       string // its dashboard's uid
	Title     string
	Exprs     []string
}

// agentDashboardUID is the Agent dashboard's: what `agent status` tells, from the agent's
// metrics, and where the agent's own alerts link (alerts.link, internal/setup). Its queries
// need a Prometheus that scrapes an agent: TestAgentRollsOutWebChange runs them.
const agentDashboardUID = "hastack-agent"

type dashboardJSON struct {
	UID    string      `json:"uid"`
	Title  string      `json:"title"`
	Panels []panelJSON `json:"panels"`
}

type panelJSON struct {
	Title      string          `json:"title"`
	Type       string          `json:"type"`
	Datasource *datasourceRef  `json:"datasource"`
	Targets    []targetJSON    `json:"targets"`
	Panels     []panelJSON     `json:"panels"` // rows
	FieldCfg   json.RawMessage `json:"fieldConfig"`
}

type targetJSON struct {
	Expr       string         `json:"expr"`
	Datasource *datasourceRef `json:"datasource"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func readDashboards(dir string) ([]dashboardJSON, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []dashboardJSON
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var d dashboardJSON
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func flatten(ps []panelJSON) []panelJSON {
	var out []panelJSON
	for _, p := range ps {
		if p.Type == "row" {
			out = append(out, flatten(p.Panels)...)
			continue
		}
		out = append(out, p)
	}
	return out
}

// loadDashboardPanels returns every panel with queries of the dashboards in dir.
func loadDashboardPanels(dir string) ([]panel, error) {
	ds, err := readDashboards(dir)
	if err != nil {
		return nil, err
	}
	var out []panel
	for _, d := range ds {
		for _, p := range flatten(d.Panels) {
			pp := panel{Dashboard: d.Title, UID: d.UID, Title: p.Title}
			for _, t := range p.Targets {
				if t.Expr != "" {
					pp.Exprs = append(pp.Exprs, t.Expr)
				}
			}
			if len(pp.Exprs) > 0 {
				out = append(out, pp)
			}
		}
	}
	return out, nil
}

var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "5m")

// grafanaToPromQL replaces Grafana's built-in interval variables with fixed values.
func grafanaToPromQL(expr string) string { return grafanaVars.Replace(expr) }

func TestDashboardsAreProvisionedByUID(t *testing.T) {
	ds, err := readDashboards("../stack/grafana/dashboards")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) < 5 {
		t.Fatalf("%d dashboards, want host, mysql, nginx, containers and agent", len(ds))
	}
	if !slices.ContainsFunc(ds, func(d dashboardJSON) bool { return d.UID == agentDashboardUID && d.Title == "Agent" }) {
		t.Errorf("no dashboard with uid %s and title Agent: the agent's alerts link to /d/%s", agentDashboardUID, agentDashboardUID)
	}
	uids := map[string]bool{}
	for _, d := range ds {
		if d.UID == "" || uids[d.UID] {
			t.Errorf("dashboard %q: uid %q empty or duplicated", d.Title, d.UID)
		}
		uids[d.UID] = true
		for _, p := range flatten(d.Panels) {
			if len(p.Targets) == 0 {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "prometheus" {
				t.Errorf("%s / %s: panel datasource %+v, want uid prometheus", d.Title, p.Title, p.Datasource)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("%s / %s: target without a query", d.Title, p.Title)
				}
				if tg.Datasource != nil && tg.Datasource.UID != "prometheus" {
					t.Errorf("%s / %s: target datasource %+v, want uid prometheus", d.Title, p.Title, tg.Datasource)
				}
			}
		}
	}
	// Dashboards exported for sharing carry ${DS_...} inputs that provisioning cannot resolve.
	files, _ := filepath.Glob("../stack/grafana/dashboards/*.json")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "${DS_") || strings.Contains(string(b), "__inputs") {
			t.Errorf("%s: has ${DS_...} placeholders or __inputs", f)
		}
	}
	// The datasource the panels name must be the one provisioned.
	var dsfile struct {
		Datasources []struct {
			Name string `yaml:"name"`
			Type string `yaml:"type"`
			UID  string `yaml:"uid"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, "../stack/grafana/provisioning/datasources/prometheus.yml", &dsfile)
	if len(dsfile.Datasources) != 1 || dsfile.Datasources[0].UID != "prometheus" || dsfile.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("datasource provisioning: %+v, want one with uid prometheus at http://prometheus:9090", dsfile.Datasources)
	}
	var provider struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "../stack/grafana/provisioning/dashboards/hastack.yml", &provider)
	if len(provider.Providers) != 1 || provider.Providers[0].Options.Path != "/var/lib/grafana/dashboards" {
		t.Errorf("dashboard provider: %+v, want one reading /var/lib/grafana/dashboards", provider.Providers)
	}
}

func TestDashboardPanelQueriesUseShippedMetrics(t *testing.T) {
	panels, err := loadDashboardPanels("../stack/grafana/dashboards")
	if err != nil {
		t.Fatal(err)
	}
	// Metric-name prefixes of the exporters the stack ships; a query naming anything else is
	// dead on arrival (the end-to-end suite also runs every query against live data).
	prefixes := []string{"node_", "mysql_", "nginx_", "container_", "up", "prometheus_", "alertmanager_"}
	// The agent ships with the stack too: its hastack_ metrics by their exact names.
	agent, err := agentMetrics("../internal")
	if err != nil {
		t.Fatal(err)
	}
	metric := regexp.MustCompile(`\b([a-z_][a-z0-9_]*)\s*(\{|\[)`)
	for _, p := range panels {
		for _, e := range p.Exprs {
			for _, m := range metric.FindAllStringSubmatch(e, -1) {
				if strings.HasPrefix(m[1], "hastack_") {
					if !agent[m[1]] {
						t.Errorf("%s / %s: %q names %s, which the agent does not export", p.Dashboard, p.Title, e, m[1])
					}
					continue
				}
				if !slices.ContainsFunc(prefixes, func(pre string) bool { return strings.HasPrefix(m[1], pre) }) {
					t.Errorf("%s / %s: %q names %s, not a metric of a shipped exporter", p.Dashboard, p.Title, e, m[1])
				}
			}
		}
	}
}

// agentMetrics returns the names of the metrics the agent registers (Name: "hastack_..." in
// the non-test Go files under dir), with the series a histogram adds (_bucket, _sum, _count).
func agentMetrics(dir string) (map[string]bool, error) {
	name := regexp.MustCompile(`Name:\s*"(hastack_[a-z0-9_]+)"`)
	histogram := regexp.MustCompile(`prometheus\.NewHistogram(Vec)?\(prometheus\.HistogramOpts\{\s*Name:\s*"(hastack_[a-z0-9_]+)"`)
	out := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
		for _, m := range histogram.FindAllStringSubmatch(string(b), -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				out[m[2]+suffix] = true
			}
		}
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("no hastack_ metric found in %s", dir)
	}
	return out, err
}

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Ports       []string          `yaml:"ports"`
		Environment map[string]string `yaml:"environment"`
		Profiles    []string          `yaml:"profiles"`
		Volumes     []string          `yaml:"volumes"`
	} `yaml:"services"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestComposeKeepsSeedNamesAndExposesOnlyWhatUsersAskFor(t *testing.T) {
	var c composeFile
	readYAML(t, "../stack/docker-compose.yml", &c)
	for _, name := range []string{"nginx", "web1", "web2", "db_master", "db_slave", "prometheus", "grafana",
		"alertmanager", "node_exporter", "mysql_exporter", "nginx_exporter", "cadvisor", "objectstore"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("service %s missing", name)
		}
	}
	published := map[string][]string{}
	for name, s := range c.Services {
		for _, p := range s.Ports {
			published[name] = append(published[name], p)
		}
	}
	allowed := map[string]string{
		// Grafana is served through nginx's TLS on GRAFANA_PORT; Grafana publishes nothing.
		"nginx":      `\$\{WEB_BIND:-0\.0\.0\.0\}:\$\{HTTPS?_PORT:-(80|443)\}:(80|443)|\$\{GRAFANA_BIND:-0\.0\.0\.0\}:\$\{GRAFANA_PORT:-3000\}:3000`,
		"prometheus": `\$\{PROMETHEUS_BIND:-127\.0\.0\.1\}:\$\{PROMETHEUS_PORT:-9090\}:9090`,
		// The agent (host network) reaches the bundled store on loopback.
		"objectstore": `\$\{OBJECTSTORE_BIND:-127\.0\.0\.1\}:\$\{OBJECTSTORE_PORT:-9000\}:7070`,
		// The agent posts its own alerts to it.
		"alertmanager": `\$\{ALERTMANAGER_BIND:-127\.0\.0\.1\}:\$\{ALERTMANAGER_PORT:-9093\}:9093`,
	}
	for name, ports := range published {
		re, ok := allowed[name]
		if !ok {
			t.Errorf("%s publishes %v: only nginx, prometheus, alertmanager and objectstore may reach the host", name, ports)
			continue
		}
		for _, p := range ports {
			if !regexp.MustCompile("^(?:" + re + ")$").MatchString(p) {
				t.Errorf("%s publishes %q: want a configurable address and port (%s)", name, p, re)
			}
		}
	}
	if !slices.Contains(c.Services["grafana"].Profiles, "upstream") {
		t.Error("grafana: an upstream-only image must sit under the upstream profile")
	}
}

// The seed runs its commands at the repository root: the root's docker-compose.yml is the
// stack's, as the same project, and ./nginx (the seed's certificate directory) and ./.env (where
// Compose reads COMPOSE_PROFILES) lead into stack/. The e2e suite runs `docker-compose ps` and
// `down -v` there.
func TestRootComposeIsTheStack(t *testing.T) {
	var root struct {
		Name    string   `yaml:"name"`
		Include []string `yaml:"include"`
	}
	var stack struct {
		Name string `yaml:"name"`
	}
	readYAML(t, "../docker-compose.yml", &root)
	readYAML(t, "../stack/docker-compose.yml", &stack)
	if root.Name != stack.Name || !slices.Equal(root.Include, []string{"stack/docker-compose.yml"}) {
		t.Errorf("root docker-compose.yml: name %q include %v, want name %q and include [stack/docker-compose.yml]", root.Name, root.Include, stack.Name)
	}
	for link, want := range map[string]string{"../nginx": "stack/nginx", "../.env": "stack/.env"} {
		if got, err := os.Readlink(link); err != nil || got != want {
			t.Errorf("%s: link to %q (%v), want %q", link, got, err, want)
		}
	}
}

func TestNoSecretInComposeOrImages(t *testing.T) {
	var c composeFile
	readYAML(t, "../stack/docker-compose.yml", &c)
	for name, s := range c.Services {
		for k, v := range s.Environment {
			if regexp.MustCompile(`(?i)pass|secret|token|key`).MatchString(k) && !strings.HasSuffix(k, "_FILE") {
				t.Errorf("%s: environment %s=%q: secrets reach services as files (*_FILE), never as values", name, k, v)
			}
		}
	}
	// Dockerfiles must not bake secrets in.
	files, _ := filepath.Glob("../stack/*/Dockerfile")
	more, _ := filepath.Glob("../stack/*/*/Dockerfile")
	for _, f := range append(files, more...) {
		b, _ := os.ReadFile(f)
		if regexp.MustCompile(`(?i)(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN)`).Match(b) {
			t.Errorf("%s: sets a secret-like ENV/ARG", f)
		}
	}
	// Generated secrets and certificates stay out of git.
	for _, dir := range []string{"../stack/secrets", "../stack/nginx/ssl"} {
		b, err := os.ReadFile(filepath.Join(dir, ".gitignore"))
		if err != nil || !strings.Contains(string(b), "*") {
			t.Errorf("%s/.gitignore must ignore everything generated there", dir)
		}
	}
}

// Every image built from the repository's Go programs has the same build stage, which builds
// them all: built together, BuildKit runs it once for all of them (the first run compiles once,
// not once per image), and its cache mounts serve the next build. A stage that drifted in one
// Dockerfile would silently compile again, so the stages must be equal, instruction for
// instruction (comments and line continuations aside).
func TestGoImagesShareOneBuildStage(t *testing.T) {
	stage := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "\\\n", " ")
		var lines []string
		in := false
		for _, line := range strings.Split(text, "\n") {
			line = strings.Join(strings.Fields(line), " ")
			switch {
			case strings.HasPrefix(line, "#") || line == "":
				continue
			case strings.HasPrefix(line, "FROM "):
				in = strings.HasSuffix(line, " AS build")
			}
			if in {
				lines = append(lines, line)
			}
		}
		if len(lines) == 0 {
			t.Fatalf("%s has no stage named build", path)
		}
		return strings.Join(lines, "\n")
	}
	want := stage("../Dockerfile")
	if !strings.Contains(want, "go build") || !strings.Contains(want, "./cmd/...") {
		t.Fatalf("../Dockerfile's build stage does not build ./cmd/...:\n%s", want)
	}
	for _, path := range []string{"../stack/lb-health/Dockerfile", "../stack/docker-proxy/Dockerfile", "../stack/alertmanager/Dockerfile"} {
		if got := stage(path); got != want {
			t.Errorf("%s's build stage differs from ../Dockerfile's (the images would compile separately):\n%s\nwant:\n%s", path, got, want)
		}
	}
}
