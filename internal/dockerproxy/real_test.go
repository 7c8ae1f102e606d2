//go:build e2e

package dockerproxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

const realSocket = "/var/run/docker.sock"

// TestRealEngine runs the proxy in front of this machine's Docker engine: the reads cAdvisor
// makes pass, writes and exports are refused by the proxy, and inspect answers carry no
// environment.
func TestRealEngine(t *testing.T) {
	if _, err := os.Stat(realSocket); err != nil {
		t.Fatalf("this test needs the Docker engine's socket %s: %v (start Docker, or run without -tags e2e)", realSocket, err)
	}
	h, err := New(Options{Upstream: "unix://" + realSocket, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: nil}}

	get := func(method, path string, out any) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		if out != nil && resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatalf("%s %s: %v: %.200s", method, path, err, b)
			}
		}
		return resp.StatusCode, string(b)
	}

	if err := Check(context.Background(), ln.Addr().String()); err != nil {
		t.Fatalf("health check through the proxy: %v", err)
	}
	var version struct{ Version, APIVersion string }
	if code, body := get("GET", "/version", &version); code != 200 || version.APIVersion == "" {
		t.Fatalf("GET /version: %d %.200s", code, body)
	}
	v := "/v" + version.APIVersion
	t.Logf("engine %s, API %s", version.Version, version.APIVersion)

	var info struct{ Driver, DockerRootDir string }
	if code, body := get("GET", v+"/info", &info); code != 200 || info.Driver == "" {
		t.Fatalf("GET %s/info: %d %.200s", v, code, body)
	}
	var list []struct{ Id string }
	if code, body := get("GET", v+"/containers/json", &list); code != 200 {
		t.Fatalf("GET %s/containers/json: %d %.200s", v, code, body)
	}
	t.Logf("%d running containers listed", len(list))
	for _, c := range list {
		var inspect struct {
			Id     string
			Config map[string]json.RawMessage
		}
		code, body := get("GET", v+"/containers/"+c.Id+"/json", &inspect)
		if code == http.StatusNotFound {
			continue // gone since the list
		}
		if code != 200 || inspect.Id != c.Id || inspect.Config == nil {
			t.Fatalf("GET %s/containers/%s/json: %d %.200s", v, c.Id, code, body)
		}
		if _, ok := inspect.Config["Env"]; ok {
			t.Errorf("inspect of %s still has Config.Env", c.Id)
		}
	}

	id := "hastack-no-such-container"
	if len(list) > 0 {
		id = list[0].Id
	}
	for _, tc := range []struct{ method, path string }{
		{"POST", v + "/containers/create"},
		{"GET", v + "/containers/" + id + "/export"},
		{"GET", v + "/containers/" + id + "/archive?path=/"},
		{"POST", v + "/containers/" + id + "/exec"},
		{"GET", v + "/images/json"},
		{"GET", v + "/events"},
	} {
		code, body := get(tc.method, tc.path, nil)
		if code != http.StatusForbidden || !strings.Contains(body, "docker-proxy: ") {
			t.Errorf("%s %s: %d %.200s, want the proxy's 403", tc.method, tc.path, code, body)
		}
	}
}
