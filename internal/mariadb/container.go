package mariadb

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/docker"
)

// ContainerServer is a MariaDB server in a container, reached with the container's own client
// through the Docker API (backups and restores: a dump streams out, SQL streams in): as root
// with the password in PasswordFile (a path inside the container), or through the unix socket
// when PasswordFile is "" (a scratch server).
type ContainerServer struct {
	Engine       *docker.Client
	Container    string
	PasswordFile string
}

func (s ContainerServer) Name() string { return s.Container }

// client is the command line running the MariaDB client as root with args, in sandbox mode.
func (s ContainerServer) client(args ...string) []string {
	return backup.ClientCommand(s.PasswordFile, args...)
}

// Load runs the SQL read from sql; the client stops at the first error.
func (s ContainerServer) Load(ctx context.Context, sql io.Reader) error {
	e, err := s.Engine.ExecInput(ctx, s.Container, s.client("--batch", "--max-allowed-packet=1G", "--default-character-set=utf8mb4"), nil, sql)
	if err != nil {
		return err
	}
	go io.Copy(io.Discard, e.Stdout)
	return e.Wait(ctx)
}

// Query runs q and returns its rows (mariadb --batch: a tab-separated header, then rows, with
// tab, newline, NUL and backslash escaped in values; NULL is "NULL").
func (s ContainerServer) Query(ctx context.Context, q string) ([]map[string]string, error) {
	e, err := s.Engine.ExecStream(ctx, s.Container, s.client("--batch", "-e", q), nil)
	if err != nil {
		return nil, err
	}
	var rows []map[string]string
	var header []string
	sc := bufio.NewScanner(e.Stdout)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		for i, c := range cols {
			cols[i] = unescapeBatch(c)
		}
		if header == nil {
			header = cols
			continue
		}
		row := make(map[string]string, len(header))
		for i, h := range header {
			if i < len(cols) {
				row[h] = cols[i]
			}
		}
		rows = append(rows, row)
	}
	scanErr := sc.Err()
	io.Copy(io.Discard, e.Stdout)
	if err := e.Wait(ctx); err != nil {
		return nil, err
	}
	return rows, scanErr
}

// unescapeBatch undoes the escaping of a value in mariadb --batch output (\t, \n, \0, \\), so
// that a table named with a tab or a backslash comes back as its name.
func unescapeBatch(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case '0':
			b.WriteByte(0)
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// StartScratch starts a throw-away MariaDB server from image: no network, no binary log, its
// data in an anonymous volume that goes with the container, run as mysql (no capability: images
// made before the stack ran as mysql too start as root by default). Root authenticates by
// password, an empty one, not by the unix socket's user: the server has no network, only the
// agent's execs reach it. It returns once the server answers.
func StartScratch(ctx context.Context, engine *docker.Client, image, name, purpose string) (ContainerServer, error) {
	s := ContainerServer{Engine: engine, Container: name}
	script := "mariadb-install-db --datadir=/var/lib/mysql --skip-test-db --auth-root-authentication-method=normal >/dev/null && " +
		"exec mariadbd --datadir=/var/lib/mysql --skip-networking --skip-log-bin --server-id=999 " +
		"--innodb-flush-log-at-trx-commit=0 --skip-slow-query-log --max-allowed-packet=1G"
	if err := engine.StartScratch(ctx, docker.ScratchSpec{Name: name, Image: image, User: "mysql", Cmd: []string{"sh", "-c", script},
		Purpose: purpose, Volume: "/var/lib/mysql"}); err != nil {
		return s, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := s.Query(ctx, "SELECT 1 AS ok")
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("scratch server %s did not answer within 2m: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

var _ backup.Server = ContainerServer{}
