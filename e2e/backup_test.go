//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// versitygwVersion is built with go install when no versitygw is installed (the S3 store the
// backup tests run against: a real S3-compatible server over a directory).
const versitygwVersion = "v1.8.0"

func versitygw(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	bin := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "versitygw")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("building versitygw %s (about a minute)", versitygwVersion)
	if out, err := exec.Command("go", "install", "github.com/versity/versitygw/cmd/versitygw@"+versitygwVersion).CombinedOutput(); err != nil {
		t.Fatalf("go install versitygw: %v\n%s", err, out)
	}
	return bin
}

// startS3 runs versitygw on loopback with a bucket "backups" and returns its endpoint; the
// bucket's objects are files under <dir>/backups.
func startS3(t *testing.T, access, secret string) (endpoint, dir string) {
	t.Helper()
	dir = t.TempDir()
	os.MkdirAll(filepath.Join(dir, "backups"), 0o755)
	addr := freeAddr(t)
	cmd := exec.Command(versitygw(t), "--access", access, "--secret", secret, "--region", "us-east-1",
		"--port", addr, "--health", "/health", "--quiet", "posix", dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := eventually(30*time.Second, 200*time.Millisecond, func() error {
		resp, err := http.Get("http://" + addr + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}); err != nil {
		t.Fatalf("versitygw did not start: %v\n%s", err, out.String())
	}
	return "http://" + addr, dir
}

// testBackupToS3: `agent backup` dumps the running stack's replica into a real S3-compatible
// store; an independent client (curl, SigV4) downloads it, the standard zstd tool decompresses
// it, and the manifest's row count is the database's.
func testBackupToS3(t *testing.T, ctx context.Context) {
	const access, secret = s3Access, s3Secret
	b := newBackupSetup(t)
	endpoint := b.endpoint
	// Keep one: the second backup below prunes the first.
	cfg := b.writeConfig(t, endpoint, "{keep_last: 1, daily: 1, weekly: 0, monthly: 0}")
	for range 10 {
		fetchPage(t)
	}
	want := st.rootSQL(t, ctx, "db_master", "SELECT COUNT(*) FROM app.visits")
	if err := eventually(5*time.Second, 200*time.Millisecond, func() error {
		if got := st.rootSQL(t, ctx, "db_slave", "SELECT COUNT(*) FROM app.visits"); got != want {
			return fmt.Errorf("replica %s rows, primary %s", got, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, buildAgent(t), "backup", "--config", cfg, "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("agent backup: %v\n%s", err, out)
	}
	var m struct {
		ID      string `json:"id"`
		GTID    string `json:"gtid"`
		DumpKey string `json:"dump_key"`
		SHA256  string `json:"sha256"`
		Source  struct {
			Role string `json:"role"`
		} `json:"source"`
		Tables []tableJSON `json:"tables"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("parse manifest: %v\n%s", err, out)
	}
	visits, _ := manifestJSON{Tables: m.Tables}.table("app", "visits")
	if m.Source.Role != "replica" || m.GTID == "" || fmt.Sprint(visits.Rows) != want {
		t.Fatalf("manifest: role %s gtid %q visits %d (database %s)", m.Source.Role, m.GTID, visits.Rows, want)
	}
	// agent backups lists it as complete.
	out, err = exec.CommandContext(ctx, buildAgent(t), "backups", "--config", cfg, "--json").CombinedOutput()
	var list []struct {
		ID       string `json:"id"`
		Complete bool   `json:"complete"`
	}
	if err != nil || json.Unmarshal(out, &list) != nil || len(list) != 1 || list[0].ID != m.ID || !list[0].Complete {
		t.Fatalf("agent backups: %v\n%s", err, out)
	}
	// Not our code: curl with SigV4 lists and downloads, zstd decompresses.
	curl := func(path string) []byte {
		t.Helper()
		out, err := exec.CommandContext(ctx, "curl", "-fsS", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", access+":"+secret,
			"-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", endpoint+path).Output()
		if err != nil {
			t.Fatalf("curl %s: %v", path, err)
		}
		return out
	}
	if list := curl("/backups?list-type=2&prefix=e2e%2F"); !bytes.Contains(list, []byte("e2e/"+m.ID+"/manifest.json")) {
		t.Fatalf("listing lacks the manifest:\n%s", list)
	}
	// Signed as docs/backup.md says, over the manifest's stored bytes, with the configured key.
	if sig, manifest := curl("/backups/e2e/"+m.ID+"/manifest.json.sig"), curl("/backups/e2e/"+m.ID+"/manifest.json"); !bytes.Equal(sig, signManifest(b.key, manifest)) {
		t.Fatalf("manifest signature %q, want %q", sig, signManifest(b.key, manifest))
	}
	obj := curl("/backups/e2e/" + m.DumpKey)
	sum := exec.Command("sha256sum")
	sum.Stdin = bytes.NewReader(obj)
	if s, _ := sum.Output(); !strings.HasPrefix(string(s), m.SHA256) {
		t.Fatalf("downloaded object sha256 %s, manifest %s", s, m.SHA256)
	}
	zstd := exec.Command("zstd", "-dc")
	zstd.Stdin = bytes.NewReader(obj)
	sql, err := zstd.Output()
	if err != nil {
		t.Fatalf("zstd -d (install zstd): %v", err)
	}
	if !bytes.Contains(sql, []byte("INSERT INTO `visits`")) || !bytes.Contains(sql, []byte("gtid_slave_pos='"+m.GTID+"'")) {
		t.Fatal("decompressed dump lacks the visits or the GTID position")
	}
	// A second backup: the retention policy (keep 1) prunes the first, dump and manifest.
	time.Sleep(1100 * time.Millisecond) // backup ids have one-second resolution
	if out, err := exec.CommandContext(ctx, buildAgent(t), "backup", "--config", cfg).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "pruned") || !strings.Contains(string(out), m.ID) {
		t.Fatalf("second agent backup should prune %s: %v\n%s", m.ID, err, out)
	}
	if list := curl("/backups?list-type=2&prefix=e2e%2F"); bytes.Contains(list, []byte(m.ID)) {
		t.Fatalf("the pruned backup %s is still listed:\n%s", m.ID, list)
	}
	// Replication runs again after the dump (--dump-slave pauses the SQL thread).
	s := slaveStatus(t, ctx)
	if s["Slave_IO_Running"] != "Yes" || s["Slave_SQL_Running"] != "Yes" {
		t.Fatalf("after the backup: IO %s SQL %s", s["Slave_IO_Running"], s["Slave_SQL_Running"])
	}
	t.Logf("backup %s: %d bytes, gtid %s, %s visits", m.ID, len(obj), m.GTID, want)
}
