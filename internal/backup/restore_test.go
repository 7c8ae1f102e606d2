package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// fakeServer is a MariaDB server for restore tests: it records what is loaded and answers the
// queries a restore makes from its fields.
type fakeServer struct {
	name     string
	loaded   string
	loadErr  error
	tables   map[TableName]int64 // what it holds after a load
	accounts []Account
	ioRun    string
	waited   string
}

func (f *fakeServer) Name() string { return f.name }

func (f *fakeServer) Load(ctx context.Context, sql io.Reader) error {
	b, err := io.ReadAll(sql)
	f.loaded = string(b)
	if err != nil {
		return err
	}
	return f.loadErr
}

var countQuery = regexp.MustCompile("SELECT ([0-9]+) AS i, COUNT\\(\\*\\) AS n FROM (`(?:[^`]|``)*`)\\.(`(?:[^`]|``)*`)")

func unquoteName(q string) string { return strings.ReplaceAll(q[1:len(q)-1], "``", "`") }

func (f *fakeServer) Query(ctx context.Context, q string) ([]map[string]string, error) {
	var rows []map[string]string
	switch {
	case strings.HasPrefix(q, "SELECT User, Host FROM mysql.user"):
		for _, a := range f.accounts {
			rows = append(rows, map[string]string{"User": a.User, "Host": a.Host})
		}
	case strings.HasPrefix(q, "SELECT table_schema, table_name"):
		for _, name := range slices.SortedFunc(maps.Keys(f.tables), TableName.Compare) {
			rows = append(rows, map[string]string{"table_schema": name.Database, "table_name": name.Table})
		}
	case countQuery.MatchString(q):
		for _, m := range countQuery.FindAllStringSubmatch(q, -1) {
			name := TableName{Database: unquoteName(m[2]), Table: unquoteName(m[3])}
			rows = append(rows, map[string]string{"i": m[1], "n": fmt.Sprint(f.tables[name])})
		}
	case strings.HasPrefix(q, "SELECT @@GLOBAL.gtid_binlog_pos"):
		rows = append(rows, map[string]string{"pos": "0-1-99"})
	case strings.HasPrefix(q, "SELECT MASTER_GTID_WAIT('0-1-99'"):
		rows = append(rows, map[string]string{"waited": f.waited})
	case q == "SHOW SLAVE STATUS":
		rows = append(rows, map[string]string{"Slave_IO_Running": f.ioRun, "Slave_SQL_Running": "Yes", "Gtid_IO_Pos": "0-1-98", "Last_IO_Error": "error connecting to master"})
	default:
		return nil, fmt.Errorf("fakeServer: unexpected query %q", q)
	}
	return rows, nil
}

func restoreFixture(t *testing.T) (RestoreOptions, *fakeServer, *fakeServer, *int) {
	t.Helper()
	dump := realHeader + sampleDump + "CREATE USER `root`@`localhost` IDENTIFIED BY PASSWORD '*OLD';\nCREATE USER `new`@`%`;\n" + realTrailer
	m, obj := takeBackup(t, dump)
	restored := map[TableName]int64{}
	for name, ti := range m.UserTables() {
		restored[name] = ti.Rows
	}
	primary := &fakeServer{name: "db_master", tables: restored, accounts: []Account{{"root", "localhost"}}}
	replica := &fakeServer{name: "db_slave", tables: restored, ioRun: "Yes", waited: "0"}
	safeties := 0
	return RestoreOptions{Backup: m, Auth: Authenticity{Status: AuthVerified}, Reader: obj, Target: primary, Replica: replica,
		Safety: func(ctx context.Context) (Manifest, error) { safeties++; return Manifest{ID: "20261125T000000Z"}, nil }}, primary, replica, &safeties
}

func TestRestore(t *testing.T) {
	o, primary, _, safeties := restoreFixture(t)
	var steps []string
	o.Progress = func(p RestoreProgress) {
		if len(steps) == 0 || steps[len(steps)-1] != p.Step {
			steps = append(steps, p.Step)
		}
	}
	rep, err := Restore(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(steps, ","); got != "verify,safety-backup,load,check,replica" {
		t.Fatalf("steps %s", got)
	}
	if *safeties != 1 || rep.SafetyBackup != "20261125T000000Z" || rep.ReplicaGTID != "0-1-99" || rep.Tables != len(o.Backup.UserTables()) {
		t.Fatalf("report %+v", rep)
	}
	if !strings.HasPrefix(primary.loaded, "DROP DATABASE IF EXISTS `app`;\nDROP DATABASE IF EXISTS `shop`;\n"+realHeader) {
		t.Fatalf("loaded %.200q", primary.loaded)
	}
	if strings.Contains(primary.loaded, "*OLD") || !strings.Contains(primary.loaded, "CREATE USER `new`@`%`;") {
		t.Fatalf("accounts: the target's own must be kept, the backup's others created:\n%s", primary.loaded)
	}
}

func TestRestoreTouchesNothingWhenTheBackupIsBad(t *testing.T) {
	o, primary, _, safeties := restoreFixture(t)
	o.Reader.(*memObject).data[10] ^= 1
	_, err := Restore(context.Background(), o)
	var re *RestoreError
	if !errors.As(err, &re) || re.Step != "verify" || re.Changed || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v", err)
	}
	if primary.loaded != "" || *safeties != 0 {
		t.Fatal("a corrupt backup reached the database or took a safety backup")
	}
	if !strings.Contains(err.Error(), "not touched") {
		t.Fatalf("the message must say the database is as it was: %v", err)
	}
}

func TestRestoreStopsWhenTheSafetyBackupFails(t *testing.T) {
	o, primary, _, _ := restoreFixture(t)
	o.Safety = func(ctx context.Context) (Manifest, error) {
		return Manifest{}, errors.New("s3: put: store unreachable")
	}
	_, err := Restore(context.Background(), o)
	if err == nil || primary.loaded != "" || !strings.Contains(err.Error(), "--no-safety-backup") {
		t.Fatalf("err = %v, loaded %d bytes", err, len(primary.loaded))
	}
}

func TestRestoreReportsAPartialLoad(t *testing.T) {
	o, primary, _, _ := restoreFixture(t)
	primary.loadErr = errors.New("exit status 1: ERROR 1114 (HY000) at line 30: The table 'visits' is full")
	_, err := Restore(context.Background(), o)
	var re *RestoreError
	if !errors.As(err, &re) || re.Step != "load" || !re.Changed || !strings.Contains(err.Error(), "20261125T000000Z") || !strings.Contains(err.Error(), "is full") {
		t.Fatalf("err = %v", err)
	}
}

func TestRestoreChecksRowsAndReplica(t *testing.T) {
	t.Run("rows differ", func(t *testing.T) {
		o, primary, _, _ := restoreFixture(t)
		primary.tables = map[TableName]int64{tn("app.visits"): 1}
		if _, err := Restore(context.Background(), o); err == nil || !strings.Contains(err.Error(), "app.visits: rows") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("replica stopped", func(t *testing.T) {
		o, _, replica, _ := restoreFixture(t)
		replica.ioRun = "No"
		if _, err := Restore(context.Background(), o); err == nil || !strings.Contains(err.Error(), "error connecting to master") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("replica behind", func(t *testing.T) {
		o, _, replica, _ := restoreFixture(t)
		replica.waited = "-1"
		if _, err := Restore(context.Background(), o); err == nil || !strings.Contains(err.Error(), "did not reach") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestDrill(t *testing.T) {
	o, _, _, _ := restoreFixture(t)
	scratch := &fakeServer{name: "hastack-drill-1", tables: o.Target.(*fakeServer).tables, accounts: []Account{{"root", "localhost"}}}
	rep, err := Drill(context.Background(), DrillOptions{Backup: o.Backup, Auth: o.Auth, Reader: o.Reader, Scratch: scratch})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Tables != len(o.Backup.UserTables()) || rep.Rows != 9 || !strings.Contains(scratch.loaded, "-- Dump completed") {
		t.Fatalf("report %+v", rep)
	}

	scratch.tables = map[TableName]int64{tn("app.visits"): 2}
	if _, err := Drill(context.Background(), DrillOptions{Backup: o.Backup, Auth: o.Auth, Reader: o.Reader, Scratch: scratch}); err == nil || !strings.Contains(err.Error(), "app.visits: rows: backup 6, restored 2") {
		t.Fatalf("rows differ: err = %v", err)
	}

	obj := o.Reader.(*memObject)
	obj.data[len(obj.data)-2] ^= 1
	if _, err := Drill(context.Background(), DrillOptions{Backup: o.Backup, Auth: o.Auth, Reader: o.Reader, Scratch: scratch}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt: err = %v", err)
	}
	// The scratch server's client gives up on the garbage before the checksum is reached (its
	// input pipe breaks): the drill still says the backup is corrupt.
	quitter := &quittingServer{fakeServer: scratch}
	if _, err := Drill(context.Background(), DrillOptions{Backup: o.Backup, Auth: o.Auth, Reader: o.Reader, Scratch: quitter}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "use of closed network connection") {
		t.Fatalf("corrupt, the client quit first: err = %v", err)
	}
	// A load that fails for its own reason on a sound backup keeps its own error. (A fixture of
	// its own: the drill above may still be decoding the corrupt object as it returns.)
	sound, _, _, _ := restoreFixture(t)
	if _, err := Drill(context.Background(), DrillOptions{Backup: sound.Backup, Auth: sound.Auth, Reader: sound.Reader, Scratch: quitter}); err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "use of closed network connection") {
		t.Fatalf("sound backup, the client quit: err = %v", err)
	}
}

// quittingServer reads the first bytes of a load and fails, as a client that stopped on a
// syntax error does.
type quittingServer struct{ *fakeServer }

func (q *quittingServer) Load(ctx context.Context, sql io.Reader) error {
	io.CopyN(io.Discard, sql, 10)
	return errors.New("send input: write unix @->/var/run/docker.sock: use of closed network connection")
}

// Nothing is touched, not even by a safety backup, for a backup whose manifest is not
// authenticated; AllowUnsigned accepts a missing signature, never a wrong one.
func TestRestoreRefusesAnUnauthenticatedBackup(t *testing.T) {
	for _, tc := range []struct {
		name          string
		auth          Authenticity
		allowUnsigned bool
		refused       bool
	}{
		{"unsigned", Authenticity{Status: AuthUnsigned}, false, true},
		{"never checked", Authenticity{}, false, true},
		{"wrong signature", Authenticity{Status: AuthBad, Problem: "the MAC does not match the manifest"}, false, true},
		{"wrong signature, allow unsigned", Authenticity{Status: AuthBad, Problem: "the MAC does not match the manifest"}, true, true},
		{"no key to check it", Authenticity{Status: AuthNoKey, KeyID: "0123456789abcdef"}, false, true},
		{"unsigned, allow unsigned", Authenticity{Status: AuthUnsigned}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, primary, _, safeties := restoreFixture(t)
			o.Auth, o.AllowUnsigned = tc.auth, tc.allowUnsigned
			_, err := Restore(context.Background(), o)
			if !tc.refused {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var re *RestoreError
			if !errors.As(err, &re) || re.Step != "authenticate" || re.Changed || !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("err = %v, want a refusal at authenticate", err)
			}
			if primary.loaded != "" || *safeties != 0 || o.Reader.(*memObject).opens != 0 {
				t.Fatalf("an unauthenticated backup was read (%d opens), loaded or took a safety backup", o.Reader.(*memObject).opens)
			}

			scratch := &fakeServer{name: "hastack-drill-1", accounts: []Account{{"root", "localhost"}}}
			_, err = Drill(context.Background(), DrillOptions{Backup: o.Backup, Auth: tc.auth, AllowUnsigned: tc.allowUnsigned, Reader: o.Reader, Scratch: scratch})
			if !errors.Is(err, ErrUnauthenticated) || scratch.loaded != "" {
				t.Fatalf("drill: err = %v, loaded %d bytes", err, len(scratch.loaded))
			}
		})
	}
}

// A database whose name has a dot is dropped by its whole name, and only it: a backup of
// shop.archive never drops shop.
func TestRestoreDropsDatabasesByTheirWholeName(t *testing.T) {
	dump := realHeader + "USE `shop.archive`;\nCREATE TABLE `t` (`i` int);\nINSERT INTO `t` VALUES (1),(2);\n" +
		"USE `we``ird`;\nCREATE TABLE `x.y` (`i` int);\n" + realTrailer
	m, obj := takeBackup(t, dump)
	want := map[TableName]TableInfo{{"shop.archive", "t"}: {Rows: 2}, {"we`ird", "x.y"}: {Rows: 0}}
	if !maps.Equal(m.Tables, want) {
		t.Fatalf("manifest tables %v, want %v", m.Tables, want)
	}
	target := &fakeServer{name: "db_master", tables: map[TableName]int64{{"shop.archive", "t"}: 2, {"we`ird", "x.y"}: 0}}
	if _, err := Restore(context.Background(), RestoreOptions{Backup: m, Auth: Authenticity{Status: AuthVerified}, Reader: obj, Target: target}); err != nil {
		t.Fatal(err)
	}
	if prelude := "DROP DATABASE IF EXISTS `shop.archive`;\nDROP DATABASE IF EXISTS `we``ird`;\n" + realHeader; !strings.HasPrefix(target.loaded, prelude) {
		t.Fatalf("loaded %.120q, want it to start with %q", target.loaded, prelude)
	}
}

// A version 1 manifest whose names are ambiguous is refused before anything is read.
func TestRestoreRefusesAnAmbiguousVersion1Manifest(t *testing.T) {
	o, primary, _, safeties := restoreFixture(t)
	o.Backup.Version = manifestV1
	o.Backup.AmbiguousTables = []string{"shop.archive.t"}
	_, err := Restore(context.Background(), o)
	if !errors.Is(err, ErrAmbiguous) || primary.loaded != "" || *safeties != 0 || o.Reader.(*memObject).opens != 0 {
		t.Fatalf("err = %v; loaded %d bytes, %d safety backups, %d opens", err, len(primary.loaded), *safeties, o.Reader.(*memObject).opens)
	}
	scratch := &fakeServer{name: "hastack-drill-1"}
	if _, err := Drill(context.Background(), DrillOptions{Backup: o.Backup, Auth: o.Auth, Reader: o.Reader, Scratch: scratch}); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("drill: err = %v", err)
	}
}

// A point-in-time restore replays after the load and its check; the replica is then compared
// with the target (the replay changed the rows the manifest has), and a failed replay says the
// database is partly restored.
func TestRestoreReplays(t *testing.T) {
	o, primary, replica, _ := restoreFixture(t)
	var steps []string
	o.Progress = func(p RestoreProgress) {
		if len(steps) == 0 || steps[len(steps)-1] != p.Step {
			steps = append(steps, p.Step)
		}
	}
	o.Replay = func(ctx context.Context) (string, error) {
		if primary.loaded == "" {
			t.Error("replayed before the load")
		}
		primary.tables[tn("app.visits")] += 5
		replica.tables = maps.Clone(primary.tables)
		return "5 transactions", nil
	}
	replica.tables = nil
	rep, err := Restore(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(steps, ","); got != "verify,safety-backup,load,check,replay,replica" {
		t.Fatalf("steps %s", got)
	}
	if rep.Replayed != "5 transactions" {
		t.Fatalf("report %+v", rep)
	}

	o, primary, replica, _ = restoreFixture(t)
	replica.tables = maps.Clone(primary.tables)
	o.Replay = func(ctx context.Context) (string, error) {
		primary.tables[tn("app.visits")] += 5 // the replica does not get them
		return "5 transactions", nil
	}
	if _, err := Restore(context.Background(), o); err == nil || !strings.Contains(err.Error(), "differs from db_master") {
		t.Fatalf("a replica without the replayed rows: err = %v", err)
	}

	o, _, _, _ = restoreFixture(t)
	o.Replay = func(ctx context.Context) (string, error) {
		return "", errors.New("segment binlog/0/x: sha256 mismatch")
	}
	_, err = Restore(context.Background(), o)
	var re *RestoreError
	if !errors.As(err, &re) || re.Step != "replay" || !re.Changed || !strings.Contains(err.Error(), "safety backup") {
		t.Fatalf("err = %v", err)
	}
}
