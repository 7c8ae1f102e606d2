package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

type cannedDump struct {
	out     io.Reader
	waitErr error
	stopped bool
}

func (d *cannedDump) Output() io.Reader              { return d.out }
func (d *cannedDump) Stop()                          { d.stopped = true }
func (d *cannedDump) Wait(ctx context.Context) error { return d.waitErr }

type fakeDB struct {
	replicaReady bool
	dump         string
	waitErr      error
	ranIn        string
	cmd          []string
}

func (f *fakeDB) Ready(ctx context.Context, c string) (bool, error) { return f.replicaReady, nil }
func (f *fakeDB) StartDump(ctx context.Context, c string, cmd []string) (Dump, error) {
	f.ranIn, f.cmd = c, cmd
	return &cannedDump{out: strings.NewReader(f.dump), waitErr: f.waitErr}, nil
}

type memStore struct {
	memUploader
	objects map[string][]byte
}

func (m *memStore) Put(ctx context.Context, key string, data []byte, ct string) error {
	if m.objects == nil {
		m.objects = map[string][]byte{}
	}
	m.objects[key] = data
	return nil
}

const realHeader = "/*M!999999\\- enable the sandbox mode */ \n" +
	"-- MariaDB dump 10.19-11.8.9-MariaDB, for debian-linux-gnu (x86_64)\n--\n" +
	"-- Host: localhost    Database: \n" +
	"-- ------------------------------------------------------\n" +
	"-- Server version\t11.8.9-MariaDB-0+deb13u1-log\n\n" +
	"--\n-- Position to start replication or point-in-time recovery from (the master of this slave)\n--\n\n" +
	"-- CHANGE MASTER '' TO MASTER_USE_GTID=slave_pos;\n"

// realTrailer: with --dump-slave, MariaDB 11 writes the GTID position at the end.
const realTrailer = "\n-- SET GLOBAL gtid_slave_pos='0-1-42';\n-- Dump completed on 2026-11-25 18:34:27\n"

func TestRunOnReplica(t *testing.T) {
	db := &fakeDB{replicaReady: true, dump: realHeader + sampleDump + realTrailer}
	st := &memStore{}
	m, err := Run(context.Background(), Options{Replica: "db_slave", Primary: "db_master", PasswordFile: "/run/secrets/root_password", AgentVersion: "test"}, db, st)
	if err != nil {
		t.Fatal(err)
	}
	if db.ranIn != "db_slave" || !strings.Contains(strings.Join(db.cmd, " "), "--dump-slave=2") {
		t.Fatalf("dump ran in %s: %v", db.ranIn, db.cmd)
	}
	if m.Source.Role != RoleReplica || m.GTID != "0-1-42" || m.Source.ServerVersion != "11.8.9-MariaDB-0+deb13u1-log" || m.Tools[ToolMariaDBDump] != "10.19-11.8.9-MariaDB" {
		t.Fatalf("manifest %+v", m)
	}
	if m.Tables[tn("app.visits")].Rows != 6 {
		t.Fatalf("tables %v", m.Tables)
	}
	b, ok := st.objects[ManifestKey(m.ID)]
	if !ok {
		t.Fatal("no manifest written")
	}
	if back, err := DecodeManifest(b); err != nil || back.SHA256 != m.SHA256 {
		t.Fatalf("manifest round trip: %v", err)
	}
	zr, _ := zstd.NewReader(bytes.NewReader(st.data.Bytes()))
	if got, _ := io.ReadAll(zr); string(got) != realHeader+sampleDump+realTrailer {
		t.Fatal("stored dump differs")
	}
}

func TestRunFallsBackToPrimary(t *testing.T) {
	db := &fakeDB{replicaReady: false, dump: realHeader + sampleDump + realTrailer}
	m, err := Run(context.Background(), Options{Replica: "db_slave", Primary: "db_master", PasswordFile: "/p"}, db, &memStore{})
	if err != nil {
		t.Fatal(err)
	}
	if db.ranIn != "db_master" || m.Source.Role != RolePrimary || !strings.Contains(strings.Join(db.cmd, " "), "--master-data=2") {
		t.Fatalf("ran in %s as %s: %v", db.ranIn, m.Source.Role, db.cmd)
	}
}

func TestRunFailedDumpWritesNoManifest(t *testing.T) {
	db := &fakeDB{replicaReady: true, dump: realHeader + sampleDump, waitErr: errors.New("exit status 2: Got error: 1045: Access denied")}
	st := &memStore{}
	if _, err := Run(context.Background(), Options{Replica: "r", Primary: "p", PasswordFile: "/p"}, db, st); err == nil || !strings.Contains(err.Error(), "Access denied") {
		t.Fatalf("err = %v", err)
	}
	if len(st.objects) != 0 {
		t.Fatalf("a failed backup wrote %v", st.objects)
	}
}

func TestRunRefusesADumpCutShort(t *testing.T) {
	db := &fakeDB{replicaReady: true, dump: realHeader + sampleDump} // exit 0, no closing line
	st := &memStore{}
	if _, err := Run(context.Background(), Options{Replica: "r", Primary: "p", PasswordFile: "/p"}, db, st); err == nil || !strings.Contains(err.Error(), "Dump completed") {
		t.Fatalf("err = %v", err)
	}
	if len(st.objects) != 0 {
		t.Fatalf("a dump cut short wrote %v", st.objects)
	}
}

// endlessDump writes dump lines until its reader is closed, like mariadb-dump in an exec whose
// output nobody reads: Wait returns only once the writer stopped.
type endlessDump struct {
	pr   *io.PipeReader
	done chan struct{}
}

func newEndlessDump() *endlessDump {
	pr, pw := io.Pipe()
	d := &endlessDump{pr: pr, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		// Rows that do not compress to nothing: the upload's first 4 KiB come after a few
		// blocks, not after gigabytes (which take longer than the test's deadline under -race).
		r := rand.New(rand.NewPCG(3, 4))
		for i := 0; ; i++ {
			line := fmt.Sprintf("INSERT INTO `t` VALUES (%d,'%016x%016x');\n", i, r.Uint64(), r.Uint64())
			if _, err := io.WriteString(pw, line); err != nil {
				return
			}
		}
	}()
	return d
}

func (d *endlessDump) Output() io.Reader { return d.pr }
func (d *endlessDump) Stop()             { d.pr.Close() }
func (d *endlessDump) Wait(ctx context.Context) error {
	select {
	case <-d.done:
		return errors.New("exit status 2: Got errno 32 on write")
	case <-ctx.Done():
		return ctx.Err()
	}
}

type endlessDB struct{ dump *endlessDump }

func (e endlessDB) Ready(ctx context.Context, c string) (bool, error) { return true, nil }
func (e endlessDB) StartDump(ctx context.Context, c string, cmd []string) (Dump, error) {
	return e.dump, nil
}

func TestRunStopsTheDumpWhenTheUploadFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := &memStore{memUploader: memUploader{failAfter: 4 << 10}}
	_, err := Run(ctx, Options{Replica: "r", Primary: "p", PasswordFile: "/p"}, endlessDB{newEndlessDump()}, st)
	if err == nil || !strings.Contains(err.Error(), "connection reset") || ctx.Err() != nil {
		t.Fatalf("err = %v (ctx %v): the upload's failure must end the backup, and say why", err, ctx.Err())
	}
	if len(st.objects) != 0 {
		t.Fatalf("a failed backup wrote %v", st.objects)
	}
}

func TestRunNeverReusesABackupID(t *testing.T) {
	var asked []string
	first := ""
	taken := func(ctx context.Context, id string) (bool, error) {
		asked = append(asked, id)
		if first == "" {
			first = id
		}
		return id == first, nil // the current second's id is taken
	}
	m, err := Run(context.Background(), Options{Replica: "r", Primary: "p", PasswordFile: "/p", Taken: taken},
		&fakeDB{replicaReady: true, dump: realHeader + sampleDump + realTrailer}, &memStore{})
	if err != nil {
		t.Fatal(err)
	}
	if m.ID == first || len(asked) != 2 {
		t.Fatalf("backup %s, ids asked %v: a taken id must not be used", m.ID, asked)
	}
}

func TestRootCommand(t *testing.T) {
	run := func(cmd []string) string {
		t.Helper()
		out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
		return string(out)
	}
	if got := run(RootCommand("", "printf", "%s|", "a b", "it's", "$HOME")); got != "a b|it's|$HOME|" {
		t.Fatalf("arguments reached the program as %q", got)
	}
	pw := filepath.Join(t.TempDir(), "root's password")
	os.WriteFile(pw, []byte("s3cret"), 0o600)
	if got := run(RootCommand(pw, "sh", "-c", `printf %s "$MYSQL_PWD"`)); got != "s3cret" {
		t.Fatalf("MYSQL_PWD = %q", got)
	}
	if _, err := exec.Command("sh", RootCommand(pw+".missing", "true")[1:]...).CombinedOutput(); err == nil {
		t.Fatal("a missing password file must fail the command")
	}
}

func TestClientCommandIsSandboxed(t *testing.T) {
	// A mariadb on PATH that prints its arguments: what the container's client would be given.
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "mariadb"), []byte("#!/bin/sh\nprintf '%s\\n' \"$@\"\n"), 0o755)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"load", []string{"--batch", "--max-allowed-packet=1G"}},
		{"query", []string{"--batch", "-e", "SELECT 1"}},
		{"no arguments", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := ClientCommand("", tc.args...)
			out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v\n%s", cmd, err, out)
			}
			got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			want := append([]string{"--sandbox", "-uroot"}, tc.args...)
			if !slices.Equal(got, want) {
				t.Fatalf("the client was run with %q, want %q: every client a restore runs must be in sandbox mode", got, want)
			}
		})
	}
}
