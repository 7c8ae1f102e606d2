// Package alertrules holds no Go code: it is the directory of the stack's Prometheus alert
// rules (one file per group) and their promtool unit tests (tests/). The tests of this package
// check the rules statically, without Docker: every alert is labelled, annotated and held for a
// while before it fires; every alert is proven by a promtool test that makes it fire and one
// that keeps it quiet; and every metric it reads is one that the stack's exporters really
// export. promtool itself runs them in promtool_e2e_test.go (build tag e2e).
package alertrules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// knownMetrics are the metrics the rules may read, each with where its name was checked.
// "live": scraped from the stack's own exporter image running here (Debian trixie packages:
// node_exporter 1.9.0, mysqld_exporter 0.17.2 against MariaDB 11.8 primary and replica,
// nginx-prometheus-exporter 1.4.1, Prometheus 2.53.3, Alertmanager 0.28.1; cAdvisor built from
// tools/cadvisor, library v0.60.6). "source": the agent's Go source, where TestAgentMetricsExist
// finds them. "announced": an agent metric of work in progress, not in the source yet.
var knownMetrics = map[string]string{
	"up": "live: Prometheus",

	"node_filesystem_avail_bytes":     "live: node_exporter",
	"node_filesystem_size_bytes":      "live: node_exporter",
	"node_filesystem_readonly":        "live: node_exporter",
	"node_memory_MemAvailable_bytes":  "live: node_exporter",
	"node_memory_MemTotal_bytes":      "live: node_exporter",
	"node_cpu_seconds_total":          "live: node_exporter",
	"node_load15":                     "live: node_exporter",
	"node_disk_io_time_seconds_total": "live: node_exporter",
	"node_vmstat_oom_kill":            "live: node_exporter (vmstat collector, default fields)",
	"node_timex_offset_seconds":       "live: node_exporter",
	"node_timex_sync_status":          "live: node_exporter",
	"node_timex_maxerror_seconds":     "live: node_exporter",

	"mysql_up":                                        "live: mysqld_exporter /probe",
	"mysql_slave_status_slave_io_running":             "live: mysqld_exporter slave_status (Connecting = 0)",
	"mysql_slave_status_slave_sql_running":            "live: mysqld_exporter slave_status",
	"mysql_slave_status_seconds_behind_master":        "live: mysqld_exporter slave_status (absent while NULL)",
	"mysql_global_variables_read_only":                "live: mysqld_exporter global_variables",
	"mysql_global_variables_max_connections":          "live: mysqld_exporter global_variables",
	"mysql_global_status_threads_connected":           "live: mysqld_exporter global_status",
	"mysql_global_status_slow_queries":                "live: mysqld_exporter global_status",
	"mysql_global_status_access_denied_errors":        "live: mysqld_exporter global_status",
	"mysql_global_status_rpl_semi_sync_master_status": "live: mysqld_exporter global_status (ON 1, OFF 0; 0 with rpl_semi_sync_master_enabled OFF)",

	"nginx_up":                   "live: nginx_exporter (0 when stub_status fails)",
	"nginx_connections_accepted": "live: nginx_exporter",
	"nginx_connections_handled":  "live: nginx_exporter",

	"container_last_seen":                "live: cAdvisor (explicit timestamps)",
	"container_start_time_seconds":       "live: cAdvisor (changes on restart, same series)",
	"container_health_state":             "live: cAdvisor (1 healthy, 0 starting/unhealthy, -1 none)",
	"container_memory_working_set_bytes": "live: cAdvisor",
	"container_spec_memory_limit_bytes":  "live: cAdvisor (0 without a limit)",

	"prometheus_rule_evaluation_failures_total": "live: Prometheus",
	"prometheus_config_last_reload_successful":  "live: Prometheus",
	"prometheus_notifications_errors_total":     "live: Prometheus",
	"prometheus_notifications_sent_total":       "live: Prometheus",

	"alertmanager_notifications_failed_total":    "live: Alertmanager (integration, reason)",
	"alertmanager_config_last_reload_successful": "live: Alertmanager",

	"hastack_agent_sync_failures_total":                   "source",
	"hastack_agent_rollbacks_total":                       "source",
	"hastack_agent_drift_corrections_total":               "source",
	"hastack_agent_drifted_services":                      "source",
	"hastack_agent_alert_firing":                          "source",
	"hastack_agent_backup_failures_total":                 "source",
	"hastack_binlog_archive_at_risk_seconds":              "source",
	"hastack_binlog_archive_connected":                    "source",
	"hastack_agent_backup_last_success_timestamp_seconds": "source",
	"hastack_agent_drill_failures_total":                  "source",
	"hastack_agent_drill_last_success_timestamp_seconds":  "source",
	"hastack_agent_drill_last_ok":                         "source (0 before the first drill)",
	"hastack_db_watch_last_round_timestamp_seconds":       "announced (the database watch; only while it is configured)",
}

var severities = map[string]bool{"critical": true, "warning": true, "info": true}

// Rule files: the subset of Prometheus' format the stack uses, decoded strictly so that a
// misspelt key fails here rather than being ignored.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           *string           `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// alwaysFiring says whether an alert is Watchdog-like: it fires unconditionally, so it has no
// `for` and no quiet case.
func (r rule) alwaysFiring() bool { return strings.TrimSpace(r.Expr) == "vector(1)" }

// promtool test files.
type testFile struct {
	RuleFiles          []string `yaml:"rule_files"`
	EvaluationInterval string   `yaml:"evaluation_interval"`
	GroupEvalOrder     []string `yaml:"group_eval_order"`
	Tests              []struct {
		Name           string            `yaml:"name"`
		Interval       string            `yaml:"interval"`
		ExternalLabels map[string]string `yaml:"external_labels"`
		ExternalURL    string            `yaml:"external_url"`
		InputSeries    []struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		} `yaml:"input_series"`
		AlertRuleTests []alertRuleTest `yaml:"alert_rule_test"`
		PromQLExprTest []struct {
			Expr       string `yaml:"expr"`
			EvalTime   string `yaml:"eval_time"`
			ExpSamples []struct {
				Labels string  `yaml:"labels"`
				Value  float64 `yaml:"value"`
			} `yaml:"exp_samples"`
		} `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

type alertRuleTest struct {
	EvalTime  string `yaml:"eval_time"`
	Alertname string `yaml:"alertname"`
	ExpAlerts []struct {
		ExpLabels      map[string]string `yaml:"exp_labels"`
		ExpAnnotations map[string]string `yaml:"exp_annotations"`
	} `yaml:"exp_alerts"`
}

func decodeStrict(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// alertDef is one alerting rule and where it is.
type alertDef struct {
	rule
	file, group string
}

// check returns every problem of the rules in dir and of the promtool tests in dir/tests.
func check(dir string) []string {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	ruleFiles, _ := filepath.Glob(filepath.Join(dir, "*.yml"))
	if len(ruleFiles) == 0 {
		return []string{"no rule files (*.yml) in " + dir}
	}
	var alerts []alertDef
	byName := map[string][]alertDef{}
	for _, f := range ruleFiles {
		var rf ruleFile
		if err := decodeStrict(f, &rf); err != nil {
			fail("%v", err)
			continue
		}
		base := strings.TrimSuffix(filepath.Base(f), ".yml")
		if len(rf.Groups) != 1 || rf.Groups[0].Name != base {
			fail("%s: want exactly one group, named %q (one file per group)", filepath.Base(f), base)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				a := alertDef{rule: r, file: filepath.Base(f), group: g.Name}
				alerts = append(alerts, a)
				byName[r.Alert] = append(byName[r.Alert], a)
				problems = append(problems, checkAlert(a)...)
			}
		}
	}

	// A name is shared only by the critical and warning variants of one alert, in one group.
	for name, defs := range byName {
		if len(defs) == 1 {
			continue
		}
		seen := map[string]bool{}
		for _, d := range defs {
			if d.group != defs[0].group {
				fail("%s: defined in groups %s and %s: a name belongs to one group", name, defs[0].group, d.group)
			}
			if seen[d.Labels["severity"]] {
				fail("%s: defined twice with severity %q: only severity variants may share a name", name, d.Labels["severity"])
			}
			seen[d.Labels["severity"]] = true
		}
	}

	// The promtool tests: what fires, what stays quiet, which rule files are covered.
	fires := map[string]bool{} // alertname + "/" + severity
	quiet := map[string]bool{}
	covered := map[string]bool{}
	testFiles, _ := filepath.Glob(filepath.Join(dir, "tests", "*.yml"))
	if len(testFiles) == 0 {
		fail("no promtool tests (tests/*.yml) in %s", dir)
	}
	for _, tf := range testFiles {
		var t testFile
		if err := decodeStrict(tf, &t); err != nil {
			fail("%v", err)
			continue
		}
		name := "tests/" + filepath.Base(tf)
		inFile := map[string]bool{}
		if len(t.RuleFiles) == 0 {
			fail("%s: no rule_files", name)
		}
		for _, rfPath := range t.RuleFiles {
			p := filepath.Clean(filepath.Join(filepath.Dir(tf), rfPath))
			if filepath.Dir(p) != filepath.Clean(dir) {
				fail("%s: rule file %s is not one of %s/*.yml", name, rfPath, dir)
				continue
			}
			if _, err := os.Stat(p); err != nil {
				fail("%s: rule file %s does not exist", name, rfPath)
				continue
			}
			covered[filepath.Base(p)] = true
			for _, a := range alerts {
				if a.file == filepath.Base(p) {
					inFile[a.Alert] = true
				}
			}
		}
		for _, g := range t.Tests {
			for _, at := range g.AlertRuleTests {
				where := fmt.Sprintf("%s: test %q, %s at %s", name, g.Name, at.Alertname, at.EvalTime)
				// promtool passes an expectation of silence for an alert it never loaded.
				if !inFile[at.Alertname] {
					fail("%s: no alert %s in this test's rule_files: the case proves nothing", where, at.Alertname)
					continue
				}
				if at.EvalTime == "" {
					fail("%s: no eval_time", where)
				}
				if len(at.ExpAlerts) == 0 {
					quiet[at.Alertname] = true
					continue
				}
				for _, e := range at.ExpAlerts {
					sev := e.ExpLabels["severity"]
					if sev == "" || e.ExpLabels["service"] == "" {
						fail("%s: an expected alert without severity or service in exp_labels", where)
					}
					if e.ExpAnnotations["summary"] == "" || e.ExpAnnotations["description"] == "" {
						fail("%s: an expected alert without summary and description in exp_annotations", where)
					}
					fires[at.Alertname+"/"+sev] = true
				}
			}
		}
	}

	for _, a := range alerts {
		if !fires[a.Alert+"/"+a.Labels["severity"]] {
			fail("%s (%s, %s): no promtool test makes it fire (an alert_rule_test with exp_alerts of that severity)",
				a.Alert, a.Labels["severity"], a.file)
		}
		if !a.alwaysFiring() && !quiet[a.Alert] {
			fail("%s (%s): no promtool test keeps it quiet (an alert_rule_test with exp_alerts: [])", a.Alert, a.file)
		}
	}
	for _, f := range ruleFiles {
		if !covered[filepath.Base(f)] {
			fail("%s: not in the rule_files of any test in tests/", filepath.Base(f))
		}
	}
	sort.Strings(problems)
	return problems
}

var (
	durationRE   = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)
	checkFirstRE = regexp.MustCompile(`Check first( \([^)]*\))?: \S`)
)

func checkAlert(a alertDef) []string {
	var p []string
	where := fmt.Sprintf("%s (%s)", a.Alert, a.file)
	if !severities[a.Labels["severity"]] {
		p = append(p, fmt.Sprintf("%s: severity %q, want critical, warning or info", where, a.Labels["severity"]))
	}
	if a.Labels["service"] == "" {
		p = append(p, where+": no service label (used for grouping and inhibition)")
	}
	if strings.TrimSpace(a.Annotations["summary"]) == "" {
		p = append(p, where+": no summary annotation")
	}
	if d := a.Annotations["description"]; strings.TrimSpace(d) == "" {
		p = append(p, where+": no description annotation")
	} else if !checkFirstRE.MatchString(d) {
		p = append(p, where+`: the description does not say what to check first ("Check first: ...")`)
	}
	switch {
	case a.alwaysFiring() && a.For != nil:
		p = append(p, where+": an always-firing alert needs no for")
	case !a.alwaysFiring() && a.For == nil:
		p = append(p, where+": no for: a single evaluation would fire it")
	case !a.alwaysFiring() && (!durationRE.MatchString(*a.For) || strings.Trim(*a.For, "0msdhwy") == ""):
		p = append(p, fmt.Sprintf("%s: for %q, want a duration above zero", where, *a.For))
	}
	for _, m := range metricNames(a.Expr) {
		if _, ok := knownMetrics[m]; !ok {
			p = append(p, fmt.Sprintf("%s: reads %s, which is not a metric known to be exported (knownMetrics)", where, m))
		}
	}
	return p
}

var (
	stringRE   = regexp.MustCompile("\"(\\\\.|[^\"\\\\])*\"|'(\\\\.|[^'\\\\])*'|`[^`]*`")
	bracesRE   = regexp.MustCompile(`\{[^{}]*\}|\[[^\[\]]*\]`)
	groupingRE = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	identRE    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	keywords   = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true,
		"without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true,
	}
)

// metricNames returns the metric names a PromQL expression selects: identifiers outside
// strings, label matchers, ranges and grouping clauses that are neither functions, keywords
// nor parts of numbers and durations.
func metricNames(expr string) []string {
	e := stringRE.ReplaceAllString(expr, `""`)
	e = bracesRE.ReplaceAllString(e, " ")
	e = groupingRE.ReplaceAllString(e, " ")
	seen := map[string]bool{}
	var names []string
	for _, loc := range identRE.FindAllStringIndex(e, -1) {
		id := e[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsRune("0123456789.", rune(e[loc[0]-1])) {
			continue // 5m, 1e9
		}
		if rest := strings.TrimLeft(e[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		if keywords[id] || seen[id] {
			continue
		}
		seen[id] = true
		names = append(names, id)
	}
	return names
}

func TestRulesAndTheirTests(t *testing.T) {
	for _, p := range check(".") {
		t.Error(p)
	}
}

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want string
	}{
		{`up{job="nginx"} == 0`, "up"},
		{`rate(a_total{x="y"}[5m]) - rate(b_total[5m]) > 0`, "a_total b_total"},
		{`1 - avg by (job, instance) (rate(c{mode="idle"}[5m])) > 0.9`, "c"},
		{`d / on(job, instance) count by (job, instance) (e) > 2`, "d e"},
		{`label_replace(f > 0, "agent_alert", "$1", "alertname", "(.*)")`, "f"},
		{`time() - max_over_time(g[27h]) > 26 * 3600 and on(instance) h offset 26h`, "g h"},
		{`absent_over_time(i{name=~"web1|web2"}[1h]) or vector(0) > 1e9`, "i"},
		{"max_over_time((j > bool 1)[1h:5m]) unless ignoring(x) k", "j k"},
	} {
		if got := strings.Join(metricNames(c.expr), " "); got != c.want {
			t.Errorf("metricNames(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// TestAgentMetricsExist: the agent's metrics that the rules read are defined in its source,
// except those announced by work in progress.
func TestAgentMetricsExist(t *testing.T) {
	var src strings.Builder
	err := filepath.WalkDir("../internal", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		src.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, where := range knownMetrics {
		if !strings.HasPrefix(name, "hastack_") {
			continue
		}
		defined := strings.Contains(src.String(), `"`+name+`"`)
		switch {
		case strings.HasPrefix(where, "source") && !defined:
			t.Errorf("%s: not defined in ../internal (renamed?): the rules that read it are dead", name)
		case strings.HasPrefix(where, "announced") && !defined:
			t.Logf("%s: announced, not in the agent's source yet", name)
		case strings.HasPrefix(where, "announced") && defined:
			t.Logf("%s: now in the agent's source: mark it \"source\" in knownMetrics", name)
		}
	}
}

// TestCheckFindsDefects runs the checker on small broken rule sets: a check that cannot fail
// proves nothing.
func TestCheckFindsDefects(t *testing.T) {
	const goodRule = `groups:
  - name: demo
    rules:
      - alert: DemoDown
        expr: up{job="demo"} == 0
        for: 1m
        labels: {severity: critical, service: demo}
        annotations:
          summary: "demo is down"
          description: "It is down. Check first: docker logs demo."
`
	const goodTest = `rule_files: [../demo.yml]
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="demo"}'
        values: '1x5 0x5'
    alert_rule_test:
      - eval_time: 3m
        alertname: DemoDown
        exp_alerts: []
      - eval_time: 9m
        alertname: DemoDown
        exp_alerts:
          - exp_labels: {severity: critical, service: demo, job: demo}
            exp_annotations: {summary: "demo is down", description: "It is down. Check first: docker logs demo."}
`
	cases := []struct {
		name        string
		rules, test string
		extra       map[string]string // more files, by path under the directory
		want        string            // a substring of one problem
	}{
		{name: "good", rules: goodRule, test: goodTest},
		{
			name: "a rule without any test", rules: goodRule + `      - alert: DemoSlow
        expr: demo_latency_seconds > 1
        for: 5m
        labels: {severity: warning, service: demo}
        annotations: {summary: "slow", description: "Slow. Check first: the logs."}
`, test: goodTest, want: "DemoSlow (warning, demo.yml): no promtool test makes it fire",
		},
		{
			name: "no quiet case", rules: goodRule,
			test: strings.Replace(goodTest, "      - eval_time: 3m\n        alertname: DemoDown\n        exp_alerts: []\n", "", 1),
			want: "DemoDown (demo.yml): no promtool test keeps it quiet",
		},
		{
			name: "no firing case", rules: goodRule,
			test: goodTest[:strings.Index(goodTest, "      - eval_time: 9m")],
			want: "no promtool test makes it fire",
		},
		{
			name: "the critical variant never fires in a test",
			rules: goodRule + `      - alert: DemoDown
        expr: up{job="demo"} == 0
        for: 10m
        labels: {severity: warning, service: demo}
        annotations: {summary: "demo is down", description: "Down. Check first: docker logs demo."}
`,
			test: strings.Replace(goodTest, "severity: critical, service: demo, job: demo", "severity: warning, service: demo, job: demo", 1),
			want: "DemoDown (critical, demo.yml): no promtool test makes it fire",
		},
		{
			name: "a test of an alert its rule files do not have", rules: goodRule,
			test: strings.Replace(goodTest, "alertname: DemoDown\n        exp_alerts: []", "alertname: DemoDwn\n        exp_alerts: []", 1),
			want: "no alert DemoDwn in this test's rule_files",
		},
		{name: "bad severity", rules: strings.Replace(goodRule, "severity: critical", "severity: page", 1), test: goodTest, want: `severity "page"`},
		{name: "no service", rules: strings.Replace(goodRule, ", service: demo}", "}", 1), test: goodTest, want: "no service label"},
		{name: "no for", rules: strings.Replace(goodRule, "        for: 1m\n", "", 1), test: goodTest, want: "no for"},
		{name: "for zero", rules: strings.Replace(goodRule, "for: 1m", "for: 0m", 1), test: goodTest, want: `for "0m"`},
		{name: "no check-first", rules: strings.Replace(goodRule, "Check first: docker logs demo.", "Bad.", 1), test: goodTest, want: "what to check first"},
		{name: "unknown metric", rules: strings.Replace(goodRule, `up{job="demo"}`, `nginx_upp{job="demo"}`, 1), test: goodTest, want: "reads nginx_upp"},
		{name: "misspelt key", rules: strings.Replace(goodRule, "annotations:", "anotations:", 1), test: goodTest, want: "field anotations not found"},
		{name: "group not named as the file", rules: strings.Replace(goodRule, "name: demo", "name: other", 1), test: goodTest, want: "named \"demo\""},
		{
			name: "a rule file no test loads", rules: goodRule, test: goodTest,
			extra: map[string]string{"extra.yml": strings.Replace(strings.Replace(goodRule, "name: demo", "name: extra", 1), "DemoDown", "ExtraDown", 1)},
			want:  "extra.yml: not in the rule_files of any test",
		},
		{
			name: "the same name twice at one severity", rules: goodRule + goodRule[strings.Index(goodRule, "      - alert"):], test: goodTest,
			want: "only severity variants may share a name",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"demo.yml": c.rules, "tests/demo_test.yml": c.test}
			for k, v := range c.extra {
				files[k] = v
			}
			for p, content := range files {
				if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			problems := check(dir)
			if c.want == "" {
				for _, p := range problems {
					t.Errorf("unexpected problem: %s", p)
				}
				return
			}
			for _, p := range problems {
				if strings.Contains(p, c.want) {
					return
				}
			}
			t.Errorf("no problem contains %q; got %q", c.want, problems)
		})
	}
}
