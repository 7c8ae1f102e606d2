package lbhealth

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// backend is a test server whose health the test switches: ok, failing (500), hung, or
// hung for one request ("hang-once": a busy backend's slow answer).
type backend struct {
	srv   *httptest.Server
	state atomic.Value // "ok", "fail", "hang"
}

func newBackend(t *testing.T) *backend {
	b := &backend{}
	b.state.Store("ok")
	release := make(chan struct{})
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.state.CompareAndSwap("hang-once", "ok") {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		switch b.state.Load() {
		case "fail":
			http.Error(w, "no", http.StatusInternalServerError)
		case "hang":
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	t.Cleanup(func() { close(release); b.srv.Close() })
	return b
}

func markers(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.down"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

// eventually waits (bounded) until the markers are want.
func eventually(t *testing.T, dir string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := markers(t, dir)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("markers %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func start(t *testing.T, dir string, backends ...Backend) *Checker {
	t.Helper()
	c, err := New(dir, backends, Options{Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func TestFailingAndHungBackendsLeaveAndReturn(t *testing.T) {
	dir := t.TempDir()
	// A marker left by an earlier run: removed at start (nothing is known yet).
	if err := os.WriteFile(filepath.Join(dir, "web1.down"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w1, w2 := newBackend(t), newBackend(t)
	start(t, dir, Backend{"web1", w1.srv.URL}, Backend{"web2", w2.srv.URL})
	eventually(t, dir)

	w1.state.Store("fail")
	eventually(t, dir, "web1.down")
	w1.state.Store("ok")
	eventually(t, dir)

	w2.state.Store("hang") // answers nothing: out by the probe's timeout
	eventually(t, dir, "web2.down")
	w2.state.Store("ok")
	eventually(t, dir)
}

// One probe without an answer in time, among good ones, is a busy backend, not a hung one: it
// stays in rotation (measured: at 50 clients on 2 cores one probe in a few hundred passes 1 s).
func TestOneSlowAnswerKeepsABackendIn(t *testing.T) {
	dir := t.TempDir()
	w1, w2 := newBackend(t), newBackend(t)
	c := start(t, dir, Backend{"web1", w1.srv.URL}, Backend{"web2", w2.srv.URL})
	eventually(t, dir)
	for range 5 {
		w1.state.Store("hang-once")
		deadline := time.Now().Add(500 * time.Millisecond) // over two probe timeouts
		for time.Now().Before(deadline) {
			if m := markers(t, dir); len(m) != 0 {
				t.Fatalf("markers %v after one slow answer of web1, want none", m)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if w1.state.Load() != "ok" {
			t.Fatal("web1 was not probed while it was slow")
		}
	}
	if down := c.Status().Down; len(down) != 0 {
		t.Fatalf("down %v, want none", down)
	}
}

// With every backend failing, one that times out may still answer and one that refuses will
// not: the slow one is in rotation.
func TestRefusingGoesOutBeforeSlow(t *testing.T) {
	dir := t.TempDir()
	w1, w2 := newBackend(t), newBackend(t)
	c := start(t, dir, Backend{"web1", w1.srv.URL}, Backend{"web2", w2.srv.URL})
	eventually(t, dir)
	w1.state.Store("hang")
	eventually(t, dir, "web1.down")
	w2.srv.Close() // connection refused: out, and web1, slow, back in
	eventually(t, dir, "web2.down")
	if down := c.Status().Down; !slices.Equal(down, []string{"web1", "web2"}) {
		t.Fatalf("down %v, want both", down)
	}
	w1.state.Store("ok")
	time.Sleep(100 * time.Millisecond)
	if m := markers(t, dir); !slices.Equal(m, []string{"web2.down"}) {
		t.Fatalf("markers %v, want web2.down", m)
	}
}

func TestStoppedBackendLeaves(t *testing.T) {
	dir := t.TempDir()
	w1, w2 := newBackend(t), newBackend(t)
	start(t, dir, Backend{"web1", w1.srv.URL}, Backend{"web2", w2.srv.URL})
	w1.srv.Close() // connection refused
	eventually(t, dir, "web1.down")
}

// With every backend failing, the last one out stays in rotation: nginx always has a group,
// and the one that failed first (hung) does not come back because the other is slow too.
func TestNeverTakesTheLastOut(t *testing.T) {
	dir := t.TempDir()
	w1, w2 := newBackend(t), newBackend(t)
	c := start(t, dir, Backend{"web1", w1.srv.URL}, Backend{"web2", w2.srv.URL})
	w1.state.Store("fail")
	eventually(t, dir, "web1.down")
	w2.state.Store("fail")
	deadline := time.Now().Add(10 * time.Second)
	for len(c.Status().Down) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("down %v, want both", c.Status().Down)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // several probe rounds with both failing
	if got := markers(t, dir); !slices.Equal(got, []string{"web1.down"}) {
		t.Fatalf("markers %v with both failing, want web1.down only (web2 is the last in rotation)", got)
	}
	w1.state.Store("ok")
	eventually(t, dir, "web2.down")
	w2.state.Store("ok")
	eventually(t, dir)
}

func TestBackendsAreValidated(t *testing.T) {
	for _, s := range []string{"", "web1", "=http://x", "../x=http://x", "a/b=http://x", "web1=ftp://x", ".x=http://x"} {
		if _, err := ParseBackend(s); err == nil {
			t.Errorf("ParseBackend(%q) accepted", s)
		}
	}
	if b, err := ParseBackend("web1=http://10.0.0.11/healthz.php"); err != nil || b.Name != "web1" || b.URL != "http://10.0.0.11/healthz.php" {
		t.Errorf("ParseBackend: %v %v", b, err)
	}
	if _, err := New(t.TempDir(), []Backend{{"a", "http://x"}, {"a", "http://y"}}, Options{}); err == nil {
		t.Error("a backend given twice was accepted")
	}
}

func TestStatusEndpoints(t *testing.T) {
	dir := t.TempDir()
	w1, w2 := newBackend(t), newBackend(t)
	w2.state.Store("fail")
	c := start(t, dir, Backend{"web1", w1.srv.URL}, Backend{"web2", w2.srv.URL})
	eventually(t, dir, "web2.down")
	for path, want := range map[string]string{"/healthz": "ok\n", "/status": `{"ready":true,"down":["web2"],"out":["web2"]}` + "\n"} {
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK || rec.Body.String() != want {
			t.Errorf("%s: %d %q, want 200 %q", path, rec.Code, rec.Body.String(), want)
		}
	}
}

// fakeMySQL accepts connections and, unless hung, sends what a MariaDB server sends first.
func fakeMySQL(t *testing.T, greeting []byte) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if greeting != nil {
				c.Write(greeting)
			}
			go func() { time.Sleep(time.Second); c.Close() }()
		}
	}()
	return "mysql://" + l.Addr().String()
}

func TestMySQLProbe(t *testing.T) {
	good := append([]byte{0x55, 0, 0, 0, 10}, "11.8.9-MariaDB\x00"...)
	for name, tc := range map[string]struct {
		greeting []byte
		healthy  bool
	}{
		"a greeting":             {good, true},
		"hung (accepts, silent)": {nil, false},
		"an error packet":        {[]byte{0x17, 0, 0, 0, 0xff, 0x69, 0x04}, false},
		"not MySQL":              {[]byte("HTTP/1.1 400 Bad\r\n"), false},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			err := probeMySQL(ctx, strings.TrimPrefix(fakeMySQL(t, tc.greeting), "mysql://"))
			if (err == nil) != tc.healthy {
				t.Errorf("probe: %v, want healthy=%v", err, tc.healthy)
			}
		})
	}
	if _, err := ParseBackend("replica=mysql://10.0.0.22"); err == nil {
		t.Error("mysql:// without a port was accepted")
	}
}

// A probe that gets no connection at all (a container that is gone leaves an address nobody
// answers; a cut network drops the SYN) is not a slow answer: out at the first one, while a
// backend that is connected and silent waits for the second.
func TestNotConnectedIsOutAtTheFirstProbe(t *testing.T) {
	dir := t.TempDir()
	w1, w2 := newBackend(t), newBackend(t)
	gone := strings.TrimPrefix(w1.srv.URL, "http://")
	var d net.Dialer
	noConnection := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == gone {
				<-ctx.Done() // web1: the SYN is never answered
				return nil, ctx.Err()
			}
			return d.DialContext(ctx, network, addr)
		},
	}}
	c, err := New(dir, []Backend{{"web1", w1.srv.URL}, {"web2", w2.srv.URL}}, Options{Interval: time.Second, Timeout: 100 * time.Millisecond,
		Client: noConnection, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w2.state.Store("hang")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// Both first probes fail at 100 ms; the next ones start at 1 s.
	time.Sleep(600 * time.Millisecond)
	if st := c.Status(); !slices.Equal(st.Down, []string{"web1"}) {
		t.Fatalf("down %v after one probe each, want web1 (not connected) and not web2 (connected, silent)", st.Down)
	}
}
