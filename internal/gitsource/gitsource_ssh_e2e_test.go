//go:build e2e

package gitsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const sshdPath = "/usr/sbin/sshd"

// sshServer is a real sshd on loopback that serves git over the login
// shell (git-upload-pack), with its own host key and one authorized key.
type sshServer struct {
	port      int
	hostPub   string // "type base64" of the host key
	clientKey string // private key file authorized for root
}

// keygen makes an unencrypted ed25519 key pair at path and path.pub.
func keygen(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gitsource-test", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
}

// pubKey returns "type base64" of a public key file.
func pubKey(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		t.Fatalf("malformed public key %s", path)
	}
	return fields[0] + " " + fields[1]
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSSHD starts sshd in the foreground with a configuration of its own;
// it is stopped when the test ends.
func startSSHD(t *testing.T) *sshServer {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Fatalf("%s is missing: install openssh-server (apt-get install openssh-server): %v", sshdPath, err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("the ssh end-to-end test logs in as root and must run as root")
	}
	// sshd refuses to start without its privilege separation directory,
	// which the Debian service would normally create.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	srv := &sshServer{port: freePort(t), clientKey: filepath.Join(dir, "client_key")}
	hostKey := filepath.Join(dir, "host_key")
	keygen(t, hostKey)
	keygen(t, srv.clientKey)
	srv.hostPub = pubKey(t, hostKey+".pub")
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, []byte(pubKey(t, srv.clientKey+".pub")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
`, srv.port, hostKey, filepath.Join(dir, "sshd.pid"), authorized)
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sshdPath, "-t", "-f", config).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v\n%s", err, out)
	}

	var logs bytes.Buffer
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", config)
	cmd.Stdout = &logs
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("sshd log:\n%s", logs.String())
		}
	})

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return srv
		}
		select {
		case err := <-done:
			t.Fatalf("sshd exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %s within 10s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestFetchSSH(t *testing.T) {
	f := newFixture(t)
	srv := startSSHD(t)
	dir := t.TempDir()
	url := fmt.Sprintf("ssh://root@127.0.0.1:%d%s", srv.port, f.bare)
	hostEntry := fmt.Sprintf("[127.0.0.1]:%d", srv.port)

	writeFile := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodKnownHosts := writeFile("known_hosts", hostEntry+" "+srv.hostPub+"\n")
	otherKey := filepath.Join(dir, "other_key")
	keygen(t, otherKey)
	wrongKnownHosts := writeFile("known_hosts_wrong", hostEntry+" "+pubKey(t, otherKey+".pub")+"\n")
	unknownKnownHosts := writeFile("known_hosts_other_host", "[127.0.0.1]:1 "+srv.hostPub+"\n")

	tests := []struct {
		name       string
		knownHosts string
		key        string
		ref        string
		want       string
		wantErr    error
		wantText   string
	}{
		{name: "branch", knownHosts: goodKnownHosts, key: srv.clientKey, ref: "main", want: f.c4},
		{name: "tag", knownHosts: goodKnownHosts, key: srv.clientKey, ref: "v1.0", want: f.c1},
		{name: "host key mismatch", knownHosts: wrongKnownHosts, key: srv.clientKey, ref: "main",
			wantErr: ErrHostKey, wantText: "does not match known_hosts file " + wrongKnownHosts},
		{name: "unknown host", knownHosts: unknownKnownHosts, key: srv.clientKey, ref: "main",
			wantErr: ErrHostKey, wantText: fmt.Sprintf("not in known_hosts file %s (source.known_hosts_file): add it with ssh-keyscan -p %d 127.0.0.1", unknownKnownHosts, srv.port)},
		{name: "key not authorized", knownHosts: goodKnownHosts, key: otherKey, ref: "main",
			wantErr: ErrAuth, wantText: "check that the public key of source.ssh_key_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := New(Options{URL: url, Ref: tt.ref, SSHKeyFile: tt.key, KnownHostsFile: tt.knownHosts, CacheDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			rev, err := s.Fetch(ctx)
			if tt.wantErr != nil {
				t.Logf("error: %v", err)
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantText) {
					t.Fatalf("Fetch() = %v, want %v containing %q", err, tt.wantErr, tt.wantText)
				}
				return
			}
			if err != nil || rev.Commit != tt.want {
				t.Fatalf("Fetch() = %+v, %v; want %s", rev, err, tt.want)
			}
			dst := filepath.Join(t.TempDir(), "out")
			if err := s.Export(ctx, rev.Commit, "stack", dst); err != nil {
				t.Fatalf("Export: %v", err)
			}
			if info, err := os.Stat(filepath.Join(dst, "run.sh")); err != nil || info.Mode().Perm() != 0o755 {
				t.Fatalf("exported run.sh: %v, %v", info, err)
			}
		})
	}
}
