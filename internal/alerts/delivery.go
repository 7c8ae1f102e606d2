package alerts

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a Delivery.
type Options struct {
	// AlertmanagerURL is Alertmanager's base URL, e.g. http://127.0.0.1:9093; "" posts nothing
	// and sends every alert directly.
	AlertmanagerURL string
	// ResendInterval is how often firing alerts are posted again (each with endsAt a few
	// intervals ahead, at least 5 minutes, so that Alertmanager keeps them active) and how
	// often a failed delivery is retried. Default 1m.
	ResendInterval time.Duration
	// RepeatInterval: while Alertmanager stays unreachable, an alert still firing is sent
	// directly again after this long. 0 sends each change once.
	RepeatInterval time.Duration
	// Slack receives critical and warning alerts directly, Email critical ones: the routing
	// of the stack's Alertmanager. nil: not configured.
	Slack Notifier
	Email Notifier
	// Instance is the instance label of every alert (default: the host name).
	Instance string
	// GeneratorURL is put in every alert ("": none): Alertmanager's generatorURL, and a
	// "Link:" line of the messages sent directly (the agent: its dashboard, alerts.link).
	GeneratorURL string
	// HTTPClient posts to Alertmanager (default: a client with a 10 s timeout).
	HTTPClient *http.Client
}

// Delivery keeps the agent's active alerts and delivers them: to Alertmanager while it answers,
// directly to Slack and e-mail while it does not. Event only records; Run does the sending.
//
//   - Firing alerts are posted to Alertmanager every ResendInterval with endsAt ahead, and
//     posted with endsAt = now once resolved. An event that is not a condition (DriftCorrected)
//     is posted with a fixed endsAt an hour after it happened.
//   - When a post fails (unreachable, or an answer other than 2xx), each change of each alert
//     (fired, resolved) goes to the direct receivers once; a reminder follows every
//     RepeatInterval while it still fires and Alertmanager stays unreachable. An alert that
//     Alertmanager already took is not sent again when Alertmanager goes away, but its
//     resolution is.
//   - When Alertmanager answers again, the next post carries the current state of every alert.
//   - A failure on both paths is logged at error level and counted.
type Delivery struct {
	am       *alertmanager // nil: not configured
	routes   []route
	resend   time.Duration
	repeat   time.Duration
	ttl      time.Duration // how far ahead a firing alert's endsAt is posted
	instance string
	genURL   string
	log      *slog.Logger
	now      func() time.Time
	wake     chan struct{}

	deliveries *prometheus.CounterVec
	failures   *prometheus.CounterVec
	amUp       prometheus.Gauge

	flushMu sync.Mutex // one delivery round at a time

	mu     sync.Mutex
	alerts map[string]*entry // by Alert.key
	amLast amState
	amErr  error
}

// route is a direct receiver and the severities it takes.
type route struct {
	path       string // "slack", "email": the metrics' path label
	notifier   Notifier
	severities []string
}

type amState int

const (
	amUnknown amState = iota
	amReachable
	amUnreachable
)

// entry is one active alert and what each path has been told about it.
type entry struct {
	alert      Alert // EndsAt: a one-shot's end, or a resolved alert's resolution time
	firing     bool
	oneShot    bool
	amFiring   bool      // Alertmanager took this alert firing
	amResolved bool      // Alertmanager took its resolution
	amLastAt   time.Time // when Alertmanager last took it firing
	amEndsAt   time.Time // the endsAt it last took: Alertmanager resolves it itself after that
	direct     map[string]sent
	unrouted   bool // "no receiver" already logged for the current state
}

// sent is what a direct receiver was last told.
type sent struct {
	resolved bool
	at       time.Time
}

// NewDelivery registers hastack_agent_alert_deliveries_total{path},
// hastack_agent_alert_delivery_failures_total{path} and hastack_agent_alertmanager_up with reg
// (nil: not registered).
func NewDelivery(opts Options, log *slog.Logger, reg prometheus.Registerer) (*Delivery, error) {
	d := &Delivery{
		resend:   opts.ResendInterval,
		repeat:   opts.RepeatInterval,
		instance: opts.Instance,
		genURL:   opts.GeneratorURL,
		log:      log,
		now:      time.Now,
		wake:     make(chan struct{}, 1),
		alerts:   map[string]*entry{},
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hastack_agent_alert_deliveries_total",
			Help: "Deliveries of the agent's own alerts, by path: alertmanager (one post), slack, email (one message).",
		}, []string{"path"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hastack_agent_alert_delivery_failures_total",
			Help: "Failed deliveries of the agent's own alerts, by path: alertmanager, slack, email.",
		}, []string{"path"}),
		amUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hastack_agent_alertmanager_up",
			Help: "1 if the agent's last post to Alertmanager succeeded, 0 if it failed.",
		}),
	}
	if d.resend <= 0 {
		d.resend = time.Minute
	}
	d.ttl = max(5*time.Minute, 3*d.resend)
	if d.instance == "" {
		d.instance = hostname()
	}
	if opts.AlertmanagerURL != "" {
		client := opts.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		am, err := newAlertmanager(opts.AlertmanagerURL, client)
		if err != nil {
			return nil, err
		}
		d.am = am
	}
	if opts.Slack != nil {
		d.routes = append(d.routes, route{"slack", opts.Slack, []string{SeverityCritical, SeverityWarning}})
	}
	if opts.Email != nil {
		d.routes = append(d.routes, route{"email", opts.Email, []string{SeverityCritical}})
	}
	for _, p := range []string{"alertmanager", "slack", "email"} {
		d.deliveries.WithLabelValues(p)
		d.failures.WithLabelValues(p)
	}
	if reg != nil {
		reg.MustRegister(d.deliveries, d.failures, d.amUp)
	}
	switch {
	case d.am == nil && len(d.routes) == 0:
		log.Warn("alerts: no Alertmanager and no Slack or e-mail configured: the agent's alerts are only logged and counted")
	case len(d.routes) == 0:
		log.Warn("alerts: no Slack or e-mail configured (alerts.slack, alerts.email): while Alertmanager does not answer, " +
			"the agent's alerts are only logged and counted")
	}
	return d, nil
}

// Event records that alert name fires or is resolved, and wakes Run; it never blocks on I/O.
// A firing alert that already fires takes the new description. Resolving resolves every active
// alert of that name that carries all of labels (nil: every one of the name).
func (d *Delivery) Event(name string, firing bool, labels map[string]string, description string) {
	now := d.now()
	d.mu.Lock()
	if firing {
		a := newAlert(name, labels, description, d.instance, d.genURL, now)
		key := a.key()
		e, ok := d.alerts[key]
		switch {
		case ok && e.firing && !e.oneShot:
			e.alert.Annotations = a.Annotations // news about the same condition
		default:
			// A new alert, a new occurrence of an event, or one that fires again.
			k := kindOf(name)
			if k.oneShot {
				a.EndsAt = now.Add(oneShotFor)
			}
			d.alerts[key] = &entry{alert: a, firing: true, oneShot: k.oneShot, direct: map[string]sent{}}
		}
	} else {
		for _, e := range d.alerts {
			if e.firing && e.alert.matches(name, labels) {
				e.firing, e.unrouted = false, false
				e.alert.EndsAt = now
			}
		}
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends: at once after each event, and every ResendInterval. On the way
// out it makes one last round, bounded by a few seconds, for events raised just before.
func (d *Delivery) Run(ctx context.Context) {
	t := time.NewTicker(d.resend)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			d.flush(last)
			cancel()
			return
		case <-t.C:
		case <-d.wake:
		}
		d.flush(ctx)
	}
}

// item is an entry as one round sees it.
type item struct {
	key     string
	e       *entry
	alert   Alert
	firing  bool
	oneShot bool
	posted  bool // in this round's post to Alertmanager
}

// flush is one delivery round: post to Alertmanager, then whatever must go directly.
func (d *Delivery) flush(ctx context.Context) {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	now := d.now()

	d.mu.Lock()
	var items []*item
	for _, key := range slices.Sorted(maps.Keys(d.alerts)) {
		e := d.alerts[key]
		if e.oneShot && e.firing && !now.Before(e.alert.EndsAt) {
			delete(d.alerts, key) // the event's hour is over; Alertmanager ends it by itself
			continue
		}
		it := &item{key: key, e: e, alert: e.alert, firing: e.firing, oneShot: e.oneShot}
		if d.am != nil {
			switch {
			case e.firing && !e.oneShot:
				it.alert.EndsAt = now.Add(d.ttl)
				it.posted = true
			case e.firing:
				it.posted = true // its fixed endsAt
			case e.amFiring && !e.amResolved && now.Before(e.amEndsAt):
				it.posted = true // the resolution: endsAt is when it was resolved
			}
		}
		items = append(items, it)
	}
	d.mu.Unlock()

	amErr := d.post(ctx, items, now)

	d.mu.Lock()
	amDown := d.am == nil || d.amLast == amUnreachable
	reason := "no Alertmanager is configured"
	if d.am != nil {
		reason = "Alertmanager at " + d.am.host + " did not take the alert"
		if d.amErr != nil {
			reason = "Alertmanager did not take the alert (" + d.amErr.Error() + ")"
		}
	}
	d.mu.Unlock()

	for _, it := range items {
		taken := it.posted && amErr == nil
		d.sendDirect(ctx, it, taken, amDown, reason, now)
	}

	d.mu.Lock()
	for _, it := range items {
		e := it.e
		// Only a round that handled the resolution may forget the entry: one resolved while
		// this round was posting it as firing keeps it, for the next round to post the end.
		if d.alerts[it.key] != e || e.firing || it.firing {
			continue
		}
		taken := it.posted && amErr == nil
		amPending := d.am != nil && e.amFiring && !e.amResolved && now.Before(e.amEndsAt)
		directPending := false
		for _, r := range d.routesFor(e.alert) {
			if needsResolved(e, r.path, amDown) {
				directPending = true
			}
		}
		if taken || (!amPending && !directPending) {
			delete(d.alerts, it.key)
		}
	}
	d.mu.Unlock()
}

// post sends the items marked posted to Alertmanager in one request and records the outcome.
func (d *Delivery) post(ctx context.Context, items []*item, now time.Time) error {
	var batch []Alert
	for _, it := range items {
		if it.posted {
			batch = append(batch, it.alert)
		}
	}
	if d.am == nil {
		return errors.New("no Alertmanager configured")
	}
	if len(batch) == 0 {
		return nil
	}
	err := d.am.post(ctx, batch)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.failures.WithLabelValues("alertmanager").Inc()
		d.amUp.Set(0)
		if d.amLast != amUnreachable {
			d.log.Warn("alerts: Alertmanager did not take the agent's alerts; sending them directly to Slack and e-mail until it does",
				"alertmanager", d.am.host, "err", err)
		}
		d.amLast, d.amErr = amUnreachable, err
		return err
	}
	d.deliveries.WithLabelValues("alertmanager").Inc()
	d.amUp.Set(1)
	if d.amLast == amUnreachable {
		d.log.Info("alerts: Alertmanager answers again; posted the current alerts", "alertmanager", d.am.host, "alerts", len(batch))
	}
	d.amLast, d.amErr = amReachable, nil
	for _, it := range items {
		if !it.posted {
			continue
		}
		if it.firing {
			it.e.amFiring, it.e.amLastAt, it.e.amEndsAt = true, now, it.alert.EndsAt
		} else {
			it.e.amResolved = true
		}
	}
	return nil
}

// routesFor returns the direct receivers of a's severity.
func (d *Delivery) routesFor(a Alert) []route {
	var out []route
	for _, r := range d.routes {
		if slices.Contains(r.severities, a.Labels["severity"]) {
			out = append(out, r)
		}
	}
	return out
}

// needsResolved says whether receiver path must still be told that e was resolved: it was told
// the alert fired, or Alertmanager announced the firing and cannot announce the end. Called
// with d.mu held.
func needsResolved(e *entry, path string, amDown bool) bool {
	s, told := e.direct[path]
	if told && s.resolved {
		return false
	}
	return told || (e.amFiring && amDown)
}

// sendDirect tells the direct receivers what they must know about one alert in this round:
// nothing when Alertmanager took it, else each change once, and reminders.
func (d *Delivery) sendDirect(ctx context.Context, it *item, taken, amDown bool, reason string, now time.Time) {
	type job struct {
		r        route
		reminder bool
	}
	var jobs []job
	d.mu.Lock()
	e := it.e
	routes := d.routesFor(it.alert)
	if !taken {
		for _, r := range routes {
			s, told := e.direct[r.path]
			if it.firing {
				last := time.Time{}
				if told && !s.resolved {
					last = s.at
				}
				if e.amFiring && e.amLastAt.After(last) {
					last = e.amLastAt
				}
				switch {
				case last.IsZero():
					jobs = append(jobs, job{r: r})
				case !it.oneShot && d.repeat > 0 && now.Sub(last) >= d.repeat:
					jobs = append(jobs, job{r: r, reminder: true})
				}
			} else if needsResolved(e, r.path, amDown) {
				jobs = append(jobs, job{r: r})
			}
		}
	}
	// Nobody to tell: say so once per change, loudly.
	needed := !taken && (it.firing && !e.amFiring && len(e.direct) == 0)
	logUnrouted := needed && len(routes) == 0 && !e.unrouted
	if logUnrouted {
		e.unrouted = true
	}
	d.mu.Unlock()

	if logUnrouted {
		d.log.Error("alerts: alert not delivered: Alertmanager did not take it and no direct receiver takes its severity "+
			"(configure alerts.slack or alerts.email)", "alertname", it.alert.Name(),
			"severity", it.alert.Labels["severity"], "reason", reason)
		return
	}
	if len(jobs) == 0 {
		return
	}
	n := Notification{Alert: it.alert, Resolved: !it.firing, Reason: reason}
	if !amDown && !it.firing {
		reason = "it fired while Alertmanager could not be reached"
		n.Reason = reason
	}
	status := "firing"
	if !it.firing {
		status = "resolved"
	}
	var errs []any
	delivered := 0
	for _, j := range jobs {
		n.Reminder = j.reminder
		err := j.r.notifier.Notify(ctx, n)
		if err != nil {
			d.failures.WithLabelValues(j.r.path).Inc()
			errs = append(errs, j.r.path, err.Error())
			d.log.Warn("alerts: direct delivery failed", "path", j.r.path, "alertname", it.alert.Name(), "status", status, "err", err)
			continue
		}
		delivered++
		d.deliveries.WithLabelValues(j.r.path).Inc()
		d.log.Info("alerts: alert sent directly", "path", j.r.path, "alertname", it.alert.Name(), "status", status,
			"reminder", j.reminder)
		d.mu.Lock()
		e.direct[j.r.path] = sent{resolved: !it.firing, at: now}
		d.mu.Unlock()
	}
	if delivered == 0 {
		d.log.Error("alerts: alert not delivered: neither Alertmanager nor any direct receiver took it; retrying in "+
			d.resend.String(), append([]any{"alertname", it.alert.Name(), "status", status, "alertmanager", reason}, errs...)...)
	}
}

// hostname is this host's name, the default instance label.
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}
