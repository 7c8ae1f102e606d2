package backup

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
)

// Account is a MariaDB account, user@host.
type Account struct{ User, Host string }

func (a Account) String() string { return quoteString(a.User) + "@" + quoteString(a.Host) }

// keepAccounts passes a dump through, dropping the account statements (CREATE USER, GRANT ... TO,
// SET DEFAULT ROLE ... FOR, ALTER USER) about accounts the target already has. A restore thus
// keeps the target's own accounts as they are: the stack's passwords come from its secret files,
// which may be newer than the backup (a disaster recovery on a new host). Accounts that exist
// only in the backup are created with their grants.
//
// mariadb-dump --system=users writes each account statement on a line of its own; other lines
// (table data can be megabytes long) pass through in chunks without being held whole.
type keepAccounts struct {
	br      *bufio.Reader
	keep    map[Account]bool
	out     []byte // the part of a line ready to be read
	midLine bool   // inside a long line already passed through
	err     error
	Skipped map[Account]bool // accounts whose statements were dropped
}

func newKeepAccounts(r io.Reader, keep map[Account]bool) *keepAccounts {
	return &keepAccounts{br: bufio.NewReaderSize(r, 64<<10), keep: keep, Skipped: map[Account]bool{}}
}

func (k *keepAccounts) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(k.out) == 0 {
			if n > 0 && k.br.Buffered() == 0 {
				return n, nil // do not wait for more input with something to hand over
			}
			if !k.next() {
				if n > 0 {
					return n, nil
				}
				return 0, k.err
			}
			continue
		}
		c := copy(p[n:], k.out)
		k.out = k.out[c:]
		n += c
	}
	return n, nil
}

// next reads the next line (or chunk of a long one) into out, dropping the statements to
// drop; it returns false at the end of the input or on an error (in err).
func (k *keepAccounts) next() bool {
	for {
		if k.err != nil {
			return false
		}
		line, err := k.br.ReadSlice('\n')
		k.err = err
		if err == bufio.ErrBufferFull {
			k.err = nil
		}
		if !k.midLine && err != bufio.ErrBufferFull {
			if a, ok := accountOf(line); ok && k.keep[a] {
				k.Skipped[a] = true
				continue
			}
			if importRoleLine(line) {
				continue
			}
		}
		k.midLine = err == bufio.ErrBufferFull
		k.out = line
		if len(line) > 0 {
			return true
		}
	}
}

// importRoleStatements are how mariadb-dump lets a restoring user that replaces its own
// account keep its privileges: a temporary role granted to CURRENT_USER(). A restore that keeps
// the target's accounts does not need it, and on a primary it must not run: the replica's SQL
// thread applies GRANT ... TO CURRENT_USER() to an anonymous account of its own.
var importRoleStatements = []string{
	"SELECT COALESCE(CURRENT_ROLE(),'NONE') into @current_role;",
	"CREATE ROLE IF NOT EXISTS mariadb_dump_import_role;",
	"GRANT mariadb_dump_import_role TO CURRENT_USER();",
	"SET ROLE mariadb_dump_import_role;",
	"SET ROLE NONE;",
	"DROP ROLE mariadb_dump_import_role;",
	"/*M!100203 EXECUTE IMMEDIATE CONCAT('SET ROLE ', @current_role) */;",
}

func importRoleLine(line []byte) bool {
	s := string(bytes.TrimSpace(line))
	for _, stmt := range importRoleStatements {
		if s == stmt {
			return true
		}
	}
	return false
}

// accountOf returns the account an account statement is about.
func accountOf(line []byte) (Account, bool) {
	s := string(bytes.TrimRight(line, "\n"))
	switch {
	case strings.HasPrefix(s, "CREATE USER "):
		return parseAccount(strings.TrimPrefix(strings.TrimPrefix(s, "CREATE USER "), "IF NOT EXISTS "))
	case strings.HasPrefix(s, "GRANT "):
		if i := strings.LastIndex(s, " TO "); i >= 0 {
			return parseAccount(s[i+len(" TO "):])
		}
	case strings.HasPrefix(s, "/*M!100005 SET DEFAULT ROLE "):
		if i := strings.LastIndex(s, " FOR "); i >= 0 {
			return parseAccount(s[i+len(" FOR "):])
		}
	case strings.HasPrefix(s, "/*!80001 ALTER USER "):
		return parseAccount(strings.TrimPrefix(s, "/*!80001 ALTER USER "))
	}
	return Account{}, false
}

// parseAccount reads `user`@`host` (or with single quotes) at the start of s.
func parseAccount(s string) (Account, bool) {
	user, rest, ok := quoted(s)
	if !ok || !strings.HasPrefix(rest, "@") {
		return Account{}, false
	}
	host, _, ok := quoted(rest[1:])
	return Account{User: user, Host: host}, ok
}

// quoted reads a name quoted with ` or ' (the quote doubled, or backslash-escaped, inside).
func quoted(s string) (name, rest string, ok bool) {
	if s == "" || s[0] != '`' && s[0] != '\'' {
		return "", "", false
	}
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && q == '\'' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case s[i] == q && i+1 < len(s) && s[i+1] == q:
			b.WriteByte(q)
			i++
		case s[i] == q:
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", false
}

// existingAccounts lists a server's accounts (and roles).
func existingAccounts(ctx context.Context, s Server) (map[Account]bool, error) {
	rows, err := s.Query(ctx, "SELECT User, Host FROM mysql.user")
	if err != nil {
		return nil, fmt.Errorf("list the accounts of %s: %w", s.Name(), err)
	}
	out := map[Account]bool{}
	for _, r := range rows {
		out[Account{User: r["User"], Host: r["Host"]}] = true
	}
	return out, nil
}
