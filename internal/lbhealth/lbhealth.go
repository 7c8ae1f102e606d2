// Package lbhealth checks the load balancer's backends actively and tells nginx which are out of
// rotation, without reloading it.
//
// Open-source nginx has no active health checks and resolves upstream names only when it loads
// its configuration: a backend that hangs is found only after a request has waited for it, and a
// backend whose address changes needs a reload, which closes kept-alive client connections. So
// the backends have fixed addresses, nginx's configuration names one upstream group per set of
// backends in rotation, and a request picks its group by which marker files exist in a directory
// nginx reads: "<name>.down" for a backend out of rotation (an `if (-f ...)` per request: a stat
// of a file in memory). This package probes every backend and keeps those files.
//
// A backend whose probe is refused, not connected or answered wrongly goes out at once; one
// whose probes are connected but get no answer in time goes out at the second in a row (probes
// do not wait for each other, so that is about 1.5 s after it hung): one slow answer is what a
// busy backend gives under load.
//
// It never takes the last backends out of rotation: when every backend fails, those that time
// out stay in and those that refuse go out, and when all fail alike the markers stay as they
// were. So nginx always has a group to send to, and a backend that hung does not come back
// because the last one is slow under the load it took over.
package lbhealth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is one server in the load balancer's rotation.
type Backend struct {
	Name string // the marker file's name: "<Name>.down"
	// URL is what is probed: http:// or https:// (a GET answered 200 within the timeout is
	// healthy), or mysql://host:port (the server's greeting, a protocol 10 handshake packet,
	// arrives within the timeout: a server that accepts connections but hangs is not healthy).
	URL string
}

// Options tune the checker. Zero values take the defaults.
type Options struct {
	Interval time.Duration // between the starts of two probes of one backend (default 500 ms)
	Timeout  time.Duration // for one probe, answer included (default 1 s)
	Rise     int           // consecutive good probes to come back (default 2)
	Fall     int           // consecutive failed probes to go out, the last refused, not connected or wrong (default 1)
	// SlowFall: consecutive failed probes to go out when the last was connected but got no
	// answer in time (default 2). One answer slower than Timeout is what a busy backend gives under load; a
	// hung one gives nothing, probe after probe.
	SlowFall int
	Client   *http.Client // default: no keep-alive, no proxy, no redirects
	Logger   *slog.Logger
}

func (o *Options) defaults() {
	if o.Interval <= 0 {
		o.Interval = 500 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Rise <= 0 {
		o.Rise = 2
	}
	if o.Fall <= 0 {
		o.Fall = 1
	}
	if o.SlowFall <= 0 {
		o.SlowFall = 2
	}
	if o.Client == nil {
		o.Client = &http.Client{
			// A new connection per probe: a backend that cannot accept one is not healthy.
			Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ParseBackend reads "name=url", as the command line gives a backend.
func ParseBackend(s string) (Backend, error) {
	name, url, ok := strings.Cut(s, "=")
	if !ok || name == "" || url == "" {
		return Backend{}, fmt.Errorf("backend %q: want name=url, e.g. web1=http://10.231.80.11/healthz.php", s)
	}
	b := Backend{Name: name, URL: url}
	return b, b.validate()
}

func (b Backend) validate() error {
	if !validName.MatchString(b.Name) || strings.Contains(b.Name, "..") {
		return fmt.Errorf("backend name %q: want letters, digits, '_', '.', '-' (it names a file)", b.Name)
	}
	if strings.HasPrefix(b.URL, "mysql://") {
		if _, _, err := net.SplitHostPort(strings.TrimPrefix(b.URL, "mysql://")); err != nil {
			return fmt.Errorf("backend %s: URL %q: want mysql://host:port", b.Name, b.URL)
		}
		return nil
	}
	if !strings.HasPrefix(b.URL, "http://") && !strings.HasPrefix(b.URL, "https://") {
		return fmt.Errorf("backend %s: URL %q: want http://, https:// or mysql://", b.Name, b.URL)
	}
	return nil
}

// Checker probes backends and keeps their marker files in Dir.
type Checker struct {
	Dir      string
	Backends []Backend
	opt      Options

	mu     sync.Mutex
	down   map[string]bool // by the probes
	slow   map[string]bool // the last failed probe timed out (rather than was refused)
	lastIn string          // while every backend fails: those left in rotation, as last logged
	marked map[string]bool // out of rotation: a marker file exists
	probed map[string]bool // at least one probe finished
}

// New validates the backends and returns a checker; Run starts it.
func New(dir string, backends []Backend, opt Options) (*Checker, error) {
	if len(backends) == 0 {
		return nil, errors.New("no backend to check")
	}
	seen := map[string]bool{}
	for _, b := range backends {
		if err := b.validate(); err != nil {
			return nil, err
		}
		if seen[b.Name] {
			return nil, fmt.Errorf("backend %s given twice", b.Name)
		}
		seen[b.Name] = true
	}
	opt.defaults()
	return &Checker{Dir: dir, Backends: backends, opt: opt, down: map[string]bool{}, slow: map[string]bool{}, marked: map[string]bool{}, probed: map[string]bool{}}, nil
}

// Run probes until ctx ends. It starts from a clean directory (markers a previous run left are
// removed: nothing is known yet, so everything is in rotation) and leaves the markers as they
// are when it stops, so that a restart of the checker changes nothing until it has probed.
func (c *Checker) Run(ctx context.Context) error {
	if err := c.clear(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, b := range c.Backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.watch(ctx, b)
		}()
	}
	wg.Wait()
	return nil
}

func (c *Checker) clear() error {
	entries, err := os.ReadDir(c.Dir)
	if err != nil {
		return fmt.Errorf("read the state directory: %w", err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".down") || strings.HasSuffix(e.Name(), ".down.tmp") {
			if err := os.Remove(filepath.Join(c.Dir, e.Name())); err != nil {
				return fmt.Errorf("remove a stale marker: %w", err)
			}
		}
	}
	return nil
}

// watch probes b every Interval, without waiting for the probe before: a probe that hangs does
// not delay the next one, so a backend that stops answering has SlowFall timed-out probes
// Interval apart, and is out about Timeout + (SlowFall-1)*Interval after it stopped (1.5 s by
// default), while one slow answer among good ones is not a hang. Results count in the order the
// probes were launched: one that arrives after a later probe's is stale and left out, so a
// backend that thaws, answering the probes it held all at once, counts them as one and comes
// back only after Rise probes launched since (and an old probe's late timeout counts nothing).
func (c *Checker) watch(ctx context.Context, b Backend) {
	type result struct {
		seq int
		err error
	}
	results := make(chan result)
	// At most this many probes of one backend at once: the ones a hung backend holds until their
	// timeout, and the next.
	inflight := make(chan struct{}, int(c.opt.Timeout/c.opt.Interval)+2)
	var probes sync.WaitGroup
	defer probes.Wait()
	launched := 0
	launch := func() {
		select {
		case inflight <- struct{}{}:
		default:
			return // every slot holds a probe that has not timed out yet
		}
		launched++
		seq := launched
		probes.Add(1)
		go func() {
			defer probes.Done()
			err := c.probe(ctx, b)
			<-inflight
			select {
			case results <- result{seq, err}:
			case <-ctx.Done():
			}
		}()
	}
	tick := time.NewTicker(c.opt.Interval)
	defer tick.Stop()
	good, failed, counted := 0, 0, 0
	launch()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			launch()
		case r := <-results:
			if ctx.Err() != nil {
				return
			}
			if r.seq < counted {
				continue // stale: a later probe has been counted
			}
			counted = r.seq
			if r.err == nil {
				good, failed = good+1, 0
			} else {
				good, failed = 0, failed+1
			}
			c.record(b, r.err, good, failed)
		}
	}
}

// record applies one probe's result, with the counts of consecutive good and failed probes.
func (c *Checker) record(b Backend, err error, good, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.probed[b.Name] = true
	wasDown := c.down[b.Name]
	slow := err != nil && isSlow(err)
	switch {
	case wasDown && good >= c.opt.Rise:
		c.down[b.Name] = false
		c.opt.Logger.Info("backend back in rotation", "backend", b.Name)
	case !wasDown && err != nil && (slow && failed >= c.opt.SlowFall || !slow && failed >= c.opt.Fall):
		c.down[b.Name] = true
		c.opt.Logger.Warn("backend out of rotation", "backend", b.Name, "err", err, "failed_probes", failed)
	}
	changed := c.down[b.Name] != wasDown
	if err != nil && c.slow[b.Name] != slow {
		c.slow[b.Name] = slow
		changed = changed || c.down[b.Name]
	}
	if changed {
		if err := c.writeMarkers(); err != nil {
			c.opt.Logger.Error("update the markers", "err", err)
		}
	}
}

// isSlow tells a probe that was connected but got no answer in time (a hung backend, or one
// slow under load: the kernel accepts a connection for a process that is frozen or busy) from
// one that is certainly not serving: refused, reset, answered wrongly, or not connected at all
// (a container that is gone leaves an address nobody answers, a cut network drops the SYN).
func isSlow(err error) bool {
	var nc *notConnectedError
	if errors.As(err, &nc) {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// notConnectedError is a probe that got no connection to the backend.
type notConnectedError struct{ err error }

func (e *notConnectedError) Error() string { return "no connection: " + e.err.Error() }
func (e *notConnectedError) Unwrap() error { return e.err }

// probe is one GET of the backend's URL, bounded by the timeout, its body read (bounded).
func (c *Checker) probe(ctx context.Context, b Backend) error {
	ctx, cancel := context.WithTimeout(ctx, c.opt.Timeout)
	defer cancel()
	if addr, ok := strings.CutPrefix(b.URL, "mysql://"); ok {
		return probeMySQL(ctx, addr)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "hastack-lb-health")
	var connected atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { connected.Store(true) },
	}))
	resp, err := c.opt.Client.Do(req)
	if err != nil {
		if !connected.Load() {
			return &notConnectedError{err}
		}
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)); err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// probeMySQL connects and reads the server's greeting: a packet header (3 bytes length, 1 byte
// sequence 0) and protocol version 10. It then closes without logging in (the server counts an
// aborted connect, which the next successful login of this host resets).
func probeMySQL(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return &notConnectedError{err}
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	var hdr [5]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return fmt.Errorf("no greeting from the server: %w", err)
	}
	if hdr[3] != 0 || hdr[4] != 10 {
		if hdr[4] == 0xff {
			return errors.New("the server refused the connection (an error packet instead of its greeting)")
		}
		return fmt.Errorf("not a MySQL/MariaDB greeting (sequence %d, protocol %d)", hdr[3], hdr[4])
	}
	return nil
}

// writeMarkers makes the files match the probes: a marker for each backend that is down, unless
// that would leave none in rotation. Then the ones whose probes time out stay in rotation and
// those that refuse or answer wrongly go out (a slow backend may still answer, a refusing one
// will not); when all fail alike, the markers stay as they are (the backends still in rotation
// are the last ones). Called with mu held.
func (c *Checker) writeMarkers() error {
	out := map[string]bool{}
	allDown, anySlow, anyHard := true, false, false
	for _, b := range c.Backends {
		out[b.Name] = c.down[b.Name]
		allDown = allDown && c.down[b.Name]
		anySlow = anySlow || c.down[b.Name] && c.slow[b.Name]
		anyHard = anyHard || c.down[b.Name] && !c.slow[b.Name]
	}
	if allDown {
		var in []string
		for _, b := range c.Backends {
			if anySlow && anyHard {
				out[b.Name] = !c.slow[b.Name]
			} else {
				out[b.Name] = c.marked[b.Name]
			}
			if !out[b.Name] {
				in = append(in, b.Name)
			}
		}
		if said := strings.Join(in, ","); said != c.lastIn { // once per change, not per probe
			c.opt.Logger.Warn("every backend fails its probe: the last ones stay in rotation", "in", in)
			c.lastIn = said
		}
	} else {
		c.lastIn = ""
	}
	var errs []error
	for _, b := range c.Backends {
		path := filepath.Join(c.Dir, b.Name+".down")
		if out[b.Name] {
			if err := touch(path); err != nil {
				errs = append(errs, err)
				continue
			}
		} else if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		c.marked[b.Name] = out[b.Name]
	}
	return errors.Join(errs...)
}

// touch creates path atomically (nginx may stat it at any moment).
func touch(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Status is what the checker knows, as its /status endpoint gives it.
type Status struct {
	Ready bool     `json:"ready"` // every backend probed at least once
	Down  []string `json:"down"`  // failing their probes
	Out   []string `json:"out"`   // out of rotation (marked); never all of them
}

// Status reports what the checker knows now.
func (c *Checker) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{Ready: len(c.probed) == len(c.Backends), Down: []string{}, Out: []string{}}
	for _, b := range c.Backends {
		if c.down[b.Name] {
			st.Down = append(st.Down, b.Name)
		}
		if c.marked[b.Name] {
			st.Out = append(st.Out, b.Name)
		}
	}
	return st
}

// ServeHTTP answers /healthz (200 once every backend has been probed, for the container's
// healthcheck) and /status (JSON).
func (c *Checker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := c.Status()
	switch r.URL.Path {
	case "/healthz":
		if !st.Ready {
			http.Error(w, "not every backend probed yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	case "/status":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	default:
		http.NotFound(w, r)
	}
}
