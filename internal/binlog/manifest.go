package binlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/hastack/hastack/internal/mariadb"
)

// ManifestVersion is the version of the segment manifests this package writes and reads.
const ManifestVersion = 1

// maxManifest bounds what is read as a segment manifest.
const maxManifest = 64 << 10

// Manifest describes one segment. It is written last: a segment without a valid manifest does
// not exist. With manifest keys it is signed like a dump's (backup.ManifestKeys), the signature
// covering its stored bytes.
type Manifest struct {
	Version int `json:"version"`
	// Start is the position before the segment's first transaction: the end of the segment
	// before it in the archive (unless a hole separates them). End is the position after its
	// last transaction. An empty segment (no transaction) has Start = End: it marks a position
	// (see the package doc).
	Start Position `json:"start"`
	End   Position `json:"end"`
	// FirstGTID and LastGTID are its first and last transactions; FirstTime and LastTime their
	// commit times (the timestamp of each transaction's last event: whole seconds, UTC).
	FirstGTID    string    `json:"first_gtid,omitempty"`
	LastGTID     string    `json:"last_gtid,omitempty"`
	FirstTime    time.Time `json:"first_time,omitzero"`
	LastTime     time.Time `json:"last_time,omitzero"`
	Transactions int64     `json:"transactions"`
	Events       int64     `json:"events"`    // in its transactions
	RawBytes     int64     `json:"raw_bytes"` // the binary log file: magic, Format_description event, transactions
	StoredBytes  int64     `json:"stored_bytes"`
	SHA256       string    `json:"sha256,omitempty"` // of the stored object, hex
	Encrypted    bool      `json:"encrypted"`
	Checksum     string    `json:"checksum,omitempty"` // the events' checksums: "crc32" or "none"
	Server       Server    `json:"server"`
	Written      time.Time `json:"written"`
	// Reason says why an empty segment was written.
	Reason string `json:"reason,omitempty"`
}

// Server is the database server a segment was read from.
type Server struct {
	Address  string `json:"address,omitempty"`
	ServerID uint32 `json:"server_id,omitempty"` // of the binary log's Format_description event
	Version  string `json:"version,omitempty"`
}

// Checksum values.
const (
	checksumCRC32 = "crc32"
	checksumNone  = "none"
)

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Empty says whether the segment holds no transaction (it marks a position).
func (m Manifest) Empty() bool { return m.Transactions == 0 }

// First returns the segment's first transaction's GTID (zero for an empty segment).
func (m Manifest) First() mariadb.GTID { g, _ := ParseGTID(m.FirstGTID); return g }

// Last returns the segment's last transaction's GTID (zero for an empty segment).
func (m Manifest) Last() mariadb.GTID { g, _ := ParseGTID(m.LastGTID); return g }

// Encode returns the manifest as stored.
func (m Manifest) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// DecodeManifest parses and validates a stored manifest. Decoding is strict: unknown fields,
// trailing data and another version are errors.
func DecodeManifest(b []byte) (Manifest, error) {
	if len(b) > maxManifest {
		return Manifest{}, fmt.Errorf("segment manifest: larger than %d bytes", maxManifest)
	}
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return Manifest{}, fmt.Errorf("segment manifest: %w", err)
	}
	switch {
	case v.Version == nil:
		return Manifest{}, errors.New("segment manifest: no version")
	case *v.Version > ManifestVersion:
		return Manifest{}, fmt.Errorf("segment manifest: version %d, written by a newer agent (this one reads version %d): upgrade the agent", *v.Version, ManifestVersion)
	case *v.Version != ManifestVersion:
		return Manifest{}, fmt.Errorf("segment manifest: version %d: this agent reads version %d", *v.Version, ManifestVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("segment manifest: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, errors.New("segment manifest: data after the manifest")
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// Validate checks that the manifest is consistent in itself; it names the first field found
// wrong.
func (m Manifest) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("segment manifest: %s: %s", field, fmt.Sprintf(format, args...))
	}
	if m.Version != ManifestVersion {
		return bad("version", "%d, want %d", m.Version, ManifestVersion)
	}
	if err := m.Start.check(); err != nil {
		return bad("start", "%v", err)
	}
	if err := m.End.check(); err != nil {
		return bad("end", "%v", err)
	}
	if !m.Start.Within(m.Start, m.End) || !m.End.Within(m.Start, m.End) {
		return bad("end", "%q is not after start %q in every domain", m.End, m.Start)
	}
	if m.Written.IsZero() {
		return bad("written", "missing")
	}
	if m.Transactions < 0 || m.Events < 0 || m.RawBytes < 0 || m.StoredBytes < 0 {
		return bad("transactions", "negative counts or sizes")
	}
	if m.Transactions == 0 {
		switch {
		case !m.Start.Equal(m.End):
			return bad("end", "an empty segment must end where it starts (%q), not at %q", m.Start, m.End)
		case m.FirstGTID != "" || m.LastGTID != "" || !m.FirstTime.IsZero() || !m.LastTime.IsZero():
			return bad("first_gtid", "an empty segment has no transactions to name")
		case m.Events != 0 || m.RawBytes != 0 || m.StoredBytes != 0 || m.SHA256 != "" || m.Encrypted || m.Checksum != "":
			return bad("raw_bytes", "an empty segment has no data object")
		}
		return nil
	}
	first, err := ParseGTID(m.FirstGTID)
	if err != nil {
		return bad("first_gtid", "%v", err)
	}
	last, err := ParseGTID(m.LastGTID)
	if err != nil {
		return bad("last_gtid", "%v", err)
	}
	switch {
	case m.Start.Includes(first) || !m.End.Includes(first):
		return bad("first_gtid", "%s is not between start %q and end %q", first, m.Start, m.End)
	case m.Start.Includes(last) || !m.End.Includes(last):
		return bad("last_gtid", "%s is not between start %q and end %q", last, m.Start, m.End)
	case !m.End.Equal(withGTID(m.End, last)):
		return bad("last_gtid", "%s is not the end's GTID of its domain (end %q)", last, m.End)
	case uint64(m.Transactions) > m.End.Ordinal()-m.Start.Ordinal():
		return bad("transactions", "%d transactions cannot fit between %q and %q", m.Transactions, m.Start, m.End)
	case m.Transactions == 1 && m.FirstGTID != m.LastGTID:
		return bad("last_gtid", "one transaction, but first %s and last %s differ", first, last)
	case m.Events < 2*m.Transactions:
		return bad("events", "%d events for %d transactions (each has at least two)", m.Events, m.Transactions)
	case m.FirstTime.IsZero() || m.LastTime.IsZero():
		return bad("first_time", "commit times missing")
	case m.RawBytes < int64(len(binlogMagic))+eventHeaderLen:
		return bad("raw_bytes", "%d bytes cannot hold a binary log", m.RawBytes)
	case m.StoredBytes == 0:
		return bad("stored_bytes", "0")
	case !sha256Hex.MatchString(m.SHA256):
		return bad("sha256", "%q is not 64 lowercase hex digits", m.SHA256)
	case m.Checksum != checksumCRC32 && m.Checksum != checksumNone:
		return bad("checksum", "%q, want %q or %q", m.Checksum, checksumCRC32, checksumNone)
	}
	return nil
}

// withGTID returns p with g as its domain's GTID, whether or not g comes after p: a
// comparison helper for Validate.
func withGTID(p Position, g mariadb.GTID) Position {
	q := make(Position, 0, len(p)+1)
	done := false
	for _, h := range p {
		switch {
		case h.Domain == g.Domain:
			q, done = append(q, g), true
		case h.Domain > g.Domain && !done:
			q, done = append(q, g, h), true
		default:
			q = append(q, h)
		}
	}
	if !done {
		q = append(q, g)
	}
	return q
}

// matchesKey checks that the manifest is the one its key names: the same ordinals and writing
// time. A signed manifest copied under another key is refused by this, not only by its
// signature.
func (m Manifest) matchesKey(k keyInfo) error {
	switch {
	case m.Start.Ordinal() != k.start || m.End.Ordinal() != k.end:
		return fmt.Errorf("segment manifest of %s: its positions %q to %q do not match its key", k.base, m.Start, m.End)
	case m.Written.UnixNano() != k.written:
		return fmt.Errorf("segment manifest of %s: written %s, its key says %s", k.base, m.Written.Format(time.RFC3339Nano), k.writtenTime().Format(time.RFC3339Nano))
	}
	return nil
}
