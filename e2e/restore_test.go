//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// backupSetup is a real S3 store and an agent configuration that backs the running stack up
// into it.
type backupSetup struct {
	endpoint, dir, config string
}

const s3Access, s3Secret = "E2EACCESS", "e2e-secret-key-123"

func newBackupSetup(t *testing.T) backupSetup {
	t.Helper()
	endpoint, dir := startS3(t, s3Access, s3Secret)
	b := backupSetup{endpoint: endpoint, dir: dir}
	b.config = b.writeConfig(t, endpoint, "{keep_last: 20, daily: 0, weekly: 0, monthly: 0}")
	return b
}

// writeConfig writes an agent configuration whose store is at endpoint, with a retention policy.
func (b backupSetup) writeConfig(t *testing.T, endpoint, retention string) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "s3.secret"), []byte(s3Secret+"\n"), 0o600)
	cfg := filepath.Join(dir, "agent.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`source: {url: /nonexistent}
backup:
  replica: %s
  primary: %s
  s3:
    endpoint: %s
    bucket: backups
    prefix: e2e/
    path_style: true
    access_key_id: %s
    secret_access_key_file: %s
  retention: %s
`, c("db_slave"), c("db_master"), endpoint, s3Access, filepath.Join(dir, "s3.secret"), retention)), 0o600)
	return cfg
}

// agent runs the agent binary with the setup's configuration.
func (b backupSetup) agent(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, buildAgent(t), append(args[:1:1], append([]string{"--config", b.config}, args[1:]...)...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type manifestJSON struct {
	ID      string `json:"id"`
	GTID    string `json:"gtid"`
	DumpKey string `json:"dump_key"`
	Note    string `json:"note"`
	Tables  map[string]struct {
		Rows int64 `json:"rows"`
	} `json:"tables"`
}

func (b backupSetup) backup(t *testing.T, ctx context.Context) manifestJSON {
	t.Helper()
	out, err := exec.CommandContext(ctx, buildAgent(t), "backup", "--config", b.config, "--json").Output()
	if err != nil {
		t.Fatalf("agent backup: %v\n%s", err, out)
	}
	var m manifestJSON
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("agent backup --json: %v\n%s", err, out)
	}
	time.Sleep(1100 * time.Millisecond) // backup ids have one-second resolution
	return m
}

func (b backupSetup) list(t *testing.T, ctx context.Context) []struct {
	ID       string        `json:"id"`
	Complete bool          `json:"complete"`
	Manifest *manifestJSON `json:"manifest"`
} {
	t.Helper()
	out, err := exec.CommandContext(ctx, buildAgent(t), "backups", "--config", b.config, "--json").Output()
	var list []struct {
		ID       string        `json:"id"`
		Complete bool          `json:"complete"`
		Manifest *manifestJSON `json:"manifest"`
	}
	if err != nil || json.Unmarshal(out, &list) != nil {
		t.Fatalf("agent backups: %v\n%s", err, out)
	}
	return list
}

// objectPath is the file versitygw keeps an object in.
func (b backupSetup) objectPath(key string) string {
	return filepath.Join(b.dir, "backups", "e2e", filepath.FromSlash(key))
}

// dbState is what a restore must bring back: each table's checksum, on one server.
func dbState(t *testing.T, ctx context.Context, service string) string {
	t.Helper()
	return st.rootSQL(t, ctx, service, "CHECKSUM TABLE app.visits, app.restore_probe EXTENDED")
}

// testRestore: a backup is taken, the data is damaged (a table dropped, rows added, a table
// created), corrupt and truncated copies of a backup are refused before the database is
// touched, and `agent restore` brings the backup's data back on the primary, checked on the
// replica too; `agent drill` restores a backup into a throw-away container.
func testRestore(t *testing.T, ctx context.Context) {
	b := newBackupSetup(t)
	st.rootSQL(t, ctx, "db_master", `CREATE TABLE app.restore_probe (id INT PRIMARY KEY, txt VARCHAR(64) CHARACTER SET utf8mb4, bin VARBINARY(16)) ENGINE=InnoDB;
		INSERT INTO app.restore_probe VALUES (1, 'plain', NULL), (2, 'it''s (a) tuple; \\ ok', 0x00FF2728), (3, '서울 🚀', 0x0A0D);`)
	for range 5 {
		fetchPage(t)
	}
	waitReplicaCaughtUp(t, ctx)
	before := dbState(t, ctx, "db_master")
	good := b.backup(t, ctx)
	if good.Tables["app.restore_probe"].Rows != 3 {
		t.Fatalf("backup %s: restore_probe has %d rows in the manifest, want 3", good.ID, good.Tables["app.restore_probe"].Rows)
	}

	// The damage.
	st.rootSQL(t, ctx, "db_master", "DROP TABLE app.restore_probe; CREATE TABLE app.after_backup (i INT); INSERT INTO app.visits (server, client) SELECT server, client FROM app.visits LIMIT 3")
	damaged := st.rootSQL(t, ctx, "db_master", "CHECKSUM TABLE app.visits")

	// --dry-run prints the plan and changes nothing.
	out, err := b.agent(t, ctx, "restore", "--dry-run", good.ID)
	if err != nil || !strings.Contains(out, "drop the databases app") || !strings.Contains(out, "safety backup") {
		t.Fatalf("restore --dry-run: %v\n%s", err, out)
	}
	// Without --yes and without a terminal, nothing happens.
	if out, err := b.agent(t, ctx, "restore", good.ID); err == nil || !strings.Contains(out, "--yes") {
		t.Fatalf("restore without --yes: %v\n%s", err, out)
	}

	// A corrupt and a truncated copy are refused before anything is touched.
	bad := b.backup(t, ctx)
	obj := b.objectPath(bad.DumpKey)
	data, err := os.ReadFile(obj)
	if err != nil {
		t.Fatalf("the stored object: %v", err)
	}
	nBackups := len(b.list(t, ctx))
	for _, tc := range []struct {
		name, want string
		damage     []byte
	}{
		{"corrupt", "is corrupt", flipByte(data, len(data)/2)},
		{"truncated", "truncated", data[:len(data)*2/3]},
	} {
		os.WriteFile(obj, tc.damage, 0o644)
		out, err := b.agent(t, ctx, "restore", "--yes", bad.ID)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, tc.want) || !strings.Contains(out, "not touched") {
			t.Fatalf("restore of a %s backup: %v\n%s", tc.name, err, out)
		}
		if got := st.rootSQL(t, ctx, "db_master", "CHECKSUM TABLE app.visits"); got != damaged {
			t.Fatalf("a refused %s restore changed the database", tc.name)
		}
		if n := len(b.list(t, ctx)); n != nBackups {
			t.Fatalf("a refused %s restore took a safety backup (%d backups, was %d)", tc.name, n, nBackups)
		}
		t.Logf("%s: %s", tc.name, lastLine(out))
	}

	// The restore.
	out, err = b.agent(t, ctx, "restore", "--yes", good.ID)
	if err != nil {
		t.Fatalf("agent restore: %v\n%s", err, out)
	}
	t.Log(lastLines(out, 3))
	if got := dbState(t, ctx, "db_master"); got != before {
		t.Fatalf("after the restore the primary holds\n%s\nwant\n%s", got, before)
	}
	if n := st.rootSQL(t, ctx, "db_master", "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='app' AND table_name='after_backup'"); n != "0" {
		t.Fatal("a table created after the backup survived the restore")
	}
	if got := st.rootSQL(t, ctx, "db_master", "SELECT txt FROM app.restore_probe WHERE id=3"); got != "서울 🚀" {
		t.Fatalf("utf8mb4 text came back as %q", got)
	}
	waitReplicaCaughtUp(t, ctx)
	if got := dbState(t, ctx, "db_slave"); got != before {
		t.Fatalf("after the restore the replica holds\n%s\nwant\n%s", got, before)
	}
	s := slaveStatus(t, ctx)
	if s["Slave_IO_Running"] != "Yes" || s["Slave_SQL_Running"] != "Yes" || s["Seconds_Behind_Master"] != "0" {
		t.Fatalf("replication after the restore: IO %s SQL %s lag %s", s["Slave_IO_Running"], s["Slave_SQL_Running"], s["Seconds_Behind_Master"])
	}
	// No account appeared on either server (a replicated GRANT ... TO CURRENT_USER() makes an
	// anonymous one on the replica), so the replica can be backed up again.
	for _, svc := range []string{"db_master", "db_slave"} {
		if n := st.rootSQL(t, ctx, svc, "SELECT COUNT(*) FROM mysql.user WHERE user = '' OR host = ''"); n != "0" {
			t.Fatalf("%s has %s anonymous accounts or roles after the restore", svc, n)
		}
	}
	// The application still works (its account was kept) and reads its write on the replica.
	if r := fetchPage(t); r.ReplicaInSync == nil || !*r.ReplicaInSync {
		t.Fatalf("the page after the restore: %+v", r)
	}
	// The safety backup holds the damaged state, with a note.
	var safety *manifestJSON
	for _, e := range b.list(t, ctx) {
		if e.Manifest != nil && strings.Contains(e.Manifest.Note, "safety backup before restoring "+good.ID) {
			safety = e.Manifest
		}
	}
	if safety == nil || safety.Tables["app.after_backup"].Rows != 0 || safety.Tables["app.restore_probe"].Rows != 0 {
		t.Fatalf("no safety backup of the damaged state: %+v", safety)
	}
	if _, ok := safety.Tables["app.after_backup"]; !ok {
		t.Fatalf("the safety backup lacks the table created after the backup: %v", safety.Tables)
	}

	// A restore drill of the good backup: a scratch container, compared, removed.
	out, err = b.agent(t, ctx, "drill", "--json", good.ID)
	if err != nil {
		t.Fatalf("agent drill: %v\n%s", err, out)
	}
	var drill struct {
		Tables int   `json:"tables"`
		Rows   int64 `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &drill); err != nil || drill.Tables < 2 {
		t.Fatalf("agent drill --json: %v\n%s", err, out)
	}
	if left, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=io.hastack.scratch").Output(); len(strings.TrimSpace(string(left))) > 0 {
		t.Fatalf("the drill left containers behind: %s", left)
	}
	// A drill of the corrupt backup fails and says so.
	os.WriteFile(obj, flipByte(data, len(data)/2), 0o644)
	if out, err := b.agent(t, ctx, "drill", bad.ID); err == nil || !strings.Contains(out, "corrupt") {
		t.Fatalf("a drill of a corrupt backup: %v\n%s", err, out)
	}
	t.Logf("drill: %d tables, %d rows", drill.Tables, drill.Rows)

	// --target new: a fresh container with the backup's data, the stack untouched.
	out, err = b.agent(t, ctx, "restore", "--yes", "--target", "new", good.ID)
	name := "hastack-restore-" + strings.ToLower(good.ID)
	defer exec.Command("docker", "rm", "-fv", name).Run()
	if err != nil {
		t.Fatalf("restore --target new: %v\n%s", err, out)
	}
	got, err := exec.Command("docker", "exec", name, "mariadb", "-N", "-B", "-e", "SELECT COUNT(*) FROM app.restore_probe").Output()
	if err != nil || strings.TrimSpace(string(got)) != "3" {
		t.Fatalf("the new container holds %q rows (%v)", got, err)
	}
	// It starts from an image Compose built and labelled: it must not pass for one of the
	// project's containers (Compose and the agent's drift watch go by those labels).
	if out, _ := exec.Command("docker", "ps", "-q", "--filter", "name="+name, "--filter", "label=com.docker.compose.project="+project).Output(); len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("%s carries the compose project label of %s", name, project)
	}
}

// testBackupStoreUnreachable: the store goes away in the middle of an upload; the backup fails
// with a message that says so, and no manifest (no backup) is left.
func testBackupStoreUnreachable(t *testing.T, ctx context.Context) {
	b := newBackupSetup(t)
	// Enough incompressible data for the upload to take several requests.
	st.rootSQL(t, ctx, "db_master", `CREATE TABLE IF NOT EXISTS app.bulk (id INT AUTO_INCREMENT PRIMARY KEY, junk VARBINARY(1024));
		USE app; INSERT INTO app.bulk (junk) SELECT RANDOM_BYTES(1024) FROM seq_1_to_12000;`)
	defer st.rootSQL(t, ctx, "db_master", "DROP TABLE app.bulk")
	waitReplicaCaughtUp(t, ctx)
	proxy := cutProxy(t, strings.TrimPrefix(b.endpoint, "http://"), 2<<20)
	b.config = b.writeConfig(t, "http://"+proxy, "{keep_last: 20}")
	out, err := b.agent(t, ctx, "backup")
	if err == nil || !strings.Contains(out, "store unreachable") || strings.Contains(out, "mariadb-dump:") {
		t.Fatalf("a backup whose store went away must fail on the upload: %v\n%s", err, out)
	}
	t.Log(lastLine(out))
	b.config = b.writeConfig(t, b.endpoint, "{keep_last: 20}")
	for _, e := range b.list(t, ctx) {
		if e.Complete {
			t.Fatalf("a backup interrupted by the store is listed as complete: %s", e.ID)
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(b.dir, "backups", "e2e", "*", "manifest.json")); len(matches) > 0 {
		t.Fatalf("a manifest was written: %v", matches)
	}
}

// cutProxy forwards TCP to target until limit bytes went towards it in all, then drops every
// connection and refuses new ones: a store that becomes unreachable mid-upload.
func cutProxy(t *testing.T, target string, limit int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if sent.Load() >= limit {
				conn.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				conn.Close()
				continue
			}
			go func() {
				defer conn.Close()
				defer up.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := conn.Read(buf)
					if n > 0 && sent.Add(int64(n)) >= limit {
						return // the store is gone
					}
					if n > 0 {
						up.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}()
			go func() {
				io.Copy(conn, up)
				conn.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

func waitReplicaCaughtUp(t *testing.T, ctx context.Context) {
	t.Helper()
	pos := st.rootSQL(t, ctx, "db_master", "SELECT @@GLOBAL.gtid_binlog_pos")
	if got := st.rootSQL(t, ctx, "db_slave", fmt.Sprintf("SELECT MASTER_GTID_WAIT('%s', 30)", pos)); got != "0" {
		t.Fatalf("the replica did not reach %s in 30s", pos)
	}
}

func flipByte(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0x5a
	return out
}

func lastLine(s string) string { return lastLines(s, 1) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// testBundledObjectStore: the stack's own S3 store (objectstore, on loopback) takes a backup
// with the generated credentials, and a restore drill of it passes.
func testBundledObjectStore(t *testing.T, ctx context.Context) {
	secret := filepath.Join(st.dir, "secrets", "objectstore", "secret_key")
	if _, err := os.Stat(secret); err != nil {
		t.Fatalf("secrets-init did not generate the store's secret key: %v", err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`source: {url: /nonexistent}
backup:
  replica: %s
  primary: %s
  s3: {endpoint: "http://127.0.0.1:%s", bucket: backups, path_style: true, access_key_id: hastack, secret_access_key_file: %s}
`, c("db_slave"), c("db_master"), objectPort, secret)), 0o600)
	agent := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, buildAgent(t), append(args, "--config", cfg)...).CombinedOutput()
		if err != nil {
			t.Fatalf("agent %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := agent("backup")
	t.Log(lastLines(out, 8))
	if out := agent("backups"); !strings.Contains(out, "complete") {
		t.Fatalf("agent backups:\n%s", out)
	}
	if out := agent("drill"); !strings.Contains(out, "restore drill passed") {
		t.Fatalf("agent drill:\n%s", out)
	}
}
