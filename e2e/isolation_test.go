//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
)

// The suite never reaches a receiver that a user configured. Every agent it runs names the
// suite's own receivers (newAgent gives the ones no step checks quietSink), and nothing else
// of the suite sends alerts. What would reach a user first is the agent's default
// Alertmanager, 127.0.0.1:9093, where scripts/up's stack listens: while the suite runs, a trap
// listens there when the address is free (as on CI), and any request it gets fails the run.

const defaultAlertmanager = "127.0.0.1:9093" // config.Default's alerts.alertmanager_url

// recorder records the requests an HTTP server got.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 300))
	r.mu.Lock()
	r.seen = append(r.seen, fmt.Sprintf("%s %s %s", req.Method, req.URL.Path, body))
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// quietSink receives the alerts of test agents whose alerts no step checks.
var quietSink *httptest.Server

// guardReceivers starts quietSink and the trap on the default Alertmanager address; check
// reports anything that reached the trap.
func guardReceivers() (check func() error, stop func()) {
	quietSink = httptest.NewServer(&recorder{})
	trap := &recorder{}
	l, err := net.Listen("tcp", defaultAlertmanager)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: NOTE: %s is in use (a user's Alertmanager?): the trap that proves no test "+
			"reaches it cannot listen there this run; every test agent still names the suite's own receivers\n", defaultAlertmanager)
		return func() error { return nil }, quietSink.Close
	}
	srv := &http.Server{Handler: trap}
	go srv.Serve(l)
	check = func() error {
		if got := trap.requests(); len(got) > 0 {
			return fmt.Errorf("%d requests of the suite reached the default Alertmanager address %s, where a user's stack "+
				"would page its receivers; the first: %s", len(got), defaultAlertmanager, strings.ReplaceAll(got[0], "\n", " "))
		}
		return nil
	}
	return check, func() { srv.Close(); quietSink.Close() }
}

// quietAlerts is the alerts section for a test agent whose alerts no step checks.
func quietAlerts() string {
	return "alerts:\n  alertmanager_url: " + quietSink.URL + "\n"
}
