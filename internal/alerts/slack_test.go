package alerts

import (
	"context"
	"strings"
	"testing"
)

func TestSlackEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text", "plain text"},
		{"<!channel> deploy failed", "&lt;!channel&gt; deploy failed"},
		{"<!here|here> and <!everyone>", "&lt;!here|here&gt; and &lt;!everyone&gt;"},
		{"ping <@U024BE7LH> and <#C024BE7LR>", "ping &lt;@U024BE7LH&gt; and &lt;#C024BE7LR&gt;"},
		{"<https://evil.example/|click to fix>", "&lt;https://evil.example/|click to fix&gt;"},
		{"already escaped &lt;", "already escaped &amp;lt;"}, // shown as written, not unescaped
		{"a && b > c", "a &amp;&amp; b &gt; c"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := slackEscape(tt.in); got != tt.want {
			t.Errorf("slackEscape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestSlackMessageEscapesLabelsAndErrors: what comes from labels and error text reaches Slack
// escaped, in the title and in the body; only the agent's own bold markup stays.
func TestSlackMessageEscapesLabelsAndErrors(t *testing.T) {
	f := newFakeSlack(t)
	s, err := NewSlack(f.URL+"/services/"+slackSecret, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	n := testNotification()
	n.Alert.Labels["alertname"] = "Backup<!channel>"
	n.Alert.Labels["severity"] = "<@U0ADMIN>"
	n.Alert.Labels["service"] = "<https://evil.example/|db>"
	n.Alert.Annotations["summary"] = "A & B <!here>"
	n.Alert.Annotations["description"] = "dump: exit status 2: <!everyone> see <https://evil.example/|the runbook>"
	n.Reason = "Alertmanager: 503 <html>"
	if err := s.Notify(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	text := f.messages()[0]
	if strings.ContainsAny(text, "<>") {
		t.Errorf("markup reaches Slack:\n%s", text)
	}
	for _, want := range []string{
		"*[FIRING] Backup&lt;!channel&gt; (&lt;@U0ADMIN&gt;)*\n",
		"A &amp; B &lt;!here&gt;",
		"&lt;!everyone&gt; see &lt;https://evil.example/|the runbook&gt;",
		"service=&lt;https://evil.example/|db&gt;",
		"503 &lt;html&gt;",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}
