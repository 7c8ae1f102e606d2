//go:build e2e

package alerts

// End to end with real parts: the stack's own Alertmanager image (its entrypoint renders the
// stack's configuration, with the Slack receiver pointed at an HTTP sink and e-mail at mailpit),
// a real mailpit SMTP capture server, and the Delivery as `agent run` wires it.
//
//	go test -tags e2e -run . ./internal/alerts/

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	e2eImage     = "hastack/alertmanager"
	e2eContainer = "alerts-e2e-am"
	// Containers inherit the compose labels of images built by compose; a label of their own
	// keeps this one out of the stack's project.
	e2eLabel       = "com.docker.compose.project=hastack-alerts-e2e"
	mailpitModule  = "github.com/axllent/mailpit@v1.27.11"
	e2eSlackSecret = "T000/B000/E2ESECRETPATH"
)

func TestE2EDelivery(t *testing.T) {
	requireAlertmanagerImage(t)
	mp := startMailpit(t)
	sink := newSink(t)
	amPort := freePort(t)
	amURL := fmt.Sprintf("http://127.0.0.1:%d", amPort)
	startAlertmanager(t, amPort, sink.URL+"/services/"+e2eSlackSecret, mp.smtp)

	// The agent's side, as cmd/agent wires it, with short intervals.
	logs, log := newLogBuffer()
	reg := prometheus.NewRegistry()
	slack, err := NewSlack(sink.URL+"/services/"+e2eSlackSecret, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	email, err := NewEmail(EmailOptions{Smarthost: mp.smtp, From: "hastack agent <agent@example.com>",
		To: []string{"ops@example.com"}, Username: "agent", Password: "E2ESMTPPASSWORD", RequireTLS: false})
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDelivery(Options{AlertmanagerURL: amURL, ResendInterval: time.Second, RepeatInterval: time.Hour,
		Slack: slack, Email: email, Instance: "e2e-host"}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	events := NewLogger(log, reg).DeliverTo(d)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("Delivery.Run did not stop within 15 s")
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", logs)
		}
		for _, secret := range []string{"E2ESECRETPATH", "E2ESMTPPASSWORD"} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("the agent's log shows a secret (%s)", secret)
			}
		}
	})

	t.Run("through Alertmanager", func(t *testing.T) {
		events.Event(ctx, "DeployFailed", true, map[string]string{"commit": "e2e0001"}, "deploy of e2e0001 failed: web1 did not become healthy")
		events.Event(ctx, "DeployRolledBack", true, map[string]string{"commit": "e2e0001"},
			"deploy of e2e0001 failed and was rolled back to e2e0000: web1 did not become healthy")

		var got amAlert
		waitFor(t, 30*time.Second, "Alertmanager to list DeployRolledBack", func() (bool, string) {
			alerts, err := amAlerts(amURL, "DeployRolledBack")
			if err != nil || len(alerts) != 1 {
				return false, fmt.Sprintf("%v %+v", err, alerts)
			}
			got = alerts[0]
			return got.Status.State == "active", fmt.Sprintf("%+v", got)
		})
		for k, v := range map[string]string{"alertname": "DeployRolledBack", "severity": "warning", "service": "agent",
			"component": "agent", "instance": "e2e-host", "commit": "e2e0001"} {
			if got.Labels[k] != v {
				t.Errorf("label %s=%q, want %q (labels %v)", k, got.Labels[k], v, got.Labels)
			}
		}
		if !strings.Contains(got.Annotations["summary"], "e2e0001") || !strings.Contains(got.Annotations["description"], "Check first:") {
			t.Errorf("annotations %v", got.Annotations)
		}
		// The stack's routing: warning to Slack, critical to Slack and e-mail.
		sink.waitFor(t, "Alertmanager's Slack message for DeployRolledBack", "[FIRING:1] DeployRolledBack (warning)")
		sink.waitFor(t, "Alertmanager's Slack message for DeployFailed", "[FIRING:1] DeployFailed (critical)")
		mp.waitFor(t, "Alertmanager's e-mail for DeployFailed", "[FIRING:1] DeployFailed (critical)", "e2e0001")

		// A newer commit deployed: DeployFailed resolved, and with it the rollback.
		events.Event(ctx, "DeployFailed", false, nil, "")
		waitFor(t, 30*time.Second, "Alertmanager to resolve DeployRolledBack", func() (bool, string) {
			alerts, err := amAlerts(amURL, "DeployRolledBack")
			if err != nil {
				return false, err.Error()
			}
			for _, a := range alerts {
				if a.Status.State == "active" && a.EndsAt.After(time.Now()) {
					return false, fmt.Sprintf("%+v", a)
				}
			}
			return true, ""
		})
		sink.waitFor(t, "Alertmanager's resolved Slack message", "[RESOLVED] DeployRolledBack (warning)")
		if n := sink.count("*[FIRING]"); n != 0 {
			t.Errorf("%d messages went directly while Alertmanager was up", n)
		}
	})

	t.Run("Alertmanager stopped: directly, once", func(t *testing.T) {
		docker(t, "stop", "-t", "5", e2eContainer)
		description := "backup failed: dump of db_slave: exit status 2 (e2e)"
		events.Event(ctx, "BackupFailed", true, nil, description)

		sink.waitFor(t, "the agent's own Slack message", "*[FIRING] BackupFailed (critical)*")
		msg := mp.waitFor(t, "the agent's own e-mail", "[FIRING] BackupFailed (critical)", description)
		if !strings.Contains(msg.Subject, "A scheduled backup failed (e2e-host)") {
			t.Errorf("subject %q", msg.Subject)
		}
		for _, want := range []string{"Check first:", "Host:   e2e-host", "Alertmanager did not take the alert"} {
			if !strings.Contains(msg.Text, want) {
				t.Errorf("e-mail body lacks %q:\n%s", want, msg.Text)
			}
		}
		if !strings.Contains(sink.find("*[FIRING] BackupFailed"), description) {
			t.Errorf("the Slack message lacks the description: %s", sink.find("*[FIRING] BackupFailed"))
		}

		// Many delivery rounds later (one a second), still one of each.
		failures := metricValue(t, reg, "hastack_agent_alert_delivery_failures_total", "path", "alertmanager")
		time.Sleep(15 * time.Second)
		if n := metricValue(t, reg, "hastack_agent_alert_delivery_failures_total", "path", "alertmanager") - failures; n < 5 {
			t.Errorf("only %v more failed posts in 15 s: the rounds did not run", n)
		}
		if n := sink.count("*[FIRING] BackupFailed"); n != 1 {
			t.Errorf("%d Slack messages for one failure, want 1", n)
		}
		if n := len(mp.find(t, "[FIRING] BackupFailed")); n != 1 {
			t.Errorf("%d e-mails for one failure, want 1", n)
		}
	})

	t.Run("Alertmanager back: it gets the current state", func(t *testing.T) {
		docker(t, "start", e2eContainer)
		waitReady(t, amURL)
		waitFor(t, 30*time.Second, "Alertmanager to list BackupFailed again", func() (bool, string) {
			alerts, err := amAlerts(amURL, "BackupFailed")
			if err != nil || len(alerts) != 1 {
				return false, fmt.Sprintf("%v %+v", err, alerts)
			}
			return alerts[0].Status.State == "active", fmt.Sprintf("%+v", alerts[0])
		})
		events.Event(ctx, "BackupFailed", false, nil, "")
		sink.waitFor(t, "Alertmanager's resolved Slack message for BackupFailed", "[RESOLVED] BackupFailed (critical)")
		if n := sink.count("*[RESOLVED]"); n != 0 {
			t.Errorf("%d resolutions went directly although Alertmanager took them", n)
		}
	})
}

// requireAlertmanagerImage fails, with the command that builds it, when the image is missing.
func requireAlertmanagerImage(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("docker not found: install Docker Engine (Debian: apt-get install docker.io)")
	}
	if out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", e2eImage).CombinedOutput(); err != nil {
		t.Fatalf("image %s missing (%s): run scripts/bootstrap, then "+
			"docker compose -f stack/docker-compose.yml build alertmanager", e2eImage, strings.TrimSpace(string(out)))
	}
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond every 200 ms until it holds or timeout passes; state describes the last try.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startAlertmanager runs the stack's Alertmanager image on the host's network (so that it
// reaches the sink and mailpit on loopback), its configuration rendered by its own entrypoint:
// Slack to slackURL, e-mail to smtp without TLS, group timings of seconds.
func startAlertmanager(t *testing.T, port int, slackURL, smtp string) {
	t.Helper()
	secrets := t.TempDir()
	if err := os.WriteFile(filepath.Join(secrets, "slack_webhook_url"), []byte(slackURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	exec.Command("docker", "rm", "-f", e2eContainer).Run() // a leftover of an interrupted run
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "logs", "--tail", "40", e2eContainer).CombinedOutput()
			t.Logf("alertmanager log:\n%s", out)
		}
		exec.Command("docker", "rm", "-f", e2eContainer).Run()
	})
	docker(t, "run", "-d", "--name", e2eContainer, "--label", e2eLabel, "--network", "host",
		"-v", secrets+":/run/secrets:ro",
		"-e", "ALERT_EMAIL_TO=ops@example.com",
		"-e", "ALERT_EMAIL_FROM=hastack <alertmanager@example.com>",
		"-e", "ALERT_SMTP_SMARTHOST="+smtp,
		"-e", "ALERT_SMTP_REQUIRE_TLS=false",
		"-e", "ALERTMANAGER_GROUP_WAIT=1s",
		"-e", "ALERTMANAGER_GROUP_INTERVAL=2s",
		"-e", "ALERTMANAGER_REPEAT_INTERVAL=1h",
		e2eImage,
		"--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager",
		"--cluster.listen-address=", fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port))
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d", port))
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, 60*time.Second, "Alertmanager to be ready", func() (bool, string) {
		resp, err := client.Get(base + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// amAlert is an alert as Alertmanager's GET /api/v2/alerts lists it.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

func amAlerts(base, name string) ([]amAlert, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(base + "/api/v2/alerts?filter=" + url.QueryEscape(`alertname="`+name+`"`))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	var alerts []amAlert
	return alerts, json.NewDecoder(resp.Body).Decode(&alerts)
}

// sink records Slack-format webhook posts: Alertmanager's (attachments with a title) and the
// agent's own ({"text": ...}).
type sink struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var text bytes.Buffer
		// Undo JSON escaping so that tests match plain text.
		var v any
		if json.Unmarshal(b, &v) == nil {
			collectStrings(v, &text)
		}
		s.mu.Lock()
		s.bodies = append(s.bodies, text.String())
		s.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	return s
}

func collectStrings(v any, out *bytes.Buffer) {
	switch x := v.(type) {
	case string:
		out.WriteString(x + "\n")
	case []any:
		for _, e := range x {
			collectStrings(e, out)
		}
	case map[string]any:
		for _, e := range x {
			collectStrings(e, out)
		}
	}
}

func (s *sink) count(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count0(substr)
}

func (s *sink) find(substr string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.bodies {
		if strings.Contains(b, substr) {
			return b
		}
	}
	return ""
}

func (s *sink) waitFor(t *testing.T, what, substr string) {
	t.Helper()
	waitFor(t, 30*time.Second, what, func() (bool, string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.count0(substr) > 0, fmt.Sprintf("%d posts: %q", len(s.bodies), s.bodies)
	})
}

func (s *sink) count0(substr string) int { // with s.mu held
	n := 0
	for _, b := range s.bodies {
		if strings.Contains(b, substr) {
			n++
		}
	}
	return n
}

// mailpit is a running mailpit: SMTP on smtp, its API on api.
type mailpit struct {
	smtp, api string
}

type mailpitMessage struct {
	ID      string `json:"ID"`
	Subject string `json:"Subject"`
	Text    string `json:"Text"`
}

// startMailpit runs mailpit on loopback ports, installing it first if it is not there.
func startMailpit(t *testing.T) *mailpit {
	t.Helper()
	bin := mailpitBinary(t)
	m := &mailpit{
		smtp: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		api:  fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
	}
	dir := t.TempDir()
	var out bytes.Buffer
	cmd := exec.Command(bin, "--smtp", m.smtp, "--listen", strings.TrimPrefix(m.api, "http://"),
		"--database", filepath.Join(dir, "mailpit.db"), "--smtp-auth-accept-any", "--smtp-auth-allow-insecure",
		"--smtp-disable-rdns")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("mailpit output:\n%s", out.String())
		}
	})
	client := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, 30*time.Second, "mailpit to answer", func() (bool, string) {
		resp, err := client.Get(m.api + "/api/v1/messages")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return m
}

func mailpitBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("mailpit"); err == nil {
		return p
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env GOPATH: %v", err)
	}
	bin := filepath.Join(strings.TrimSpace(strings.Split(string(gopath), string(os.PathListSeparator))[0]), "bin", "mailpit")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("installing %s (a minute or two)", mailpitModule)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", mailpitModule)
	cmd.Dir = t.TempDir() // outside this module: its go.mod stays as it is
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s: %v\n%s", mailpitModule, err, out)
	}
	return bin
}

// find returns the messages whose subject contains subject, with their text.
func (m *mailpit) find(t *testing.T, subject string) []mailpitMessage {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	var list struct {
		Messages []mailpitMessage `json:"messages"`
	}
	if err := getJSON(client, m.api+"/api/v1/messages?limit=200", &list); err != nil {
		t.Fatalf("mailpit: %v", err)
	}
	var out []mailpitMessage
	for _, msg := range list.Messages {
		if !strings.Contains(msg.Subject, subject) {
			continue
		}
		var full mailpitMessage
		if err := getJSON(client, m.api+"/api/v1/message/"+msg.ID, &full); err != nil {
			t.Fatalf("mailpit: %v", err)
		}
		out = append(out, full)
	}
	return out
}

// waitFor waits for a message whose subject contains subject and whose text contains text.
func (m *mailpit) waitFor(t *testing.T, what, subject, text string) mailpitMessage {
	t.Helper()
	var got mailpitMessage
	waitFor(t, 30*time.Second, what, func() (bool, string) {
		msgs := m.find(t, subject)
		for _, msg := range msgs {
			if strings.Contains(msg.Text, text) {
				got = msg
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d messages with that subject: %+v", len(msgs), msgs)
	})
	return got
}

func getJSON(client *http.Client, u string, v any) error {
	resp, err := client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
