//go:build e2e

package backup

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The row counter against a real mariadb-dump of a real MariaDB 11.8 (the stack's image):
// tricky values, several extended INSERT lines per table, several databases.
func TestRowCounterOnRealDump(t *testing.T) {
	if out, err := exec.Command("docker", "build", "-q", "-t", "hastack/mariadb", "../../stack/mariadb").CombinedOutput(); err != nil {
		t.Fatalf("build hastack/mariadb (run scripts/bootstrap first): %v\n%s", err, out)
	}
	name := fmt.Sprintf("backup-rowcount-%d", time.Now().UnixNano())
	if out, err := exec.Command("docker", "run", "-d", "--name", name, "--entrypoint", "sh", "hastack/mariadb", "-c",
		"mariadb-install-db --auth-root-authentication-method=normal >/dev/null && exec mariadbd --skip-networking").CombinedOutput(); err != nil {
		t.Fatalf("start mariadb: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	sql := func(q string) string {
		t.Helper()
		out, err := exec.Command("docker", "exec", name, "mariadb", "-N", "-B", "-e", q).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", q, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	deadline := time.Now().Add(time.Minute)
	for exec.Command("docker", "exec", name, "mariadb-admin", "ping").Run() != nil {
		if time.Now().After(deadline) {
			t.Fatal("mariadb did not start")
		}
		time.Sleep(500 * time.Millisecond)
	}
	sql("CREATE DATABASE app; CREATE DATABASE `we``ird`;" +
		"CREATE TABLE app.visits (id INT PRIMARY KEY AUTO_INCREMENT, s TEXT, b BLOB);" +
		"CREATE TABLE app.empty (x INT); CREATE TABLE `we``ird`.`t(1)` (v VARCHAR(100));" +
		"CREATE VIEW app.v AS SELECT id FROM app.visits;" +
		"INSERT INTO `we``ird`.`t(1)` VALUES ('it''s'), ('(a),(b)'), ('back\\\\slash'), ('new\\nline'), ('🙂');" +
		"USE app; INSERT INTO app.visits (s, b) SELECT CONCAT('row ', seq, ' )(''\"\\\\'), UNHEX(REPEAT('28292C27', 50)) FROM seq_1_to_5000;")
	var dump bytes.Buffer
	cmd := exec.Command("docker", "exec", name, "mariadb-dump", "--all-databases", "--single-transaction",
		"--hex-blob", "--routines", "--events", "--triggers", "--net-buffer-length=16384")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &dump, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mariadb-dump: %v %s", err, stderr.String())
	}
	c := NewRowCounter()
	c.Write(dump.Bytes())
	got := c.Tables()
	if n := strings.Count(dump.String(), "INSERT INTO `visits`"); n < 2 {
		t.Fatalf("%d INSERT lines for visits: want several (net-buffer-length)", n)
	}
	for table, q := range map[TableName]string{
		{"app", "visits"}: "SELECT COUNT(*) FROM app.visits", {"app", "empty"}: "SELECT COUNT(*) FROM app.empty",
		{"we`ird", "t(1)"}: "SELECT COUNT(*) FROM `we``ird`.`t(1)`",
	} {
		want, _ := strconv.ParseInt(sql(q), 10, 64)
		if got[table] != want {
			t.Errorf("%s: counted %d rows in the dump, the server has %d", table, got[table], want)
		}
	}
	t.Logf("%d bytes of dump, tables %v", dump.Len(), got)
}
