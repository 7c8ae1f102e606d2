package api

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// 50 clients that send half a request and then nothing: each connection is closed by the
// server after the header timeout, and a normal client is answered meanwhile.
func TestSlowClientsHoldNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(Handler(&fakeReconciler{}, Options{APIToken: testToken, Listen: ln.Addr().String()}),
		timeouts{header: 300 * time.Millisecond, read: time.Second, write: 5 * time.Second, idle: time.Second})
	go srv.Serve(ln)
	defer srv.Close()

	var slow []net.Conn
	for range 50 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /api/v1/status HTTP/1.1\r\nHost: "+ln.Addr().String()+"\r\n") // no end of headers
		slow = append(slow, c)
	}
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("a normal client beside 50 slow ones: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a normal client beside 50 slow ones: %s", resp.Status)
	}
	for i, c := range slow {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		// The server gives up on the request: an error answer or a closed connection, never
		// a connection held open until the client goes.
		_, err := bufio.NewReader(c).ReadString('\n')
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("slow client %d: still held after 10 s", i)
		}
	}
}

func TestTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "api-token")
	tok, err := LoadOrCreateToken(path)
	if err != nil || len(tok) != 64 {
		t.Fatalf("LoadOrCreateToken: %q %v", tok, err)
	}
	again, err := LoadOrCreateToken(path)
	if err != nil || again != tok {
		t.Fatalf("a second load made a new token: %q %v", again, err)
	}
	if read, err := ReadToken(path); err != nil || read != tok {
		t.Fatalf("ReadToken: %q %v", read, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v %v, want 0600", fi.Mode().Perm(), err)
	}
	for _, bad := range []string{"", "\n", "a\nb\n"} {
		p := filepath.Join(t.TempDir(), "t")
		os.WriteFile(p, []byte(bad), 0o600)
		if _, err := ReadToken(p); err == nil || !strings.Contains(err.Error(), "one non-empty line") {
			t.Errorf("ReadToken(%q) = %v", bad, err)
		}
	}
}
