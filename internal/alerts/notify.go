package alerts

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Notifier sends one notification straight to people (Slack, e-mail), bypassing Alertmanager.
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// Notification is one change of one alert, sent directly: it fired (or still fires, for a
// reminder) or it was resolved.
type Notification struct {
	Alert    Alert
	Resolved bool
	Reminder bool   // still firing: sent again after the repeat interval
	Reason   string // why it did not go through Alertmanager, for the reader
}

const timeLayout = "2006-01-02 15:04:05 MST"

// Title is "[FIRING] BackupFailed (critical)", "[RESOLVED] ...", "[FIRING, reminder] ...",
// the shape of the stack's Alertmanager templates.
func (n Notification) Title() string {
	status := "FIRING"
	switch {
	case n.Resolved:
		status = "RESOLVED"
	case n.Reminder:
		status = "FIRING, reminder"
	}
	return fmt.Sprintf("[%s] %s (%s)", status, n.Alert.Name(), n.Alert.Labels["severity"])
}

// Subject is the title and the summary, on one line.
func (n Notification) Subject() string {
	return oneLine(n.Title() + ": " + n.Alert.Annotations["summary"])
}

// Text is the plain-text body: the summary, the description (with what to check first), the
// host, the times, the labels, the alert's link (its GeneratorURL: the agent's dashboard) and
// why it came directly.
func (n Notification) Text() string {
	a := n.Alert
	var b strings.Builder
	if n.Resolved {
		fmt.Fprintf(&b, "Resolved: %s\n\n", a.Annotations["summary"])
	} else {
		fmt.Fprintf(&b, "%s\n\n%s\n\n", a.Annotations["summary"], a.Annotations["description"])
	}
	fmt.Fprintf(&b, "Host:   %s\n", a.Labels["instance"])
	fmt.Fprintf(&b, "Since:  %s\n", formatTime(a.StartsAt))
	if n.Resolved && !a.EndsAt.IsZero() {
		fmt.Fprintf(&b, "Ended:  %s\n", formatTime(a.EndsAt))
	}
	b.WriteString("Labels:")
	for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
		fmt.Fprintf(&b, " %s=%s", k, a.Labels[k])
	}
	b.WriteString("\n")
	if a.GeneratorURL != "" {
		fmt.Fprintf(&b, "Link:   %s\n", a.GeneratorURL)
	}
	if n.Reason != "" {
		fmt.Fprintf(&b, "\nSent by the hastack agent directly: %s.\n", n.Reason)
	}
	return b.String()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// formatTime is how the messages show a time.
func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }
