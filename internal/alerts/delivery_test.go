package alerts

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// slackSecret is the secret part of the fake Slack webhook's URL: it must never be logged.
const slackSecret = "T0SECRET/B0SECRET/XXXXSECRETXXXX"

// testLink is the rig's GeneratorURL, as `agent init` makes alerts.link (with a query, whose &
// Slack's markup escapes).
const testLink = "https://ha.example.com:3000/d/hastack-agent?orgId=1&refresh=30s"

// rig is a Delivery with a fake Alertmanager, Slack and SMTP server, and a clock the test moves.
type rig struct {
	t      *testing.T
	am     *fakeAlertmanager
	slack  *fakeSlack
	smtp   *fakeSMTP
	d      *Delivery
	events *Logger
	reg    *prometheus.Registry
	logs   *logBuffer
	clock  time.Time
}

func newRig(t *testing.T, edit func(*Options)) *rig {
	t.Helper()
	r := &rig{t: t, am: newFakeAlertmanager(t), slack: newFakeSlack(t), smtp: newFakeSMTP(t, nil),
		reg: prometheus.NewRegistry(), clock: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)}
	slack, err := NewSlack(r.slack.URL+"/services/"+slackSecret, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	email, err := NewEmail(EmailOptions{Smarthost: r.smtp.addr(), From: "hastack <alerts@example.com>",
		To: []string{"ops@example.com"}, Hello: "host1.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{AlertmanagerURL: r.am.URL, ResendInterval: time.Minute, RepeatInterval: 4 * time.Hour,
		Slack: slack, Email: email, Instance: "host1", GeneratorURL: testLink}
	if edit != nil {
		edit(&opts)
	}
	var log *slog.Logger
	r.logs, log = newLogBuffer()
	r.d, err = NewDelivery(opts, log, r.reg)
	if err != nil {
		t.Fatal(err)
	}
	r.d.now = func() time.Time { return r.clock }
	r.events = NewLogger(log, r.reg).DeliverTo(r.d)
	return r
}

func (r *rig) advance(d time.Duration) { r.clock = r.clock.Add(d) }

func (r *rig) flush() { r.d.flush(context.Background()) }

func (r *rig) fire(name string, labels map[string]string, description string) {
	r.events.Event(context.Background(), name, true, labels, description)
}

func (r *rig) resolve(name string) {
	r.events.Event(context.Background(), name, false, nil, "")
}

// counts returns how many messages Slack and e-mail received.
func (r *rig) counts() (slack, email int) {
	return len(r.slack.messages()), len(r.smtp.messages())
}

func (r *rig) wantCounts(slack, email int) {
	r.t.Helper()
	if s, e := r.counts(); s != slack || e != email {
		r.t.Errorf("direct messages: slack %d, email %d; want %d, %d\nslack: %q", s, e, slack, email, r.slack.messages())
	}
}

func (r *rig) metric(name string, labels ...string) float64 {
	r.t.Helper()
	return metricValue(r.t, r.reg, name, labels...)
}

// metricValue reads a counter or gauge from reg; labels are name, value pairs.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func findAlert(alerts []Alert, name string) (Alert, bool) {
	for _, a := range alerts {
		if a.Name() == name {
			return a, true
		}
	}
	return Alert{}, false
}

func TestPostedAlertHasLabelsAnnotationsAndEndsAt(t *testing.T) {
	r := newRig(t, nil)
	r.fire("DeployRolledBack", map[string]string{"commit": "abc1234"}, "deploy of abc1234 failed and was rolled back to 0f0f0f0: web1 unhealthy")
	r.flush()

	post := r.am.last(t)
	if len(post) != 1 {
		t.Fatalf("posted %d alerts, want 1: %+v", len(post), post)
	}
	a := post[0]
	wantLabels := map[string]string{"alertname": "DeployRolledBack", "severity": "warning", "service": "agent",
		"component": "agent", "instance": "host1", "commit": "abc1234"}
	if len(a.Labels) != len(wantLabels) {
		t.Errorf("labels %v, want %v", a.Labels, wantLabels)
	}
	for k, v := range wantLabels {
		if a.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, a.Labels[k], v)
		}
	}
	if s := a.Annotations["summary"]; !strings.Contains(s, "abc1234") || !strings.Contains(s, "host1") {
		t.Errorf("summary %q lacks the commit or the host", s)
	}
	desc := a.Annotations["description"]
	for _, want := range []string{"web1 unhealthy", "Check first:", "docker exec hastack-agent agent status"} {
		if !strings.Contains(desc, want) {
			t.Errorf("description %q lacks %q", desc, want)
		}
	}
	if !a.StartsAt.Equal(r.clock) || !a.EndsAt.Equal(r.clock.Add(5*time.Minute)) {
		t.Errorf("startsAt %v endsAt %v, want %v and 5 minutes later", a.StartsAt, a.EndsAt, r.clock)
	}
	if a.GeneratorURL != testLink {
		t.Errorf("generatorURL %q", a.GeneratorURL)
	}
	r.wantCounts(0, 0)
	if got := r.metric("hastack_agent_alert_deliveries_total", "path", "alertmanager"); got != 1 {
		t.Errorf("deliveries{alertmanager} = %v, want 1", got)
	}
	if got := r.metric("hastack_agent_alertmanager_up"); got != 1 {
		t.Errorf("hastack_agent_alertmanager_up = %v", got)
	}
}

func TestSeverities(t *testing.T) {
	for name, want := range map[string]string{
		"DeployFailed": "critical", "DeployRolledBack": "warning", "DriftCorrected": "warning",
		"BackupFailed": "critical", "DrillFailed": "warning", "SomethingNew": "warning",
	} {
		a := newAlert(name, map[string]string{"severity": "info", "alertname": "x"}, "d", "h", "", time.Now())
		if a.Labels["severity"] != want || a.Name() != name {
			t.Errorf("%s: labels %v, want severity %s", name, a.Labels, want)
		}
	}
}

func TestFiringAlertIsPostedAgainAndResolved(t *testing.T) {
	r := newRig(t, nil)
	r.fire("BackupFailed", nil, "backup failed: dump: exit status 2")
	start := r.clock
	r.flush()

	r.advance(time.Minute)
	r.fire("BackupFailed", nil, "backup failed: upload: timeout") // still failing: news only
	r.flush()
	a, ok := findAlert(r.am.last(t), "BackupFailed")
	if !ok {
		t.Fatal("not posted again")
	}
	if !a.StartsAt.Equal(start) || !a.EndsAt.Equal(r.clock.Add(5*time.Minute)) {
		t.Errorf("re-post: startsAt %v endsAt %v, want %v and now+5m", a.StartsAt, a.EndsAt, start)
	}
	if !strings.Contains(a.Annotations["description"], "upload: timeout") {
		t.Errorf("description not updated: %q", a.Annotations["description"])
	}

	r.advance(30 * time.Second)
	r.resolve("BackupFailed")
	resolvedAt := r.clock
	r.flush()
	a, _ = findAlert(r.am.last(t), "BackupFailed")
	if !a.EndsAt.Equal(resolvedAt) || !a.StartsAt.Equal(start) {
		t.Errorf("resolution: startsAt %v endsAt %v, want %v and %v", a.StartsAt, a.EndsAt, start, resolvedAt)
	}

	posts := len(r.am.taken())
	r.advance(time.Minute)
	r.flush()
	if len(r.am.taken()) != posts {
		t.Errorf("a resolved alert is still posted: %+v", r.am.taken()[posts:])
	}
	r.wantCounts(0, 0)
	if got := r.metric("hastack_agent_alert_firing", "alertname", "BackupFailed"); got != 0 {
		t.Errorf("hastack_agent_alert_firing{BackupFailed} = %v after resolution", got)
	}
}

func TestDriftCorrectedIsAnEventOfAnHour(t *testing.T) {
	r := newRig(t, nil)
	r.fire("DriftCorrected", map[string]string{"service": "web1"}, "service web1 differed from the applied commit and was restored")
	start := r.clock
	r.flush()
	a, ok := findAlert(r.am.last(t), "DriftCorrected")
	if !ok {
		t.Fatal("not posted")
	}
	if a.Labels["service"] != "web1" || a.Labels["component"] != "agent" || a.Labels["instance"] != "host1" {
		t.Errorf("labels %v: want service=web1 kept, component and instance added", a.Labels)
	}
	if !a.EndsAt.Equal(start.Add(time.Hour)) {
		t.Errorf("endsAt %v, want an hour after %v", a.EndsAt, start)
	}
	r.advance(10 * time.Minute)
	r.flush()
	if a, _ := findAlert(r.am.last(t), "DriftCorrected"); !a.EndsAt.Equal(start.Add(time.Hour)) {
		t.Errorf("re-posted with endsAt %v, want it fixed at %v", a.EndsAt, start.Add(time.Hour))
	}
	r.advance(time.Hour)
	posts := len(r.am.taken())
	r.flush()
	if len(r.am.taken()) != posts {
		t.Error("posted after its hour")
	}
	if got := r.metric("hastack_agent_alert_firing", "alertname", "DriftCorrected"); got != 0 {
		t.Errorf("hastack_agent_alert_firing{DriftCorrected} = %v: an event does not stay firing", got)
	}
}

func TestResolvingDeployFailedResolvesTheRollback(t *testing.T) {
	r := newRig(t, nil)
	r.fire("DeployFailed", map[string]string{"commit": "abc1234"}, "deploy of abc1234 failed: unhealthy")
	r.fire("DeployRolledBack", map[string]string{"commit": "abc1234"}, "rolled back")
	r.flush()
	if n := len(r.am.last(t)); n != 2 {
		t.Fatalf("posted %d alerts, want 2", n)
	}
	r.advance(time.Minute)
	r.resolve("DeployFailed") // what sync does when a newer commit deploys
	r.flush()
	for _, a := range r.am.last(t) {
		if !a.EndsAt.Equal(r.clock) {
			t.Errorf("%s: endsAt %v, want resolved at %v", a.Name(), a.EndsAt, r.clock)
		}
	}
	if got := r.metric("hastack_agent_alert_firing", "alertname", "DeployRolledBack"); got != 0 {
		t.Errorf("DeployRolledBack still firing in the metric")
	}
}

func TestFallbackWhenAlertmanagerFails(t *testing.T) {
	for _, tt := range []struct {
		name string
		down func(r *rig)
		up   func(r *rig)
	}{
		{"answers 500", func(r *rig) { r.am.setStatus(http.StatusInternalServerError) }, func(r *rig) { r.am.setStatus(http.StatusOK) }},
		{"unreachable", func(r *rig) { r.am.Close() }, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			tt.down(r)
			r.fire("BackupFailed", nil, "backup failed: dump of db_slave: exit status 2")
			r.flush()
			r.wantCounts(1, 1) // critical: Slack and e-mail
			if !strings.Contains(r.slack.messages()[0], "[FIRING] BackupFailed (critical)") {
				t.Errorf("slack text %q", r.slack.messages()[0])
			}
			if got := r.metric("hastack_agent_alert_delivery_failures_total", "path", "alertmanager"); got != 1 {
				t.Errorf("failures{alertmanager} = %v, want 1", got)
			}
			if got := r.metric("hastack_agent_alertmanager_up"); got != 0 {
				t.Errorf("hastack_agent_alertmanager_up = %v, want 0", got)
			}
			if !strings.Contains(r.logs.String(), "did not take the agent's alerts") {
				t.Errorf("the failure is not logged:\n%s", r.logs)
			}

			// Still down, still firing: no message every minute.
			for range 5 {
				r.advance(time.Minute)
				r.fire("BackupFailed", nil, "backup failed again")
				r.flush()
			}
			r.wantCounts(1, 1)
			if got := r.metric("hastack_agent_alert_delivery_failures_total", "path", "alertmanager"); got != 6 {
				t.Errorf("failures{alertmanager} = %v, want 6 (one per round)", got)
			}

			// A reminder after the repeat interval.
			r.advance(4 * time.Hour)
			r.flush()
			r.wantCounts(2, 2)
			if s := r.slack.messages(); !strings.Contains(s[1], "[FIRING, reminder] BackupFailed") {
				t.Errorf("reminder %q", s[1])
			}

			// Resolved: once.
			r.advance(time.Minute)
			r.resolve("BackupFailed")
			r.flush()
			r.advance(time.Minute)
			r.flush()
			r.wantCounts(3, 3)
			if s := r.slack.messages(); !strings.Contains(s[2], "[RESOLVED] BackupFailed (critical)") {
				t.Errorf("resolution %q", s[2])
			}
			if got := r.metric("hastack_agent_alert_deliveries_total", "path", "email"); got != 3 {
				t.Errorf("deliveries{email} = %v, want 3", got)
			}
			if tt.up == nil {
				return
			}
			// Back: nothing left to post (Alertmanager never had it), nothing more sent.
			tt.up(r)
			before := len(r.am.taken())
			r.advance(time.Minute)
			r.flush()
			if len(r.am.taken()) != before {
				t.Errorf("posted %+v", r.am.taken()[before:])
			}
			r.wantCounts(3, 3)
		})
	}
}

// An alert sent directly carries the link (alerts.link, the Agent dashboard) in Slack and in
// e-mail, firing and resolved; without one, no Link line.
func TestDirectMessagesCarryTheLink(t *testing.T) {
	r := newRig(t, nil)
	r.am.setStatus(http.StatusServiceUnavailable)
	r.fire("BackupFailed", nil, "backup failed: dump of db_slave: exit status 2")
	r.flush()
	r.advance(time.Minute)
	r.resolve("BackupFailed")
	r.flush()
	r.wantCounts(2, 2)
	// Slack: the URL as text, which Slack links by itself; its & escaped as Slack's markup asks.
	slackLink := "Link:   " + strings.ReplaceAll(testLink, "&", "&amp;") + "\n"
	for i, s := range r.slack.messages() {
		if !strings.Contains(s, slackLink) {
			t.Errorf("slack message %d lacks %q:\n%s", i, slackLink, s)
		}
	}
	for i, m := range r.smtp.messages() {
		if _, _, body := readMessage(t, m.data); !strings.Contains(body, "Link:   "+testLink+"\n") {
			t.Errorf("e-mail %d lacks the link %s:\n%s", i, testLink, body)
		}
	}

	r = newRig(t, func(o *Options) { o.GeneratorURL = "" })
	r.am.setStatus(http.StatusServiceUnavailable)
	r.fire("BackupFailed", nil, "backup failed")
	r.flush()
	r.wantCounts(1, 1)
	if s := r.slack.messages()[0]; strings.Contains(s, "Link:") {
		t.Errorf("a link line without a link: %q", s)
	}
}

func TestWarningGoesToSlackOnly(t *testing.T) {
	r := newRig(t, nil)
	r.am.setStatus(http.StatusServiceUnavailable)
	r.fire("DrillFailed", nil, "restore drill failed: rows differ")
	r.flush()
	r.wantCounts(1, 0)
}

func TestRecoveryPostsTheCurrentState(t *testing.T) {
	r := newRig(t, nil)
	r.am.setStatus(http.StatusInternalServerError)
	r.fire("DeployFailed", map[string]string{"commit": "abc1234"}, "deploy of abc1234 failed")
	r.fire("DrillFailed", nil, "drill failed")
	r.flush()
	r.wantCounts(2, 1)

	r.am.setStatus(http.StatusOK)
	r.advance(time.Minute)
	r.flush()
	post := r.am.last(t)
	if len(post) != 2 {
		t.Fatalf("after recovery posted %d alerts, want both firing ones", len(post))
	}
	for _, a := range post {
		if !a.EndsAt.After(r.clock) {
			t.Errorf("%s posted resolved after recovery", a.Name())
		}
	}
	if !strings.Contains(r.logs.String(), "Alertmanager answers again") {
		t.Errorf("recovery not logged:\n%s", r.logs)
	}
	r.wantCounts(2, 1) // nothing more directly

	// Resolved with Alertmanager up: it tells people; nothing goes directly.
	r.advance(time.Minute)
	r.resolve("DrillFailed")
	r.flush()
	a, _ := findAlert(r.am.last(t), "DrillFailed")
	if !a.EndsAt.Equal(r.clock) {
		t.Errorf("DrillFailed endsAt %v, want resolved now", a.EndsAt)
	}
	r.wantCounts(2, 1)
}

func TestResolvedWhileAlertmanagerIsDownIsSentDirectly(t *testing.T) {
	r := newRig(t, nil)
	r.fire("BackupFailed", nil, "backup failed")
	r.flush() // Alertmanager has it (and has told people)
	r.am.setStatus(http.StatusBadGateway)
	r.advance(time.Minute)
	r.flush()
	r.wantCounts(0, 0) // already announced by Alertmanager: not again

	r.advance(time.Minute)
	r.resolve("BackupFailed")
	r.flush()
	r.wantCounts(1, 1)
	if !strings.Contains(r.slack.messages()[0], "[RESOLVED] BackupFailed") {
		t.Errorf("slack %q", r.slack.messages()[0])
	}
	// Alertmanager back within the alert's endsAt: it gets the resolution.
	r.am.setStatus(http.StatusOK)
	r.advance(time.Minute)
	r.flush()
	a, ok := findAlert(r.am.last(t), "BackupFailed")
	if !ok || a.EndsAt.After(r.clock) {
		t.Errorf("resolution not posted after recovery: %+v", r.am.taken())
	}
	r.wantCounts(1, 1)
}

func TestBothPathsFailing(t *testing.T) {
	r := newRig(t, nil)
	r.am.setStatus(http.StatusInternalServerError)
	r.slack.setStatus(http.StatusNotFound)
	r.smtp.ln.Close()
	r.fire("BackupFailed", nil, "backup failed")
	r.flush()
	logs := r.logs.String()
	if !strings.Contains(logs, `"level":"ERROR","msg":"alerts: alert not delivered`) {
		t.Errorf("no error-level line for an undelivered alert:\n%s", logs)
	}
	for _, want := range []string{"no_service", "500 Internal Server Error", "connection refused"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks the reason %q:\n%s", want, logs)
		}
	}
	for _, p := range []string{"alertmanager", "slack", "email"} {
		if got := r.metric("hastack_agent_alert_delivery_failures_total", "path", p); got != 1 {
			t.Errorf("failures{%s} = %v, want 1", p, got)
		}
	}
	// Slack works again: the alert goes out on the next round, once.
	r.slack.setStatus(http.StatusOK)
	r.advance(time.Minute)
	r.flush()
	r.advance(time.Minute)
	r.flush()
	r.wantCounts(1, 0)
}

func TestSecretsAreNotLogged(t *testing.T) {
	r := newRig(t, nil)
	r.am.setStatus(http.StatusInternalServerError)
	r.slack.setStatus(http.StatusInternalServerError)
	r.fire("DeployFailed", nil, "deploy failed")
	r.flush()
	r.slack.Close() // unreachable: the HTTP client's error names the URL
	r.advance(time.Minute)
	r.flush()
	logs := r.logs.String()
	if !strings.Contains(logs, "slack") || !strings.Contains(logs, "connection refused") {
		t.Fatalf("the Slack failures are not logged:\n%s", logs)
	}
	for _, part := range strings.Split(slackSecret, "/") {
		if strings.Contains(logs, part) {
			t.Errorf("the log shows the webhook URL's secret part %q:\n%s", part, logs)
		}
	}
}

func TestNoReceiverIsLoud(t *testing.T) {
	r := newRig(t, func(o *Options) { o.Slack, o.Email = nil, nil })
	r.am.setStatus(http.StatusInternalServerError)
	r.fire("DrillFailed", nil, "drill failed")
	r.flush()
	r.advance(time.Minute)
	r.flush()
	if n := strings.Count(r.logs.String(), "no direct receiver takes its severity"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, r.logs)
	}
}

func TestWithoutAlertmanagerEverythingGoesDirectly(t *testing.T) {
	r := newRig(t, func(o *Options) { o.AlertmanagerURL = "" })
	r.fire("DeployFailed", nil, "deploy failed")
	r.flush()
	r.advance(time.Minute)
	r.flush()
	r.resolve("DeployFailed")
	r.flush()
	r.wantCounts(2, 2)
	if len(r.am.taken()) != 0 {
		t.Error("posted to Alertmanager")
	}
	if s := r.slack.messages()[0]; !strings.Contains(s, "no Alertmanager is configured") {
		t.Errorf("the message does not say why it came directly: %q", s)
	}
}

func TestRunResendsAndStops(t *testing.T) {
	r := newRig(t, func(o *Options) { o.ResendInterval = 20 * time.Millisecond })
	r.d.now = time.Now
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.d.Run(ctx)
	}()
	r.events.Event(ctx, "DeployFailed", true, nil, "deploy failed")
	deadline := time.Now().Add(10 * time.Second)
	for len(r.am.taken()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("posted %d times in 10 s, want at least 3", len(r.am.taken()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// An alert resolved while the round that posts it as firing is in flight is resolved in
// Alertmanager by the next round, not forgotten (Alertmanager would keep it for its TTL).
func TestResolvedDuringAPostIsPostedNext(t *testing.T) {
	r := newRig(t, nil)
	r.fire("DeployFailed", map[string]string{"commit": "c1"}, "deploy of c1 failed")
	r.am.mu.Lock()
	r.am.during = func() { r.resolve("DeployFailed") }
	r.am.mu.Unlock()
	r.flush() // posts it firing; the resolution arrives meanwhile
	r.flush()
	posts := r.am.taken()
	if len(posts) != 2 {
		t.Fatalf("%d posts, want the firing one and the resolution", len(posts))
	}
	if end := posts[1][0].EndsAt; !end.Equal(r.clock) {
		t.Fatalf("second post ends at %v, want the resolution (%v)", end, r.clock)
	}
}
