package dockerproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const secretEnv = "DB_PASSWORD=hunter2-secret"

// inspectJSON is an engine's answer to /containers/{id}/json, shortened.
const inspectJSON = `{"Id":"abc","Name":"/db_master","Created":"2026-12-01T10:00:00.123456789Z",
"State":{"Running":true,"Pid":42},"HostConfig":{"NetworkMode":"default","Memory":9007199254740993},
"Config":{"Image":"hastack/mariadb","Env":["PATH=/usr/bin","` + secretEnv + `"],"Labels":{"com.docker.compose.service":"db_master","a<b":"x&y"}}}`

// fakeEngine is an engine on a unix socket that records what reaches it.
type fakeEngine struct {
	socket string
	mu     sync.Mutex
	seen   []seenRequest
}

type seenRequest struct {
	method, target string
	header         http.Header
	body           int
}

func newFakeEngine(t *testing.T) *fakeEngine {
	t.Helper()
	e := &fakeEngine{socket: filepath.Join(t.TempDir(), "d.sock")}
	ln, err := net.Listen("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(e.serve))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return e
}

func (e *fakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	e.seen = append(e.seen, seenRequest{r.Method, r.RequestURI, r.Header.Clone(), len(b)})
	e.mu.Unlock()
	w.Header().Set("Api-Version", "1.41")
	p := strings.TrimPrefix(r.URL.Path, "/v1.41")
	switch p {
	case "/_ping":
		w.Write([]byte("OK"))
	case "/version":
		w.Write([]byte(`{"Version":"20.10.24","ApiVersion":"1.41"}`))
	case "/info":
		w.Write([]byte(`{"Driver":"overlay2","ServerVersion":"20.10.24"}`))
	case "/containers/json":
		w.Write([]byte(`[{"Id":"abc","Names":["/db_master"]}]`))
	case "/containers/abc/json", "/containers/db_master/json":
		w.Write([]byte(inspectJSON))
	case "/containers/noconfig/json":
		w.Write([]byte(`{"Id":"noconfig","Config":null}`))
	case "/containers/big/json":
		w.Write([]byte(`{"Id":"big","Pad":"`))
		w.Write(bytes.Repeat([]byte("x"), maxInspect))
		w.Write([]byte(`","Config":{"Env":["` + secretEnv + `"]}}`))
	case "/containers/notjson/json":
		w.Write([]byte("<html>" + secretEnv + "</html>"))
	case "/containers/trailing/json":
		w.Write([]byte(`{"Config":{}} {"Config":{"Env":["` + secretEnv + `"]}}`))
	case "/containers/array/json":
		w.Write([]byte(`["` + secretEnv + `"]`))
	case "/containers/missing/json":
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"message":"No such container: missing"}`))
	default:
		w.Write([]byte("the engine was reached"))
	}
}

func (e *fakeEngine) requests() []seenRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.seen)
}

func (e *fakeEngine) reset() {
	e.mu.Lock()
	e.seen = nil
	e.mu.Unlock()
}

// startProxy serves the proxy in front of upstream on a loopback port; its log goes to logs.
func startProxy(t *testing.T, upstream string, logs io.Writer) string {
	t.Helper()
	h, err := New(Options{Upstream: upstream, Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config = NewServer(h)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// raw sends one request exactly as written (request line, headers, body) and returns the
// answer's status and body.
func raw(t *testing.T, addr, method, target string, headers []string, body string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var req strings.Builder
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n", method, target)
	for _, h := range headers {
		req.WriteString(h + "\r\n")
	}
	req.WriteString("\r\n" + body)
	if _, err := io.WriteString(c, req.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return resp.StatusCode, string(b)
}

func TestProxy(t *testing.T) {
	engine := newFakeEngine(t)
	var logs syncBuffer
	addr := startProxy(t, "unix://"+engine.socket, &logs)

	for _, tc := range []struct {
		method, target string
		headers        []string
		body           string
		want           int
		upstream       string // the target the engine must see; "" = it must see nothing
	}{
		// cAdvisor's calls, as moby/moby/client sends them.
		{method: "HEAD", target: "/_ping", want: 200, upstream: "/_ping"},
		{method: "GET", target: "/_ping", want: 200, upstream: "/_ping"},
		{method: "GET", target: "/v1.41/version", want: 200, upstream: "/v1.41/version"},
		{method: "GET", target: "/v1.41/info", want: 200, upstream: "/v1.41/info"},
		{method: "GET", target: "/v1.41/containers/abc/json", want: 200, upstream: "/v1.41/containers/abc/json"},
		// Other allowed forms.
		{method: "GET", target: "/version", want: 200, upstream: "/version"},
		{method: "GET", target: "/v1.41/_ping", want: 200, upstream: "/v1.41/_ping"},
		{method: "GET", target: "/v1.41/containers/json", want: 200, upstream: "/v1.41/containers/json"},
		{method: "GET", target: "/v1.41/containers/json?all=1&limit=5", want: 200, upstream: "/v1.41/containers/json?all=1&limit=5"},
		{method: "GET", target: "/v1.41/containers/json?filters=%7B%22status%22%3A%5B%22running%22%5D%7D", want: 200,
			upstream: "/v1.41/containers/json?filters=%7B%22status%22%3A%5B%22running%22%5D%7D"},
		{method: "GET", target: "/containers/db_master/json?size=1", want: 200, upstream: "/containers/db_master/json?size=1"},
		{method: "GET", target: "/v1.41/containers/missing/json", want: 404, upstream: "/v1.41/containers/missing/json"},
		{method: "GET", target: "/v1.41/info?", want: 200, upstream: "/v1.41/info"},

		// Writes and everything that is not a read of the list above.
		{method: "POST", target: "/v1.41/containers/create", want: 403},
		{method: "POST", target: "/v1.41/containers/abc/exec", want: 403},
		{method: "POST", target: "/v1.41/containers/abc/json", want: 403},
		{method: "PUT", target: "/v1.41/containers/abc/archive?path=/", want: 403},
		{method: "DELETE", target: "/v1.41/containers/abc", want: 403},
		{method: "PATCH", target: "/v1.41/info", want: 403},
		{method: "OPTIONS", target: "*", want: 403},
		{method: "GET", target: "/v1.41/containers/create", want: 403},
		{method: "GET", target: "/v1.41/containers/abc/exec", want: 403},
		{method: "GET", target: "/v1.41/containers/abc/export", want: 403},
		{method: "GET", target: "/v1.41/containers/abc/archive?path=/etc/shadow", want: 403},
		{method: "GET", target: "/v1.41/containers/abc/logs", want: 403},
		{method: "GET", target: "/v1.41/containers/abc/attach/ws", want: 403},
		{method: "GET", target: "/v1.41/containers/abc/stats", want: 403},
		{method: "GET", target: "/v1.41/exec/abc/json", want: 403},
		{method: "GET", target: "/v1.41/images/json", want: 403},
		{method: "GET", target: "/v1.41/images/abc/get", want: 403},
		{method: "GET", target: "/v1.41/secrets", want: 403},
		{method: "GET", target: "/v1.41/configs", want: 403},
		{method: "GET", target: "/v1.41/swarm", want: 403},
		{method: "GET", target: "/v1.41/events", want: 403},
		{method: "GET", target: "/v1.41/volumes", want: 403},
		{method: "GET", target: "/v1.41/plugins", want: 403},
		{method: "GET", target: "/v1.41/system/df", want: 403},
		{method: "GET", target: "/session", want: 403},
		{method: "GET", target: "/", want: 403},
		{method: "GET", target: "/v1.41", want: 403},
		{method: "GET", target: "/v1.41/", want: 403},
		{method: "GET", target: "/v2.0/info", want: 403},
		{method: "GET", target: "/v1.41x/info", want: 403},
		{method: "GET", target: "/v1.41/v1.41/info", want: 403},
		// Path tricks: the cleaned form must be the raw form, written without encoding.
		{method: "GET", target: "/v1.41/containers/../images/json", want: 403},
		{method: "GET", target: "/_ping/../containers/create", want: 403},
		{method: "GET", target: "/v1.41/containers/%2e%2e/json", want: 403},
		{method: "GET", target: "/v1.41/containers/abc%2fexport/json", want: 403},
		{method: "GET", target: "/v1.41/%69nfo", want: 403},
		{method: "GET", target: "//v1.41/info", want: 403},
		{method: "GET", target: "/v1.41//info", want: 403},
		{method: "GET", target: "/v1.41/./info", want: 403},
		{method: "GET", target: "/v1.41/info/", want: 403},
		{method: "GET", target: "/v1.41/info/.", want: 403},
		{method: "GET", target: "/v1.41/containers/abc/json/", want: 403},
		{method: "GET", target: "/v1.41/containers/./json", want: 403},
		{method: "GET", target: "/v1.41/containers/../json", want: 403},
		{method: "GET", target: "/v1.41/containers/.abc/json", want: 403},
		{method: "GET", target: "/v1.41/containers/-abc/json", want: 403},
		{method: "GET", target: "/v1.41/containers/a;b/json", want: 403},
		{method: "GET", target: `/v1.41/containers/a\b/json`, want: 403},
		{method: "GET", target: "/v1.41/containers/a:b/json", want: 403},
		{method: "GET", target: "/v1.41/containers/" + strings.Repeat("a", 300) + "/json", want: 403},
		{method: "GET", target: "http://docker/v1.41/info", want: 403},
		{method: "GET", target: "/v1.41/info#x", want: 403},
		// Query tricks: only the endpoint's own parameters, once, with plain values.
		{method: "GET", target: "/v1.41/info?x=1", want: 403},
		{method: "GET", target: "/_ping?all=1", want: 403},
		{method: "GET", target: "/v1.41/containers/abc/json?size=1&x=1", want: 403},
		{method: "GET", target: "/v1.41/containers/abc/json?size=yes", want: 403},
		{method: "GET", target: "/v1.41/containers/json?all=1&all=0", want: 403},
		{method: "GET", target: "/v1.41/containers/json?all=1;size=1", want: 403},
		{method: "GET", target: "/v1.41/containers/json?all=%zz", want: 403},
		{method: "GET", target: "/v1.41/containers/json?limit=1e9", want: 403},
		{method: "GET", target: "/v1.41/containers/json?filters=%00", want: 403},
		// No request bodies.
		{method: "GET", target: "/v1.41/info", headers: []string{"Content-Length: 5"}, body: "hello", want: 403},
		{method: "GET", target: "/v1.41/info", headers: []string{"Transfer-Encoding: chunked"}, body: "5\r\nhello\r\n0\r\n\r\n", want: 403},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			engine.reset()
			status, body := raw(t, addr, tc.method, tc.target, tc.headers, tc.body)
			if status != tc.want {
				t.Fatalf("status %d, want %d (body %q)", status, tc.want, body)
			}
			seen := engine.requests()
			if tc.upstream == "" {
				if len(seen) != 0 {
					t.Fatalf("refused request reached the engine: %+v", seen)
				}
				var e struct{ Message string }
				if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.HasPrefix(e.Message, "docker-proxy: ") {
					t.Fatalf("body %q: want {\"message\":\"docker-proxy: ...\"}", body)
				}
				return
			}
			if len(seen) != 1 || seen[0].method != tc.method || seen[0].target != tc.upstream {
				t.Fatalf("engine saw %+v, want one %s %s", seen, tc.method, tc.upstream)
			}
		})
	}

	// One line per refused request, with method, path and remote; never an answer's body.
	out := logs.String()
	if n := strings.Count(out, "msg=refused"); n < 60 {
		t.Errorf("%d refusal log lines, want one per refused request:\n%s", n, out)
	}
	if !strings.Contains(out, `msg=refused method=POST path=/v1.41/containers/create remote=127.0.0.1:`) {
		t.Errorf("refusal of POST /containers/create not logged with method, path, remote:\n%s", out)
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, "the engine was reached") {
		t.Errorf("log repeats a body:\n%s", out)
	}
}

func TestHeadersNotForwarded(t *testing.T) {
	engine := newFakeEngine(t)
	addr := startProxy(t, "unix://"+engine.socket, io.Discard)
	status, _ := raw(t, addr, "GET", "/v1.41/info", []string{
		"Accept: application/json", "User-Agent: cadvisor", "Content-Type: application/json",
		"Authorization: Bearer x", "X-Registry-Auth: e30=", "Cookie: a=b", "X-Forwarded-For: 10.0.0.1",
		"Forwarded: for=10.0.0.1", "Connection: Upgrade", "Upgrade: tcp", "X-Docker-Expose-Session-Uuid: 1",
	}, "")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	seen := engine.requests()
	if len(seen) != 1 {
		t.Fatalf("engine saw %d requests", len(seen))
	}
	var keys []string
	for k := range seen[0].header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"Accept", "Content-Type", "User-Agent"}; !slices.Equal(keys, want) {
		t.Errorf("engine got headers %v, want only %v", keys, want)
	}
	if ua := seen[0].header.Get("User-Agent"); ua != "cadvisor" {
		t.Errorf("User-Agent %q, want cadvisor", ua)
	}
}

func TestInspectLosesEnv(t *testing.T) {
	engine := newFakeEngine(t)
	addr := startProxy(t, "unix://"+engine.socket, io.Discard)
	status, body := raw(t, addr, "GET", "/v1.41/containers/abc/json", nil, "")
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	if strings.Contains(body, "hunter2") || strings.Contains(body, "PATH=") || strings.Contains(body, `"Env"`) {
		t.Fatalf("environment not removed: %s", body)
	}
	var got struct {
		Name       string
		State      struct{ Running bool }
		HostConfig struct{ Memory json.Number }
		Config     struct {
			Image  string
			Labels map[string]string
		}
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("answer not JSON: %v: %s", err, body)
	}
	if got.Name != "/db_master" || !got.State.Running || got.Config.Image != "hastack/mariadb" ||
		got.Config.Labels["com.docker.compose.service"] != "db_master" || got.Config.Labels["a<b"] != "x&y" {
		t.Errorf("fields cAdvisor reads changed: %+v", got)
	}
	if got.HostConfig.Memory != "9007199254740993" {
		t.Errorf("a large number lost precision: %s", got.HostConfig.Memory)
	}

	// The list has no environment; HEAD has no body to filter; a null Config stays null.
	if status, body := raw(t, addr, "HEAD", "/v1.41/containers/abc/json", nil, ""); status != 200 || body != "" {
		t.Errorf("HEAD: %d %q", status, body)
	}
	if status, body := raw(t, addr, "GET", "/v1.41/containers/noconfig/json", nil, ""); status != 200 || !strings.Contains(body, `"Config":null`) {
		t.Errorf("null Config: %d %q", status, body)
	}
}

func TestInspectFailsClosed(t *testing.T) {
	engine := newFakeEngine(t)
	var logs syncBuffer
	addr := startProxy(t, "unix://"+engine.socket, &logs)
	for _, id := range []string{"big", "notjson", "trailing", "array"} {
		status, body := raw(t, addr, "GET", "/v1.41/containers/"+id+"/json", nil, "")
		if status != http.StatusBadGateway {
			t.Errorf("%s: status %d, want 502", id, status)
		}
		if strings.Contains(body, "hunter2") || !strings.HasPrefix(body, `{"message":"docker-proxy: `) {
			t.Errorf("%s: body %.200q", id, body)
		}
	}
	if strings.Contains(logs.String(), "hunter2") {
		t.Errorf("log repeats a body:\n%s", logs.String())
	}
}

func TestEngineUnreachable(t *testing.T) {
	addr := startProxy(t, filepath.Join(t.TempDir(), "absent.sock"), io.Discard)
	if status, body := raw(t, addr, "GET", "/v1.41/info", nil, ""); status != http.StatusBadGateway {
		t.Errorf("status %d, want 502 (%s)", status, body)
	}
	if err := Check(context.Background(), addr); err == nil {
		t.Error("Check passed with the engine away")
	}
}

func TestCheck(t *testing.T) {
	engine := newFakeEngine(t)
	addr := startProxy(t, engine.socket, io.Discard)
	_, port, _ := net.SplitHostPort(addr)
	for _, listen := range []string{addr, ":" + port, "0.0.0.0:" + port} {
		if err := Check(context.Background(), listen); err != nil {
			t.Errorf("Check(%q): %v", listen, err)
		}
	}
	if err := Check(context.Background(), "no-port"); err == nil {
		t.Error("Check of an address without a port passed")
	}
}

func TestUpstream(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"unix:///var/run/docker.sock", "/var/run/docker.sock"},
		{"/run/docker.sock", "/run/docker.sock"},
		{"tcp://127.0.0.1:2375", ""},
		{"docker.sock", ""},
		{"unix://docker.sock", ""},
	} {
		got, err := socketPath(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("socketPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestServerLimits(t *testing.T) {
	srv := NewServer(http.NotFoundHandler())
	if srv.ReadHeaderTimeout == 0 || srv.ReadTimeout == 0 || srv.WriteTimeout == 0 || srv.IdleTimeout == 0 || srv.MaxHeaderBytes == 0 {
		t.Errorf("a limit is unset: %+v", srv)
	}
}

// syncBuffer is a bytes.Buffer that the proxy's handlers may write from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
