package binlog

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hastack/hastack/internal/backup"
)

// effect is what a statement of a query event means for the rows of tables, as a drill counts
// them: the tables and databases whose rows it may change beyond what row events say (DDL), or
// that it cannot be attributed to tables at all. It names tables; it is not a SQL parser, and
// what it does not recognise it does not attribute.
type effect struct {
	commit, rollback bool // the statement ends the transaction
	rollbackTo       bool // ROLLBACK TO SAVEPOINT: part of the transaction is undone
	xa               bool // XA START, END, PREPARE, COMMIT, ROLLBACK
	tables           []backup.TableName
	databases        []string
	everything       string // set when the statement cannot be attributed: why
	// account: the statement changes accounts or privileges (CREATE, ALTER, DROP or RENAME
	// USER or ROLE, GRANT, REVOKE, SET PASSWORD, SET DEFAULT ROLE). No table's rows.
	account bool
}

// statementEffect says what query (run with default database schema) does to tables' rows.
// Statements that change no table's rows (transaction control, accounts, grants, views,
// triggers, routines, events) have no effect on rows: replayed row events do not run triggers,
// and a routine's row changes are logged as row events where it runs. Those that change
// accounts or grants are marked account.
func statementEffect(schema, query string) effect {
	toks, err := tokenize(query)
	cannot := effect{everything: "the archive holds a statement that changes rows it cannot attribute to tables (a statement logged as text: is binlog_format ROW?): " + abbreviate(query)}
	if err != nil {
		cannot.everything = fmt.Sprintf("the archive holds a statement the drill cannot read (%v): %s", err, abbreviate(query))
		return cannot
	}
	if len(toks) == 0 {
		return effect{} // only comments, such as MariaDB's "# Dummy event replacing event type ..."
	}
	c := &cursor{toks: toks, schema: schema}
	switch c.word() {
	case "BEGIN", "START", "SAVEPOINT", "RELEASE", "ANALYZE", "OPTIMIZE", "CHECK", "CHECKSUM", "FLUSH", "INSTALL", "UNINSTALL":
		return effect{}
	case "GRANT", "REVOKE":
		return effect{account: true}
	case "COMMIT":
		return effect{commit: true}
	case "ROLLBACK":
		c.accept("WORK")
		if c.accept("TO") {
			return effect{rollbackTo: true}
		}
		return effect{rollback: true}
	case "XA":
		return effect{xa: true}
	case "SET":
		if c.accept("PASSWORD") || c.accept("DEFAULT", "ROLE") {
			return effect{account: true}
		}
		if c.accept("ROLE") {
			return effect{}
		}
	case "CREATE":
		c.prefix()
		switch c.word() {
		case "TABLE", "SEQUENCE":
			c.accept("IF", "NOT", "EXISTS")
			if e, ok := c.names(false); ok {
				return e
			}
		case "INDEX":
			if c.skipTo("ON") {
				if e, ok := c.names(false); ok {
					return e
				}
			}
		case "DATABASE", "SCHEMA":
			c.accept("IF", "NOT", "EXISTS")
			if db, ok := c.ident(); ok {
				return effect{databases: []string{db}}
			}
		case "USER", "ROLE":
			return effect{account: true}
		case "VIEW", "TRIGGER", "PROCEDURE", "FUNCTION", "EVENT", "SERVER", "PACKAGE":
			return effect{}
		}
	case "DROP":
		c.accept("TEMPORARY")
		switch c.word() {
		case "TABLE", "TABLES", "SEQUENCE":
			c.accept("IF", "EXISTS")
			if e, ok := c.names(true); ok {
				return e
			}
		case "INDEX":
			if c.skipTo("ON") {
				if e, ok := c.names(false); ok {
					return e
				}
			}
		case "DATABASE", "SCHEMA":
			c.accept("IF", "EXISTS")
			if db, ok := c.ident(); ok {
				return effect{databases: []string{db}}
			}
		case "USER", "ROLE":
			return effect{account: true}
		case "VIEW", "TRIGGER", "PROCEDURE", "FUNCTION", "EVENT", "SERVER", "PACKAGE":
			return effect{}
		}
	case "ALTER":
		c.accept("ONLINE")
		c.accept("IGNORE")
		c.prefix()
		switch c.word() {
		case "TABLE":
			c.accept("IF", "EXISTS")
			if e, ok := c.alterTable(); ok {
				return e
			}
		case "SEQUENCE":
			c.accept("IF", "EXISTS")
			if e, ok := c.names(false); ok {
				return e
			}
		case "USER", "ROLE":
			return effect{account: true}
		case "DATABASE", "SCHEMA", "VIEW", "EVENT", "FUNCTION", "PROCEDURE", "SERVER":
			return effect{}
		}
	case "RENAME":
		if c.accept("USER") {
			return effect{account: true}
		}
		if c.accept("TABLE") || c.accept("TABLES") {
			c.accept("IF", "EXISTS")
			if e, ok := c.renames(); ok {
				return e
			}
		}
	case "TRUNCATE":
		c.accept("TABLE")
		if e, ok := c.names(false); ok {
			return e
		}
	case "REPAIR":
		c.accept("NO_WRITE_TO_BINLOG")
		c.accept("LOCAL")
		if c.accept("TABLE") {
			if e, ok := c.names(true); ok {
				return e
			}
		}
	}
	return cannot
}

// withoutSecrets is an account statement with what may hold a password left out: MariaDB logs
// CREATE, ALTER USER and GRANT ... IDENTIFIED BY 'password' as typed, and SET PASSWORD with the
// password or its hash. Everything from IDENTIFIED on, and after SET PASSWORD's "=", becomes
// "...".
func withoutSecrets(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	upper := strings.ToUpper(q)
	if i := strings.Index(upper, " IDENTIFIED"); i >= 0 {
		return q[:i] + " IDENTIFIED ..."
	}
	if strings.HasPrefix(upper, "SET PASSWORD") {
		if i := strings.Index(q, "="); i >= 0 {
			return q[:i] + "= ..."
		}
		return "SET PASSWORD ..."
	}
	return q
}

// abbreviate is a statement's start, on one line, for a message.
func abbreviate(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	if len(q) > 100 {
		return q[:97] + "..."
	}
	return q
}

// token is a word (kind 'w'), a quoted identifier ('q', unquoted), a string ('s') or a
// punctuation character ('p').
type token struct {
	kind byte
	text string
}

// tokenize splits a statement into tokens, leaving out comments; the SQL inside executable
// comments (/*! ... */, /*M! ... */) is kept, as the server runs it.
func tokenize(q string) ([]token, error) {
	var toks []token
	inExec := false
	for i := 0; i < len(q); {
		c := q[i]
		rest := q[i:]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '#' || strings.HasPrefix(rest, "--") && (len(rest) == 2 || rest[2] == ' ' || rest[2] == '\t' || rest[2] == '\n' || rest[2] == '\r'):
			n := strings.IndexByte(rest, '\n')
			if n < 0 {
				n = len(rest)
			}
			i += n
		case strings.HasPrefix(rest, "/*!") || strings.HasPrefix(rest, "/*M!"):
			if inExec {
				return nil, errors.New("nested executable comments")
			}
			i += strings.IndexByte(rest, '!') + 1
			for i < len(q) && q[i] >= '0' && q[i] <= '9' {
				i++
			}
			inExec = true
		case strings.HasPrefix(rest, "/*"):
			n := strings.Index(rest[2:], "*/")
			if n < 0 {
				return nil, errors.New("a comment without its end")
			}
			i += n + 4
		case inExec && strings.HasPrefix(rest, "*/"):
			inExec = false
			i += 2
		case c == '`' || c == '\'' || c == '"':
			text, n, err := quoted(rest)
			if err != nil {
				return nil, err
			}
			kind := byte('s')
			if c == '`' {
				kind = 'q'
			}
			toks = append(toks, token{kind, text})
			i += n
		case wordByte(c):
			n := 1
			for n < len(rest) && wordByte(rest[n]) {
				n++
			}
			toks = append(toks, token{'w', rest[:n]})
			i += n
		default:
			toks = append(toks, token{'p', string(c)})
			i++
		}
	}
	return toks, nil
}

func wordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

// quoted reads a quoted identifier or string at the start of s (the quote doubled inside it; a
// backslash escapes in a string), and returns its text and length.
func quoted(s string) (string, int, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && q != '`' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case s[i] == q && i+1 < len(s) && s[i+1] == q:
			b.WriteByte(q)
			i++
		case s[i] == q:
			return b.String(), i + 1, nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, fmt.Errorf("%c without its end", q)
}

// cursor reads tokens.
type cursor struct {
	toks   []token
	i      int
	schema string // the default database
}

// word consumes the next token if it is a word and returns it upper-cased, or "".
func (c *cursor) word() string {
	if c.i < len(c.toks) && c.toks[c.i].kind == 'w' {
		c.i++
		return strings.ToUpper(c.toks[c.i-1].text)
	}
	return ""
}

// accept consumes the words ws if they come next, in order.
func (c *cursor) accept(ws ...string) bool {
	if c.i+len(ws) > len(c.toks) {
		return false
	}
	for j, w := range ws {
		t := c.toks[c.i+j]
		if t.kind != 'w' && !(t.kind == 'p' && len(w) == 1) || !strings.EqualFold(t.text, w) {
			return false
		}
	}
	c.i += len(ws)
	return true
}

// skipTo consumes tokens up to and including the word w.
func (c *cursor) skipTo(w string) bool {
	for c.i < len(c.toks) {
		if c.accept(w) {
			return true
		}
		c.i++
	}
	return false
}

// prefix consumes what may come between CREATE or ALTER and the kind of object: OR REPLACE,
// TEMPORARY, UNIQUE, DEFINER = user, SQL SECURITY ..., ALGORITHM = ....
func (c *cursor) prefix() {
	for {
		switch {
		case c.accept("OR", "REPLACE"), c.accept("TEMPORARY"), c.accept("ONLINE"), c.accept("OFFLINE"), c.accept("UNIQUE"),
			c.accept("FULLTEXT"), c.accept("SPATIAL"), c.accept("AGGREGATE"), c.accept("NONATOMIC"):
		case c.accept("SQL", "SECURITY"):
			c.word()
		case c.accept("ALGORITHM", "="):
			c.word()
		case c.accept("DEFINER", "="):
			if c.accept("CURRENT_USER") {
				c.accept("(", ")")
				continue
			}
			c.value()
			if c.accept("@") {
				c.value()
			}
		default:
			return
		}
	}
}

// value consumes a word, a quoted identifier or a string.
func (c *cursor) value() {
	if c.i < len(c.toks) && c.toks[c.i].kind != 'p' {
		c.i++
	}
}

// ident consumes a name's part: a word or a quoted identifier.
func (c *cursor) ident() (string, bool) {
	if c.i < len(c.toks) && (c.toks[c.i].kind == 'w' || c.toks[c.i].kind == 'q') {
		c.i++
		return c.toks[c.i-1].text, true
	}
	return "", false
}

// name consumes a table's name, db.table or table (in the default database).
func (c *cursor) name() (backup.TableName, bool) {
	first, ok := c.ident()
	if !ok {
		return backup.TableName{}, false
	}
	if c.accept(".") {
		t, ok := c.ident()
		return backup.TableName{Database: first, Table: t}, ok
	}
	return backup.TableName{Database: c.schema, Table: first}, c.schema != ""
}

// names consumes a table's name, or a list of them separated by commas.
func (c *cursor) names(list bool) (effect, bool) {
	var e effect
	for {
		n, ok := c.name()
		if !ok {
			return e, false
		}
		e.tables = append(e.tables, n)
		if !list || !c.accept(",") {
			return e, true
		}
	}
}

// renames consumes RENAME TABLE's list: a [WAIT n | NOWAIT] TO b, ...
func (c *cursor) renames() (effect, bool) {
	var e effect
	for {
		from, ok := c.name()
		if !ok {
			return e, false
		}
		if c.accept("WAIT") {
			c.word()
		}
		c.accept("NOWAIT")
		if !c.accept("TO") {
			return e, false
		}
		to, ok := c.name()
		if !ok {
			return e, false
		}
		e.tables = append(e.tables, from, to)
		if !c.accept(",") {
			return e, true
		}
	}
}

// alterTable consumes ALTER TABLE's name and finds, in its changes, the other tables it
// touches: RENAME [TO|AS] t, EXCHANGE PARTITION p WITH TABLE t.
func (c *cursor) alterTable() (effect, bool) {
	e, ok := c.names(false)
	if !ok {
		return e, false
	}
	for c.i < len(c.toks) {
		switch {
		case c.accept("RENAME"):
			if c.accept("COLUMN") || c.accept("INDEX") || c.accept("KEY") || c.accept("CONSTRAINT") {
				continue
			}
			_ = c.accept("TO") || c.accept("AS") || c.accept("=")
			n, ok := c.name()
			if !ok {
				return e, false
			}
			e.tables = append(e.tables, n)
		case c.accept("WITH", "TABLE"):
			n, ok := c.name()
			if !ok {
				return e, false
			}
			e.tables = append(e.tables, n)
		default:
			c.i++
		}
	}
	return e, true
}
