//go:build e2e

package alertrules

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The stack's own images: the promtool and amtool of the Prometheus and Alertmanager versions
// that run the rules, built from Debian trixie's packages.
const (
	prometheusImage   = "hastack/prometheus"
	alertmanagerImage = "hastack/alertmanager"
	// Containers inherit the compose labels of images built by compose; a label of their own
	// keeps them out of any compose project's listing (the e2e suite counts its project's).
	ownLabel = "com.docker.compose.project=hastack-alertrules-test"
)

func requireImage(t *testing.T, image string) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("docker not found: install Docker Engine (Debian: apt-get install docker.io)")
	}
	if out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", image).CombinedOutput(); err != nil {
		t.Fatalf("image %s missing (%s): run scripts/bootstrap, then "+
			"docker compose -f stack/docker-compose.yml build prometheus alertmanager",
			image, strings.TrimSpace(string(out)))
	}
}

// docker runs docker with args and returns its combined output.
func docker(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// inRules returns the paths of the files matching glob, as seen inside a container that
// mounts this directory at /rules.
func inRules(t *testing.T, glob string) []string {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s", glob)
	}
	for i, f := range files {
		files[i] = "/rules/" + filepath.ToSlash(f)
	}
	return files
}

func promtool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	requireImage(t, prometheusImage)
	run := []string{"run", "--rm", "--label", ownLabel, "--entrypoint", "promtool",
		"-v", abs(t, ".") + ":/rules:ro", prometheusImage}
	return docker(t, append(run, args...)...)
}

func TestPromtoolCheckRules(t *testing.T) {
	files := inRules(t, "*.yml")
	out, err := promtool(t, append([]string{"check", "rules"}, files...)...)
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if n := strings.Count(out, "SUCCESS"); n != len(files) {
		t.Errorf("promtool check rules: %d SUCCESS for %d files\n%s", n, len(files), out)
	}
	t.Logf("promtool check rules: %d files\n%s", len(files), out)
}

func TestPromtoolTestRules(t *testing.T) {
	files := inRules(t, "tests/*.yml")
	out, err := promtool(t, append([]string{"test", "rules"}, files...)...)
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	if n := strings.Count(out, "SUCCESS"); n != len(files) {
		t.Errorf("promtool test rules: %d SUCCESS for %d files\n%s", n, len(files), out)
	}
	t.Logf("promtool test rules: %d files\n%s", len(files), out)
}

// alertmanagerRun is `docker run` of the Alertmanager image with this working tree's
// configuration template, notification templates and entrypoint mounted over the image's, so
// that what is tested is what is committed.
func alertmanagerRun(t *testing.T, extra ...string) []string {
	t.Helper()
	requireImage(t, alertmanagerImage)
	if out, _ := docker(t, "image", "inspect", "--format", "{{json .Config.Entrypoint}}", alertmanagerImage); !strings.Contains(out, "alertmanager-entrypoint") {
		t.Fatalf("image %s is older than stack/alertmanager/Dockerfile (entrypoint %s): "+
			"docker compose -f stack/docker-compose.yml build alertmanager", alertmanagerImage, strings.TrimSpace(out))
	}
	am := abs(t, "../stack/alertmanager")
	args := []string{"run", "--label", ownLabel,
		"-v", am + "/alertmanager.tmpl.yml:/etc/alertmanager/alertmanager.tmpl.yml:ro",
		"-v", am + "/templates:/etc/alertmanager/templates:ro",
		"-v", am + "/entrypoint.sh:/usr/local/bin/alertmanager-entrypoint:ro"}
	return append(args, extra...)
}

// fakeSecrets writes every secret file the entrypoint knows, each holding a marker that must
// never appear in output, owned by root and readable by nobody else (as a user's would be).
func fakeSecrets(t *testing.T) (dir string, markers []string) {
	t.Helper()
	dir = t.TempDir()
	files := map[string]string{
		"slack_webhook_url": "https://hooks.slack.example/services/T000/B000/SLACKMARKER%d",
		"smtp_password":     "SMTPMARKER%d",
		"watchdog_url":      "https://deadman.example/ping/WATCHDOGMARKER%d",
	}
	for name, format := range files {
		v := fmt.Sprintf(format, os.Getpid())
		markers = append(markers, v[strings.LastIndex(v, "/")+1:])
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir, markers
}

var allReceivers = []string{
	"-e", "ALERT_SLACK_CHANNEL=#hastack-alerts",
	"-e", "ALERT_EMAIL_TO=ops@example.com",
	"-e", "ALERT_EMAIL_FROM=hastack <alerts@example.com>",
	"-e", "ALERT_SMTP_SMARTHOST=smtp.example.com:587",
	"-e", "ALERT_SMTP_USERNAME=alerts@example.com",
	"-e", "ALERTMANAGER_GROUP_WAIT=1s",
	"-e", "ALERTMANAGER_GROUP_INTERVAL=2s",
	"-e", "ALERTMANAGER_REPEAT_INTERVAL=1m",
	"-e", "ALERTMANAGER_EXTERNAL_URL=https://alerts.example.com",
}

func TestAlertmanagerConfig(t *testing.T) {
	t.Run("the shipped template is a valid configuration by itself", func(t *testing.T) {
		out, err := docker(t, alertmanagerRun(t, "--rm", "--entrypoint", "amtool", alertmanagerImage,
			"check-config", "/etc/alertmanager/alertmanager.tmpl.yml")...)
		if err != nil {
			t.Fatalf("amtool check-config alertmanager.tmpl.yml: %v\n%s", err, out)
		}
	})

	t.Run("no receiver configured: valid, alerts in the UI only", func(t *testing.T) {
		out, err := docker(t, alertmanagerRun(t, "--rm", alertmanagerImage, "check")...)
		if err != nil {
			t.Fatalf("entrypoint check: %v\n%s", err, out)
		}
		for _, unwanted := range []string{"slack_configs", "email_configs", "webhook_configs"} {
			if strings.Contains(out, unwanted) {
				t.Errorf("rendered without secrets or settings, the configuration has %s:\n%s", unwanted, out)
			}
		}
		for _, want := range []string{"no receiver configured", "SUCCESS", "receiver: ui-only", "group_wait: 30s"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("every receiver configured: valid, secrets only as files, timings from the environment", func(t *testing.T) {
		secrets, markers := fakeSecrets(t)
		args := append([]string{"--rm", "-v", secrets + ":/run/secrets:ro"}, allReceivers...)
		out, err := docker(t, alertmanagerRun(t, append(args, alertmanagerImage, "check")...)...)
		if err != nil {
			t.Fatalf("entrypoint check: %v\n%s", err, out)
		}
		for _, m := range markers {
			if strings.Contains(out, m) {
				t.Errorf("a secret (%s) is in the output or the rendered configuration:\n%s", m, out)
			}
		}
		for want, n := range map[string]int{
			"slack_configs:": 2, // critical and warning
			"api_url_file: /run/alertmanager/secrets/slack_webhook_url":   2,
			`channel: "#hastack-alerts"`:                                  2,
			"email_configs:":                                              1, // critical only
			`to: "ops@example.com"`:                                       1,
			`smarthost: "smtp.example.com:587"`:                           1,
			`auth_username: "alerts@example.com"`:                         1,
			"auth_password_file: /run/alertmanager/secrets/smtp_password": 1,
			"url_file: /run/alertmanager/secrets/watchdog_url":            1,
			"send_resolved: true":                                         3,
			"group_wait: 1s":                                              1,
			"group_interval: 2s":                                          1,
			"repeat_interval: 1m":                                         1,
			"SUCCESS":                                                     2,
		} {
			if got := strings.Count(out, want); got != n {
				t.Errorf("%q appears %d times, want %d", want, got, n)
			}
		}
		if t.Failed() {
			t.Logf("output:\n%s", out)
		}
	})

	t.Run("incomplete or invalid settings are refused with a reason", func(t *testing.T) {
		for _, c := range []struct {
			env  []string
			want string
		}{
			{[]string{"-e", "ALERT_EMAIL_TO=ops@example.com", "-e", "ALERT_SMTP_SMARTHOST=smtp.example.com:587"}, "ALERT_EMAIL_FROM is not"},
			{[]string{"-e", "ALERT_EMAIL_TO=ops@example.com", "-e", "ALERT_EMAIL_FROM=a@example.com", "-e", "ALERT_SMTP_SMARTHOST=smtp.example.com"}, "host:port"},
			{[]string{"-e", "ALERT_SMTP_SMARTHOST=smtp.example.com:25"}, "ALERT_EMAIL_TO is not"},
			{[]string{"-e", "ALERTMANAGER_GROUP_WAIT=soon"}, `ALERTMANAGER_GROUP_WAIT: "soon"`},
		} {
			args := append([]string{"--rm"}, c.env...)
			out, err := docker(t, alertmanagerRun(t, append(args, alertmanagerImage, "check")...)...)
			if err == nil || !strings.Contains(out, c.want) {
				t.Errorf("%v: err %v, want a failure saying %q; output:\n%s", c.env, err, c.want, out)
			}
		}
	})

	t.Run("the notification templates execute", func(t *testing.T) {
		for _, tmpl := range []string{"hastack.title", "hastack.color", "slack.hastack.text",
			"email.hastack.subject", "email.hastack.text", "email.hastack.html"} {
			out, err := docker(t, alertmanagerRun(t, "--rm", "--entrypoint", "amtool", alertmanagerImage,
				"template", "render", "--template.glob=/etc/alertmanager/templates/*.tmpl",
				`--template.text={{ template "`+tmpl+`" . }}`)...)
			if err != nil || strings.TrimSpace(out) == "" {
				t.Errorf("amtool template render %s: %v\n%s", tmpl, err, out)
			}
		}
	})

	t.Run("Slack text taken from alerts is escaped", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data.json")
		os.WriteFile(data, []byte(`{"receiver":"slack","status":"firing","alerts":[{"status":"firing",
			"labels":{"alertname":"DeployFailed","severity":"critical"},
			"annotations":{"summary":"<!channel> deploy & fail","description":"see <http://evil.example|the logs>"},
			"startsAt":"2026-12-01T00:00:00Z","generatorURL":"http://prometheus/graph"}],
			"commonLabels":{"alertname":"DeployFailed","severity":"critical"},"externalURL":"http://alertmanager"}`), 0o644)
		out, err := docker(t, alertmanagerRun(t, "--rm", "-v", data+":/tmp/data.json:ro", "--entrypoint", "amtool", alertmanagerImage,
			"template", "render", "--template.glob=/etc/alertmanager/templates/*.tmpl", "--template.data=/tmp/data.json",
			`--template.text={{ template "slack.hastack.text" . }}`)...)
		if err != nil {
			t.Fatalf("amtool template render: %v\n%s", err, out)
		}
		for _, want := range []string{"&lt;!channel&gt; deploy &amp; fail", "see &lt;http://evil.example|the logs&gt;", "<http://prometheus/graph|Graph in Prometheus>"} {
			if !strings.Contains(out, want) {
				t.Errorf("Slack text lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("Alertmanager starts unprivileged, with private files and no secret in its logs", func(t *testing.T) {
		secrets, markers := fakeSecrets(t)
		name := fmt.Sprintf("rules-test-alertmanager-%d", os.Getpid())
		args := append([]string{"-d", "--name", name, "-v", secrets + ":/run/secrets:ro"}, allReceivers...)
		if out, err := docker(t, alertmanagerRun(t, append(args, alertmanagerImage)...)...); err != nil {
			t.Fatalf("docker run: %v\n%s", err, out)
		}
		t.Cleanup(func() { docker(t, "rm", "-f", "-v", name) })

		ready := regexp.MustCompile(`HTTP/1\.[01] 200`)
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, _ := docker(t, "exec", name, "bash", "-c",
				`exec 3<>/dev/tcp/127.0.0.1/9093 && printf 'GET /-/ready HTTP/1.0\r\n\r\n' >&3 && cat <&3`)
			if ready.MatchString(out) {
				break
			}
			if time.Now().After(deadline) {
				logs, _ := docker(t, "logs", name)
				t.Fatalf("Alertmanager not ready after 30 s:\n%s", logs)
			}
			time.Sleep(500 * time.Millisecond)
		}
		out, err := docker(t, "exec", name, "bash", "-c", `
			echo "uid $(awk '/^Uid:/ {print $2}' /proc/1/status) $(id -u prometheus)"
			echo "comm $(cat /proc/1/comm)"
			stat -L -c 'config %a %U %G' /etc/alertmanager/alertmanager.yml
			stat -c 'secrets %a %U' /run/alertmanager/secrets
			stat -c 'secret %a %U' /run/alertmanager/secrets/slack_webhook_url`)
		if err != nil {
			t.Fatalf("inspect: %v\n%s", err, out)
		}
		fields := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
			fields[k] = v
		}
		if f := strings.Fields(fields["uid"]); len(f) != 2 || f[0] != f[1] || f[0] == "0" {
			t.Errorf("Alertmanager runs as uid %v, want the prometheus user's", f)
		}
		for k, want := range map[string]string{
			"comm": "prometheus-aler", "config": "640 root prometheus", "secrets": "500 prometheus", "secret": "400 prometheus",
		} {
			if fields[k] != want {
				t.Errorf("%s: %q, want %q", k, fields[k], want)
			}
		}
		logs, _ := docker(t, "logs", name)
		for _, m := range markers {
			if strings.Contains(logs, m) {
				t.Errorf("a secret (%s) is in the logs:\n%s", m, logs)
			}
		}
		if !strings.Contains(logs, "slack=true") || !strings.Contains(logs, "email=true") || !strings.Contains(logs, "watchdog=true") {
			t.Errorf("the logs do not say which receivers are on:\n%s", logs)
		}
	})
}
