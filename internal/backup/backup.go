// Package backup backs the stack's MariaDB up to S3 and brings it back: a dump taken inside the
// database container (by default the replica), streamed through zstd (and age) into a multipart
// upload, described by a manifest written last (a backup without a manifest does not exist),
// pruned by a grandfather-father-son policy.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"filippo.io/age"
)

// Dump is a running dump command whose output streams from Output.
type Dump interface {
	Output() io.Reader
	// Stop ends the dump early: its output is closed, so the command fails on its next write
	// instead of waiting for a reader that is gone.
	Stop()
	Wait(ctx context.Context) error
}

// Database runs the dump inside a database container.
type Database interface {
	// Ready reports whether the container runs and is healthy.
	Ready(ctx context.Context, container string) (bool, error)
	// StartDump runs cmd in the container and streams its output.
	StartDump(ctx context.Context, container string, cmd []string) (Dump, error)
}

// Store is where backups go.
type Store interface {
	Uploader
	Put(ctx context.Context, key string, data []byte, contentType string) error
}

// Options of one backup.
type Options struct {
	Replica, Primary string // container names; the replica is preferred when it is healthy
	// PasswordFile is the root password's file inside the containers.
	PasswordFile string
	Recipients   []age.Recipient // encrypt to these when set
	// Keys sign the manifest (with the first key) when set; see ManifestKeys.
	Keys         *ManifestKeys
	AgentVersion string
	StackCommit  string
	Note         string // recorded in the manifest: why this backup was taken
	// Taken reports whether the store already holds objects of a backup id (ids have a
	// second's resolution: two backups in one second, such as a backup and the safety backup
	// of a restore, must not share one). nil: not checked.
	Taken func(ctx context.Context, id string) (bool, error)
}

// dumpArgs are mariadb-dump's flags for both roles: a consistent InnoDB snapshot without
// locking, everything a restore needs (routines, events, triggers, users), binary-safe.
var dumpArgs = []string{
	"--single-transaction", "--gtid", "--routines", "--events", "--triggers", "--hex-blob",
	"--default-character-set=utf8mb4", "--all-databases", "--quick", "--max-allowed-packet=1G",
	// The server's own tables (mysql.*, with the replication state in mysql.gtid_slave_pos) are
	// never restored as tables: accounts and the like come as statements instead.
	"--ignore-database=mysql", "--system=users,plugins,udfs,servers",
}

// Run takes one backup: dump, stream, then the manifest. The manifest is written only after
// the dump finished without error and the upload completed, so a failed backup leaves no
// manifest (and, with an S3 store that aborts failed uploads, no object).
func Run(ctx context.Context, o Options, db Database, store Store) (Manifest, error) {
	started, err := freeID(ctx, o.Taken)
	if err != nil {
		return Manifest{}, err
	}
	m := Manifest{Version: ManifestVersion, ID: NewID(started), Started: started, Encrypted: len(o.Recipients) > 0,
		Tools: map[string]string{ToolAgent: orUnknown(o.AgentVersion)}, StackCommit: o.StackCommit, Note: o.Note}
	m.DumpKey = DumpKey(m.ID, m.Encrypted)

	container, role := o.Primary, RolePrimary
	position := "--master-data=2"
	if ok, err := db.Ready(ctx, o.Replica); err == nil && ok {
		container, role, position = o.Replica, RoleReplica, "--dump-slave=2"
	}
	m.Source = Source{Container: container, Role: role}
	dump, err := db.StartDump(ctx, container, RootCommand(o.PasswordFile, "mariadb-dump", append([]string{"--user=root", position}, dumpArgs...)...))
	if err != nil {
		return m, fmt.Errorf("start the dump in %s: %w", container, err)
	}
	counter := NewRowCounter()
	src := io.TeeReader(dump.Output(), counter)
	res, streamErr := Stream(ctx, src, store, m.DumpKey, o.Recipients)
	if streamErr != nil {
		dump.Stop() // nobody reads its output any more
	}
	waitErr := dump.Wait(ctx)
	if streamErr != nil {
		waitErr = nil // the dump failed because it was stopped: the stream's error says why
	}
	if err := errors.Join(streamErr, waitErr); err != nil {
		return m, fmt.Errorf("backup %s from %s: %w", m.ID, container, err)
	}
	if !counter.Completed() {
		// The dump exited 0 without its closing line: never call that a backup.
		return m, fmt.Errorf("backup %s from %s: the dump ended without mariadb-dump's \"-- Dump completed\" line", m.ID, container)
	}
	m.Finished = time.Now().UTC()
	m.RawBytes, m.StoredBytes, m.SHA256 = res.RawBytes, res.StoredBytes, res.SHA256
	m.GTID = counter.GTID()
	m.Source.ServerVersion = orUnknown(counter.ServerVersion())
	m.Tools[ToolMariaDBDump] = orUnknown(counter.DumpVersion())
	m.Tables = map[TableName]TableInfo{}
	for t, n := range counter.Tables() {
		m.Tables[t] = TableInfo{Rows: n}
	}
	b, err := EncodeManifest(m)
	if err != nil {
		return m, err
	}
	// The signature first: the manifest, written last, makes the backup exist.
	if o.Keys != nil {
		if err := store.Put(ctx, SignatureKey(m.ID), o.Keys.Sign(b), "text/plain"); err != nil {
			return m, fmt.Errorf("write the manifest signature of %s: %w", m.ID, err)
		}
	}
	if err := store.Put(ctx, ManifestKey(m.ID), b, "application/json"); err != nil {
		return m, fmt.Errorf("write manifest of %s: %w", m.ID, err)
	}
	return m, nil
}

// freeID returns the start time of a new backup: now, truncated to its id's second, or the next
// second when a backup already holds that id.
func freeID(ctx context.Context, taken func(ctx context.Context, id string) (bool, error)) (time.Time, error) {
	for range 3 {
		started := time.Now().UTC().Truncate(time.Second)
		if taken == nil {
			return started, nil
		}
		busy, err := taken(ctx, NewID(started))
		if err != nil {
			return time.Time{}, fmt.Errorf("check backup id %s: %w", NewID(started), err)
		}
		if !busy {
			return started, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(time.Until(started.Add(time.Second))):
		}
	}
	return time.Time{}, errors.New("no free backup id after 3 seconds: another agent backs up to the same store and prefix?")
}

// RootCommand is the command line that runs program with args in a database container as
// root: with the password read inside the container from passwordFile, so that it never leaves
// the container, or through the unix socket when passwordFile is "" (a scratch server).
func RootCommand(passwordFile, program string, args ...string) []string {
	script := "exec " + program
	for _, a := range args {
		script += " " + shellQuote(a)
	}
	if passwordFile != "" {
		script = fmt.Sprintf(`MYSQL_PWD="$(cat %s)" || exit 3; export MYSQL_PWD; %s`, shellQuote(passwordFile), script)
	}
	return []string{"sh", "-c", script}
}

// ClientCommand is the command line of the mariadb client as root in a database container (see
// RootCommand) with args, always in sandbox mode (--sandbox, MariaDB 10.5.25+ and 11.x clients):
// the client then refuses its own commands that reach outside the server (\! runs a shell
// command in the container, \. reads a file, tee and pager write one) and stops with an error.
// A restore feeds the client a dump read from the store; mariadb-dump's first line turns sandbox
// mode on, but a dump without that line must not run a shell in the database container.
func ClientCommand(passwordFile string, args ...string) []string {
	return RootCommand(passwordFile, "mariadb", append([]string{"--sandbox", "-uroot"}, args...)...)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
