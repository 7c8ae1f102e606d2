//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The alert receivers of the stack under test: a real SMTP capture server (mailpit) and an HTTP
// sink that records Slack-format webhook posts. They listen on the test network's gateway
// address, which the Alertmanager container reaches; the stack is configured for them by
// settings() and newStack() before it starts, and they are started when the alert steps run
// (the address exists once the network does; Alertmanager retries until then).
// smtpPort and slackSinkPort are theirs, agentMetricsPort where an agent under test serves
// /metrics on the Docker bridge (all chosen free: harness_test.go).
const (
	gatewayIP      = "10.213.77.1" // the first address of monitoringSubnet
	mailpitVersion = "v1.27.11"
)

// dockerBridgeIP is the default bridge's address (host.docker.internal in containers).
func dockerBridgeIP(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("docker", "network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}").Output()
	if ip := strings.TrimSpace(string(out)); err == nil && ip != "" {
		return ip
	}
	out, err = exec.Command("ip", "-4", "-o", "addr", "show", "docker0").Output()
	if f := strings.Fields(string(out)); err == nil && len(f) >= 4 {
		return strings.Split(f[3], "/")[0]
	}
	t.Fatalf("the Docker bridge's address: neither docker network inspect bridge nor ip addr show docker0 tells it (install iproute2)")
	return ""
}

// alertSettings are the stack's receiver settings and short group timings for the tests.
func alertSettings() []string {
	return []string{
		"ALERT_EMAIL_TO=ops@example.test", "ALERT_EMAIL_FROM=hastack <alerts@example.test>",
		"ALERT_SMTP_SMARTHOST=" + gatewayIP + ":" + smtpPort, "ALERT_SMTP_REQUIRE_TLS=false",
		"ALERTMANAGER_GROUP_WAIT=1s", "ALERTMANAGER_GROUP_INTERVAL=5s", "ALERTMANAGER_REPEAT_INTERVAL=1h",
	}
}

// prepareAlerting points the copy's Slack receiver at the sink, evaluates rules every 5 s and
// shortens every rule's for: to 5 s (short timings in the test configuration only).
func prepareAlerting(stackDir string) error {
	dir := filepath.Join(stackDir, "secrets", "alertmanager")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "slack_webhook_url"), []byte("http://"+gatewayIP+":"+slackSinkPort+"/slack\n"), 0o600); err != nil {
		return err
	}
	prom := filepath.Join(stackDir, "prometheus", "prometheus.yml")
	b, err := os.ReadFile(prom)
	if err != nil {
		return err
	}
	b = bytes.ReplaceAll(b, []byte("scrape_interval: 15s"), []byte("scrape_interval: 5s"))
	b = bytes.ReplaceAll(b, []byte("evaluation_interval: 15s"), []byte("evaluation_interval: 5s"))
	// The agent under test serves its metrics on a port of its own, beside a user's agent.
	b = bytes.ReplaceAll(b, []byte("host.docker.internal:9700"), []byte("host.docker.internal:"+agentMetricsPort))
	if err := os.WriteFile(prom, b, 0o644); err != nil {
		return err
	}
	rules, _ := filepath.Glob(filepath.Join(stackDir, "..", "alert-rules", "*.yml"))
	for _, f := range rules {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var out []string
		for _, line := range strings.Split(string(b), "\n") {
			if trimmed := strings.TrimSpace(line); strings.HasPrefix(trimmed, "for: ") {
				line = line[:len(line)-len(trimmed)] + "for: 5s"
			}
			out = append(out, line)
		}
		if err := os.WriteFile(f, []byte(strings.Join(out, "\n")), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// receivers are the running sinks.
type receivers struct {
	mailAPI   string
	slackAddr string
	smtpAddr  string
	mu        sync.Mutex
	slack     []string // bodies posted
}

var (
	recvOnce sync.Once
	recv     *receivers
	recvErr  error
)

// alertReceivers starts the sinks once for the suite.
func alertReceivers(t *testing.T) *receivers {
	t.Helper()
	recvOnce.Do(func() {
		var stop func()
		recv, stop, recvErr = startReceivers(gatewayIP+":"+slackSinkPort, gatewayIP+":"+smtpPort)
		cleanups = append(cleanups, stop)
	})
	if recvErr != nil {
		t.Fatal(recvErr)
	}
	return recv
}

// startReceivers starts a Slack sink on slackAddr and mailpit with its SMTP on smtpAddr; stop
// ends both.
func startReceivers(slackAddr, smtpAddr string) (*receivers, func(), error) {
	r := &receivers{slackAddr: slackAddr, smtpAddr: smtpAddr}
	ln, err := net.Listen("tcp", slackAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("slack sink on %s: %w", slackAddr, err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		r.mu.Lock()
		r.slack = append(r.slack, string(b))
		r.mu.Unlock()
		w.Write([]byte("ok"))
	}))
	bin, err := mailpitBinary()
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	apiAddr := freeAddrNoT()
	cmd := exec.Command(bin, "--smtp", smtpAddr, "--listen", apiAddr)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		ln.Close()
		return nil, nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() { ln.Close(); cmd.Process.Kill(); <-exited }
	r.mailAPI = "http://" + apiAddr
	if err := eventually(30*time.Second, 200*time.Millisecond, func() error {
		select {
		case <-exited:
			return fmt.Errorf("mailpit exited")
		default:
		}
		resp, err := http.Get(r.mailAPI + "/api/v1/messages")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}); err != nil {
		stop()
		return nil, nil, fmt.Errorf("mailpit did not start: %v\n%s", err, out.String())
	}
	// Its SMTP listener binds after its API: one that cannot (the port taken, say by a mailpit
	// left behind by a killed run) makes it exit a moment later.
	select {
	case <-exited:
		ln.Close()
		return nil, nil, fmt.Errorf("mailpit exited after starting (is %s taken? a mailpit left by an earlier run: pkill mailpit): %s", smtpAddr, out.String())
	case <-time.After(time.Second):
	}
	return r, stop, nil
}

func mailpitBinary() (string, error) {
	if p, err := exec.LookPath("mailpit"); err == nil {
		return p, nil
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	bin := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "mailpit")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if out, err := exec.Command("go", "install", "github.com/axllent/mailpit@"+mailpitVersion).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install mailpit (the SMTP capture server of the alert tests): %v\n%s", err, out)
	}
	return bin, nil
}

func freeAddrNoT() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// agentAlertsConfig is an agent's alerts section sending to these receivers, with Alertmanager
// at amAddr (where nothing need listen).
func (r *receivers) agentAlertsConfig(t *testing.T, amAddr string) string {
	t.Helper()
	hook := filepath.Join(t.TempDir(), "slack_webhook_url")
	if err := os.WriteFile(hook, []byte("http://"+r.slackAddr+"/slack\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`alerts:
  alertmanager_url: http://%s
  resend_interval: 5s
  slack:
    webhook_url_file: %s
  email:
    smarthost: %s
    from: agent@example.test
    to: [ops@example.test]
    require_tls: false
`, amAddr, hook, r.smtpAddr)
}

// reset forgets what was received so far (notifications of earlier steps).
func (r *receivers) reset(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	r.slack = nil
	r.mu.Unlock()
	req, _ := http.NewRequest(http.MethodDelete, r.mailAPI+"/api/v1/messages", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// slackPosts returns the Slack posts that mention every one of words.
func (r *receivers) slackPosts(words ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.slack {
		if containsAll(b, words) {
			out = append(out, b)
		}
	}
	return out
}

// mails returns the subjects of the e-mails whose subject and text mention every one of words.
// mailMessages lists the mails (id, subject) whose subject or snippet mention words.
func (r *receivers) mailMessages(t *testing.T, words ...string) (ids, subjects []string) {
	t.Helper()
	var list struct {
		Messages []struct {
			ID      string `json:"ID"`
			Subject string `json:"Subject"`
			Snippet string `json:"Snippet"`
		} `json:"messages"`
	}
	if err := getJSON(r.mailAPI+"/api/v1/messages?limit=200", &list); err != nil {
		t.Fatal(err)
	}
	for _, m := range list.Messages {
		if containsAll(m.Subject+" "+m.Snippet, words) {
			ids, subjects = append(ids, m.ID), append(subjects, m.Subject)
		}
	}
	return ids, subjects
}

// mails returns the subjects of the mails that mention words.
func (r *receivers) mails(t *testing.T, words ...string) []string {
	t.Helper()
	_, subjects := r.mailMessages(t, words...)
	return subjects
}

// mailTexts returns the plain-text bodies of the mails whose subject or snippet mention words.
func (r *receivers) mailTexts(t *testing.T, words ...string) []string {
	t.Helper()
	ids, _ := r.mailMessages(t, words...)
	var out []string
	for _, id := range ids {
		var msg struct {
			Text string `json:"Text"`
		}
		if err := getJSON(r.mailAPI+"/api/v1/message/"+id, &msg); err != nil {
			t.Fatal(err)
		}
		out = append(out, msg.Text)
	}
	return out
}

func containsAll(s string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// waitNotified waits until both receivers got a notification mentioning words.
func waitNotified(t *testing.T, r *receivers, timeout time.Duration, slack bool, mail bool, words ...string) {
	t.Helper()
	start := time.Now()
	err := eventually(timeout, time.Second, func() error {
		if slack && len(r.slackPosts(words...)) == 0 {
			return fmt.Errorf("no Slack post with %q", words)
		}
		if mail && len(r.mails(t, words...)) == 0 {
			return fmt.Errorf("no e-mail with %q", words)
		}
		return nil
	})
	if err != nil {
		r.mu.Lock()
		n := len(r.slack)
		r.mu.Unlock()
		t.Fatalf("after %s: %v (%d Slack posts in all, e-mails: %v)", time.Since(start).Round(time.Second), err, n, r.mails(t))
	}
	t.Logf("%q notified after %s", words, time.Since(start).Round(time.Second))
}

// testBackendAlert: stopping web1 fires the backend alert to Slack and e-mail; starting it
// again resolves it on both.
func testBackendAlert(t *testing.T, ctx context.Context) {
	r := alertReceivers(t)
	r.reset(t)
	if out, err := exec.CommandContext(ctx, "docker", "stop", c("web1")).CombinedOutput(); err != nil {
		t.Fatalf("docker stop: %v\n%s", err, out)
	}
	started := false
	defer func() {
		if !started {
			exec.Command("docker", "start", c("web1")).Run()
		}
	}()
	waitNotified(t, r, 3*time.Minute, true, true, "WebBackendDown", "FIRING")
	posts := r.slackPosts("WebBackendDown", "FIRING")
	if !strings.Contains(posts[0], "web1") {
		t.Fatalf("the Slack post does not name web1:\n%s", posts[0])
	}
	// Links the operator can open (the published ports on this host), never a container id.
	if link := "http://127.0.0.1:" + prometheusPort + "/graph"; !strings.Contains(posts[0], link) {
		t.Errorf("the Slack post has no link to %s:\n%s", link, posts[0])
	}
	if link, texts := "http://127.0.0.1:"+alertmgrPort+"/#/alerts", r.mailTexts(t, "WebBackendDown", "FIRING"); len(texts) == 0 || !strings.Contains(texts[0], link) {
		t.Errorf("the e-mail has no link to %s:\n%v", link, texts)
	}
	if out, err := exec.CommandContext(ctx, "docker", "start", c("web1")).CombinedOutput(); err != nil {
		t.Fatalf("docker start: %v\n%s", err, out)
	}
	started = true
	waitNotified(t, r, 2*time.Minute, true, true, "WebBackendDown", "RESOLVED")
	if err := waitHealthy(ctx, time.Minute, "web1"); err != nil {
		t.Fatal(err)
	}
}

// testReplicationAlert: stopping the replica's SQL thread fires the replication alert.
func testReplicationAlert(t *testing.T, ctx context.Context) {
	r := alertReceivers(t)
	r.reset(t)
	st.rootSQL(t, ctx, "db_slave", "STOP SLAVE SQL_THREAD")
	defer st.rootSQL(t, ctx, "db_slave", "START SLAVE SQL_THREAD")
	waitNotified(t, r, 2*time.Minute, true, true, "MySQLReplicationSQLThreadStopped", "FIRING")
}
