//go:build e2e

package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/s3store"
)

// backupSetup is a real S3 store and an agent configuration that backs the running stack up
// into it, signing manifests with a key of its own.
type backupSetup struct {
	endpoint, dir, config string
	keyFile, key          string // backup.manifest_key_file and the key in it
}

const s3Access, s3Secret = "E2EACCESS", "e2e-secret-key-123"

func newBackupSetup(t *testing.T) backupSetup {
	t.Helper()
	endpoint, dir := startS3(t, s3Access, s3Secret)
	b := backupSetup{endpoint: endpoint, dir: dir}
	b.keyFile, b.key = writeManifestKey(t)
	b.config = b.writeConfig(t, endpoint, "{keep_last: 20, daily: 0, weekly: 0, monthly: 0}")
	return b
}

// writeManifestKey writes a key file as scripts/up does (random text, one line, mode 0600) in
// a temporary directory and returns its path and the key.
func writeManifestKey(t *testing.T) (path, key string) {
	t.Helper()
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	key = hex.EncodeToString(raw)
	path = filepath.Join(t.TempDir(), "manifest_key")
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
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
  manifest_key_file: %s
  s3:
    endpoint: %s
    bucket: backups
    prefix: e2e/
    path_style: true
    access_key_id: %s
    secret_access_key_file: %s
  retention: %s
`, c("db_slave"), c("db_master"), b.keyFile, endpoint, s3Access, filepath.Join(dir, "s3.secret"), retention)), 0o600)
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
	ID      string      `json:"id"`
	GTID    string      `json:"gtid"`
	DumpKey string      `json:"dump_key"`
	Note    string      `json:"note"`
	Tables  []tableJSON `json:"tables"`
}

// tableJSON is a table of a manifest (version 2: database and table apart).
type tableJSON struct {
	Database string `json:"database"`
	Table    string `json:"table"`
	Rows     int64  `json:"rows"`
}

// table returns the manifest's entry of database.table.
func (m manifestJSON) table(database, table string) (tableJSON, bool) {
	for _, t := range m.Tables {
		if t.Database == database && t.Table == table {
			return t, true
		}
	}
	return tableJSON{}, false
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
	if probe, _ := good.table("app", "restore_probe"); probe.Rows != 3 {
		t.Fatalf("backup %s: restore_probe has %d rows in the manifest, want 3", good.ID, probe.Rows)
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
	// Semi-sync waits until the replica has received a write, not applied it: the page's read
	// can come an instant before (seen once: replica_in_sync false, yet its newest visit was
	// the one just written), so a page gets a second.
	var page pageResult
	if err := eventually(time.Second, 100*time.Millisecond, func() error {
		page = fetchPage(t)
		if page.ReadFrom != "replica" || page.LatestVisit < page.VisitID || page.ReplicaInSync == nil || !*page.ReplicaInSync {
			return fmt.Errorf("the page did not read its visit %d from the replica in sync (primary at %s, replica at %s)",
				page.VisitID, page.PrimaryGTID, page.ReplicaGTID)
		}
		return nil
	}); err != nil {
		t.Fatalf("the page after the restore: %v: %+v", err, page)
	}
	// The safety backup holds the damaged state, with a note.
	var safety *manifestJSON
	for _, e := range b.list(t, ctx) {
		if e.Manifest != nil && strings.Contains(e.Manifest.Note, "safety backup before restoring "+good.ID) {
			safety = e.Manifest
		}
	}
	if safety == nil {
		t.Fatal("no safety backup of the damaged state")
	}
	if after, ok := safety.table("app", "after_backup"); !ok || after.Rows != 0 {
		t.Fatalf("the safety backup lacks the table created after the backup: %v", safety.Tables)
	}
	if _, ok := safety.table("app", "restore_probe"); ok {
		t.Fatalf("the safety backup has the table dropped before it: %v", safety.Tables)
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

	t.Run("a forged backup without a valid signature is refused before anything is touched", func(t *testing.T) {
		testForgedBackupRefused(t, ctx, b)
	})
	t.Run("a signed dump with a shell command does not run it", func(t *testing.T) {
		testShellCommandInDumpNotRun(t, ctx, b)
	})
	t.Run("a backup of a database with a dot restores it without touching the database before the dot", func(t *testing.T) {
		testDottedDatabase(t, ctx, b)
	})
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
	keyFile, _ := writeManifestKey(t)
	cfg := filepath.Join(dir, "agent.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`source: {url: /nonexistent}
backup:
  replica: %s
  primary: %s
  manifest_key_file: %s
  s3: {endpoint: "http://127.0.0.1:%s", bucket: backups, path_style: true, access_key_id: hastack, secret_access_key_file: %s}
`, c("db_slave"), c("db_master"), keyFile, objectPort, secret)), 0o600)
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

// forgery is a backup made outside the agent, as whoever can write to the bucket makes one: a
// dump and a manifest that describes it exactly (sizes, SHA-256, tables), so that it passes every
// check of the object; only a signature tells it from a backup the agent took.
type forgery struct {
	id     string
	sql    string
	tables []tableJSON
}

// forge writes f's dump (compressed with the zstd tool) and manifest to the store, and sig as
// its signature unless sig is nil; sig gets the manifest's bytes. It returns the manifest.
func (b backupSetup) forge(t *testing.T, ctx context.Context, f forgery, sig func(manifest []byte) []byte) []byte {
	t.Helper()
	zstd := exec.CommandContext(ctx, "zstd", "-q", "-c")
	zstd.Stdin = strings.NewReader(f.sql)
	obj, err := zstd.Output()
	if err != nil {
		t.Fatalf("zstd (install zstd): %v", err)
	}
	started, err := time.Parse("20060102T150405Z", f.id)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(obj)
	manifest, err := json.MarshalIndent(map[string]any{
		"version": 2, "id": f.id, "started": started, "finished": started.Add(time.Second),
		"source": map[string]string{"container": c("db_slave"), "role": "replica", "server_version": "11.8.9-MariaDB"},
		"gtid":   "", "dump_key": f.id + "/dump.sql.zst", "encrypted": false,
		"raw_bytes": len(f.sql), "stored_bytes": len(obj), "sha256": hex.EncodeToString(sum[:]),
		"tables": f.tables, "tools": map[string]string{"agent": "forged", "mariadb-dump": "forged"},
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	store, err := s3store.New(ctx, s3store.Options{Endpoint: b.endpoint, Region: "us-east-1", Bucket: "backups", Prefix: "e2e/",
		PathStyle: true, AccessKeyID: s3Access, SecretAccessKey: s3Secret})
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, data []byte) {
		t.Helper()
		if err := store.Put(ctx, key, data, "application/octet-stream"); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	put(f.id+"/dump.sql.zst", obj)
	if sig != nil {
		put(f.id+"/manifest.json.sig", sig(manifest))
	}
	put(f.id+"/manifest.json", manifest)
	return manifest
}

// signManifest signs manifest bytes as docs/backup.md describes: HMAC-SHA256 under the key
// file's line, over "hastack backup manifest\x00" and the manifest's bytes, with the key's id
// (the first 8 bytes of HMAC-SHA256 of "hastack backup manifest key id" under the key).
func signManifest(key string, manifest []byte) []byte {
	mac := func(parts ...[]byte) []byte {
		h := hmac.New(sha256.New, []byte(key))
		for _, p := range parts {
			h.Write(p)
		}
		return h.Sum(nil)
	}
	id := mac([]byte("hastack backup manifest key id"))[:8]
	return fmt.Appendf(nil, "hmac-sha256 %x %x\n", id, mac([]byte("hastack backup manifest\x00"), manifest))
}

// authOf returns the signature status `agent backups --json` gives a backup.
func (b backupSetup) authOf(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, buildAgent(t), "backups", "--config", b.config, "--json").Output()
	var list []struct {
		ID   string `json:"id"`
		Auth struct {
			Status string `json:"status"`
		} `json:"auth"`
	}
	if err != nil || json.Unmarshal(out, &list) != nil {
		t.Fatalf("agent backups: %v\n%s", err, out)
	}
	for _, e := range list {
		if e.ID == id {
			return e.Auth.Status
		}
	}
	t.Fatalf("agent backups does not list %s", id)
	return ""
}

const forgedDump = "CREATE DATABASE IF NOT EXISTS `forged`;\nUSE `forged`;\nCREATE TABLE `t` (`i` int);\nINSERT INTO `t` VALUES (1);\n" +
	"-- Dump completed on 2020-01-01  0:00:01\n"

// testForgedBackupRefused: a backup forged in the bucket, unsigned or with a wrong signature, is
// refused by restore and drill before anything is read or touched; --allow-unsigned accepts a
// missing signature only for a backup named by its ID, and never a wrong one.
func testForgedBackupRefused(t *testing.T, ctx context.Context, b backupSetup) {
	tables := []tableJSON{{Database: "forged", Table: "t", Rows: 1}}
	unsigned := forgery{id: "20200101T000001Z", sql: forgedDump, tables: tables}
	b.forge(t, ctx, unsigned, nil)
	wrong := forgery{id: "20200101T000002Z", sql: forgedDump, tables: tables}
	b.forge(t, ctx, wrong, func(m []byte) []byte { return signManifest(b.key, append(m, ' ')) })
	if got := b.authOf(t, ctx, unsigned.id); got != "unsigned" {
		t.Errorf("agent backups: %s is %q, want unsigned", unsigned.id, got)
	}
	if got := b.authOf(t, ctx, wrong.id); got != "bad" {
		t.Errorf("agent backups: %s is %q, want bad", wrong.id, got)
	}

	before := st.rootSQL(t, ctx, "db_master", "CHECKSUM TABLE app.visits")
	nBackups := len(b.list(t, ctx))
	scratchBefore := scratchContainers(t)
	for _, tc := range []struct {
		name string
		args []string
		exit int
		want string
	}{
		{"restore, unsigned", []string{"restore", "--yes", unsigned.id}, 1, "not signed"},
		{"drill, unsigned", []string{"drill", unsigned.id}, 1, "not signed"},
		{"restore, wrong signature", []string{"restore", "--yes", wrong.id}, 1, "signature is wrong"},
		{"restore, wrong signature, --allow-unsigned", []string{"restore", "--yes", "--allow-unsigned", wrong.id}, 1, "signature is wrong"},
		{"drill, wrong signature, --allow-unsigned", []string{"drill", "--allow-unsigned", wrong.id}, 1, "signature is wrong"},
		{"restore latest --allow-unsigned", []string{"restore", "--yes", "--allow-unsigned", "latest"}, 2, "needs the ID"},
	} {
		out, err := b.agent(t, ctx, tc.args...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != tc.exit || !strings.Contains(out, tc.want) {
			t.Errorf("%s: %v, want exit %d saying %q\n%s", tc.name, err, tc.exit, tc.want, out)
		}
		t.Logf("%s: %s", tc.name, lastLine(out))
	}
	if n := st.rootSQL(t, ctx, "db_master", "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'forged'"); n != "0" {
		t.Fatal("a forged backup reached the database")
	}
	if got := st.rootSQL(t, ctx, "db_master", "CHECKSUM TABLE app.visits"); got != before {
		t.Fatal("a refused restore changed the database")
	}
	if n := len(b.list(t, ctx)); n != nBackups {
		t.Fatalf("a refused restore took a safety backup (%d backups, was %d)", n, nBackups)
	}
	// Only containers made since: the restore --target new of the test above is still there.
	for _, id := range scratchContainers(t) {
		if !slices.Contains(scratchBefore, id) {
			t.Fatalf("a refused drill started a container: %s", id)
		}
	}
}

// scratchContainers lists the ids of the agent's scratch containers (drills, --target new).
func scratchContainers(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=io.hastack.scratch").Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	return strings.Fields(string(out))
}

// testShellCommandInDumpNotRun: a dump without mariadb-dump's sandbox line and with a client
// shell command (\!), signed with the right key (as a stolen key, or a compromised dump tool,
// would sign it), is loaded in sandbox mode: the statements before the command run, the command
// does not, and the restore fails at it.
func testShellCommandInDumpNotRun(t *testing.T, ctx context.Context, b backupSetup) {
	const pwned = "/tmp/pwned"
	exec.CommandContext(ctx, "docker", "exec", c("db_master"), "rm", "-f", pwned).Run()
	defer st.rootSQL(t, ctx, "db_master", "DROP DATABASE IF EXISTS `pwn`")
	f := forgery{id: "20200101T000003Z",
		sql: "CREATE DATABASE IF NOT EXISTS `pwn`;\nUSE `pwn`;\nCREATE TABLE `t` (`i` int);\nINSERT INTO `t` VALUES (1);\n" +
			"\\! touch " + pwned + "\n-- Dump completed on 2020-01-01  0:00:03\n",
		tables: []tableJSON{{Database: "pwn", Table: "t", Rows: 1}}}
	b.forge(t, ctx, f, func(m []byte) []byte { return signManifest(b.key, m) })
	if got := b.authOf(t, ctx, f.id); got != "verified" {
		t.Fatalf("the test's signature does not verify (%s): the signing scheme in docs/backup.md and the agent differ", got)
	}
	out, err := b.agent(t, ctx, "restore", "--yes", "--no-safety-backup", f.id)
	t.Log(lastLines(out, 2))
	if exec.CommandContext(ctx, "docker", "exec", c("db_master"), "test", "-e", pwned).Run() == nil {
		t.Fatalf("the dump's shell command ran in %s: %s exists", c("db_master"), pwned)
	}
	if err == nil || !strings.Contains(out, "restore failed at load") {
		t.Fatalf("restore of a dump with a shell command: %v, want a failure at the load\n%s", err, out)
	}
	// The load ran up to the command: it was the client that refused it.
	if n := st.rootSQL(t, ctx, "db_master", "SELECT COUNT(*) FROM pwn.t"); n != "1" {
		t.Fatalf("pwn.t holds %s rows: the load did not reach the shell command", n)
	}
	if !strings.Contains(out, "sandbox") {
		t.Errorf("the failure does not say that the sandbox refused the command:\n%s", out)
	}
}

// testDottedDatabase: a backup of database shop.archive lists it as such in its manifest and
// restores it, dropping only shop.archive: a database shop made after the backup is untouched.
func testDottedDatabase(t *testing.T, ctx context.Context, b backupSetup) {
	defer st.rootSQL(t, ctx, "db_master", "DROP DATABASE IF EXISTS `shop.archive`; DROP DATABASE IF EXISTS `shop`")
	st.rootSQL(t, ctx, "db_master", "CREATE DATABASE `shop.archive`; CREATE TABLE `shop.archive`.`t` (i INT PRIMARY KEY); "+
		"INSERT INTO `shop.archive`.`t` VALUES (1), (2)")
	waitReplicaCaughtUp(t, ctx)
	m := b.backup(t, ctx)
	if archive, ok := m.table("shop.archive", "t"); !ok || archive.Rows != 2 {
		t.Fatalf("manifest of %s: shop.archive.t is %+v (%t): %v", m.ID, archive, ok, m.Tables)
	}
	for _, table := range m.Tables {
		if table.Database == "shop" {
			t.Fatalf("manifest of %s names a database shop: %+v", m.ID, table)
		}
	}
	st.rootSQL(t, ctx, "db_master", "CREATE DATABASE `shop`; CREATE TABLE `shop`.`marker` (i INT PRIMARY KEY); INSERT INTO `shop`.`marker` VALUES (7); "+
		"INSERT INTO `shop.archive`.`t` VALUES (3)")
	if out, err := b.agent(t, ctx, "restore", "--yes", "--no-safety-backup", m.ID); err != nil {
		t.Fatalf("agent restore: %v\n%s", err, out)
	}
	waitReplicaCaughtUp(t, ctx)
	for _, svc := range []string{"db_master", "db_slave"} {
		if got := st.rootSQL(t, ctx, svc, "SELECT i FROM `shop`.`marker`"); got != "7" {
			t.Errorf("%s: shop.marker holds %q after restoring shop.archive: the restore touched shop", svc, got)
		}
		if got := st.rootSQL(t, ctx, svc, "SELECT COUNT(*) FROM `shop.archive`.`t`"); got != "2" {
			t.Errorf("%s: shop.archive.t holds %s rows after the restore, want the backup's 2", svc, got)
		}
	}
}
