package backup

import (
	"bytes"
	"maps"
	"strings"
)

// RowCounter counts the rows of every table in a mariadb-dump stream as it goes by: the tables
// a backup's manifest lists, with row counts taken in exactly the dump's snapshot, without a
// query of its own. Write the dump to it (an io.Writer, for io.TeeReader); Tables returns the
// counts. It keeps only the start of the current line and its parsing state, so memory does not
// grow with the dump, however long its extended INSERT lines are.
//
// It understands what mariadb-dump writes: `USE `db`;`, `CREATE TABLE `t` (`, and extended
// inserts, `INSERT INTO `t` VALUES (...),(...);`, on one line or (MariaDB 11) with the tuples on
// lines of their own, with single-quoted strings and backslash escapes.
type RowCounter struct {
	db     string
	tables map[TableName]int64
	gtid   string // from `SET GLOBAL gtid_slave_pos='...'`, commented out or not
	// From the dump's header comments: `-- MariaDB dump 10.19-11.8.9-MariaDB, for ...` and
	// `-- Server version	11.8.9-MariaDB-...`.
	dumpVersion, serverVersion string
	// completed: the last non-empty line so far was mariadb-dump's closing comment,
	// `-- Dump completed on ...`. Only the last line counts: a dump that has the text
	// earlier (in a forged or concatenated dump, or in a table's data) did not end there.
	completed bool
	lineText  bool // the current line has a character other than a space, tab or CR
	lineDone  bool // the current line is the closing comment

	head    []byte // the start of the current line, until it is classified
	mode    int
	table   TableName // the table of the INSERT being counted
	depth   int       // parenthesis depth outside strings
	inQuote bool
	escaped bool
}

const (
	modeHead   = iota // reading the start of a line
	modeSkip          // a line that does not matter: skip to its end
	modeValues        // inside an INSERT's VALUES list
)

// headMax bounds the part of a line kept to classify it.
const headMax = 1024

// NewRowCounter returns an empty counter.
func NewRowCounter() *RowCounter { return &RowCounter{tables: map[TableName]int64{}} }

// Write consumes more of the dump. It never fails.
func (c *RowCounter) Write(p []byte) (int, error) {
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch c.mode {
		case modeHead:
			if b == '\n' {
				c.classify(true)
				c.head = c.head[:0]
				break
			}
			c.head = append(c.head, b)
			if bytes.HasSuffix(c.head, []byte(" VALUES ")) || len(c.head) >= headMax {
				c.classify(false)
			}
		case modeSkip:
			if b == '\n' {
				c.mode, c.head = modeHead, c.head[:0]
			}
		case modeValues:
			c.value(b)
		}
		c.track(b)
	}
	return len(p), nil
}

// track follows which line is the last non-empty one, for Completed. It runs after the byte
// was handled, so a closing comment has been classified (lineDone) when its newline comes.
func (c *RowCounter) track(b byte) {
	switch b {
	case '\n':
		if c.lineText {
			c.completed = c.lineDone
		}
		c.lineText, c.lineDone = false, false
	case ' ', '\t', '\r':
	default:
		c.lineText = true
	}
}

// classify decides what the line in head is; complete says the whole line is there.
func (c *RowCounter) classify(complete bool) {
	line := string(c.head)
	if complete {
		c.comment(line)
	}
	switch {
	case strings.HasPrefix(line, "USE `"):
		if name, ok := quotedName(line[len("USE "):]); ok {
			c.db = name
		}
	case strings.HasPrefix(line, "CREATE TABLE `"):
		if name, ok := quotedName(line[len("CREATE TABLE "):]); ok {
			if _, seen := c.tables[c.key(name)]; !seen {
				c.tables[c.key(name)] = 0
			}
		}
	case strings.HasPrefix(line, "INSERT INTO `") && (strings.HasSuffix(line, " VALUES ") || complete && strings.HasSuffix(line, " VALUES")):
		if name, ok := quotedName(line[len("INSERT INTO "):]); ok {
			c.table, c.mode, c.depth, c.inQuote, c.escaped = c.key(name), modeValues, 0, false, false
			if _, seen := c.tables[c.table]; !seen {
				c.tables[c.table] = 0
			}
			return
		}
	}
	if !complete {
		c.mode = modeSkip
	}
}

// comment picks the closing comment, the GTID position and the versions from a whole line (the
// GTID line is commented out with --dump-slave=2 and --master-data=2, not with =1).
func (c *RowCounter) comment(line string) {
	if strings.HasPrefix(line, "-- Dump completed") {
		c.lineDone = true
		return
	}
	text := strings.TrimPrefix(line, "-- ")
	switch {
	case strings.HasPrefix(text, "SET GLOBAL gtid_slave_pos="):
		g := strings.TrimPrefix(text, "SET GLOBAL gtid_slave_pos=")
		c.gtid = strings.Trim(strings.TrimSuffix(strings.TrimSpace(g), ";"), "'")
	case strings.HasPrefix(text, "MariaDB dump ") && c.dumpVersion == "":
		if f := strings.Fields(strings.TrimPrefix(text, "MariaDB dump ")); len(f) > 0 {
			c.dumpVersion = strings.TrimSuffix(f[0], ",")
		}
	case strings.HasPrefix(text, "Server version") && c.serverVersion == "":
		if f := strings.Fields(strings.TrimPrefix(text, "Server version")); len(f) > 0 {
			c.serverVersion = f[0]
		}
	}
}

// value advances through an INSERT's VALUES list: a tuple starts at each '(' at depth 0
// outside a string; the statement ends at the ';' after the last one.
func (c *RowCounter) value(b byte) {
	switch {
	case c.escaped:
		c.escaped = false
	case c.inQuote:
		switch b {
		case '\\':
			c.escaped = true
		case '\'':
			c.inQuote = false
		}
	case b == '\'':
		c.inQuote = true
	case b == '(':
		if c.depth == 0 {
			c.tables[c.table]++
		}
		c.depth++
	case b == ')':
		c.depth--
	case b == ';' && c.depth == 0:
		c.mode = modeSkip
	}
}

func (c *RowCounter) key(table string) TableName { return TableName{Database: c.db, Table: table} }

// quotedName reads `name` at the start of s (backticks doubled inside names).
func quotedName(s string) (string, bool) {
	if !strings.HasPrefix(s, "`") {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] == '`' {
			if i+1 < len(s) && s[i+1] == '`' {
				b.WriteByte('`')
				i++
				continue
			}
			return b.String(), true
		}
		b.WriteByte(s[i])
	}
	return "", false
}

// GTID returns the GTID position the dump recorded (mariadb-dump --gtid writes it at the start
// with --master-data, at the end with --dump-slave), or "".
func (c *RowCounter) GTID() string { return c.gtid }

// Completed reports whether the dump's last non-empty line is its closing comment (`-- Dump
// completed on ...`), ended by a newline: mariadb-dump writes it last, so a dump without it
// there was cut short, or has something after its end.
func (c *RowCounter) Completed() bool { return c.completed && !c.lineText }

// DumpVersion is the dump tool's version from the dump's first comment, or "".
func (c *RowCounter) DumpVersion() string { return c.dumpVersion }

// ServerVersion is the dumped server's version from the dump's header, or "".
func (c *RowCounter) ServerVersion() string { return c.serverVersion }

// Tables returns the rows of every table seen so far. A table before any `USE` has an empty
// Database (mariadb-dump --all-databases always writes one first).
func (c *RowCounter) Tables() map[TableName]int64 { return maps.Clone(c.tables) }
