package backup

import (
	"fmt"
	"strings"
	"time"
)

// IDLayout is the time layout of a backup ID: the backup's start time in UTC, to the second.
// IDs sort lexically in time order.
const IDLayout = "20060102T150405Z"

// Names of the objects that make up one backup, under "<store prefix>/<id>/".
const (
	dumpName          = "dump.sql.zst"
	encryptedDumpName = dumpName + ".age"
	manifestName      = "manifest.json"
	signatureName     = manifestName + ".sig"
)

// KeysBefore bounds the keys of the dumps in a store: an ID begins with a digit (its year), so
// every dump's key sorts before ":" (the character after "9"), and the binlog archive's
// ("binlog/...", possibly millions of them) after it. A catalog need not list past it.
const KeysBefore = ":"

// NewID returns the ID of a backup started at t: t in UTC, truncated to the second.
func NewID(t time.Time) string { return t.UTC().Format(IDLayout) }

// ParseID returns the start time (UTC) encoded in id, or an error if id is not a backup ID.
func ParseID(id string) (time.Time, error) {
	t, err := time.Parse(IDLayout, id)
	if err != nil || t.Format(IDLayout) != id {
		return time.Time{}, fmt.Errorf("backup id %q: not a UTC time of the form %s", id, IDLayout)
	}
	return t, nil
}

// DumpKey returns the key of a backup's dump object, relative to the store prefix.
func DumpKey(id string, encrypted bool) string {
	if encrypted {
		return id + "/" + encryptedDumpName
	}
	return id + "/" + dumpName
}

// ManifestKey returns the key of a backup's manifest, relative to the store prefix.
func ManifestKey(id string) string { return id + "/" + manifestName }

// SignatureKey returns the key of a backup manifest's signature (see ManifestKeys), relative to
// the store prefix.
func SignatureKey(id string) string { return id + "/" + signatureName }

// IDFromKey returns the backup ID an object key belongs to. The key is relative to the store
// prefix and must have the form "<id>/<name>", with a valid ID and a non-empty name without a
// slash; any such name counts, so that leftovers of a failed backup are found and pruned too.
func IDFromKey(key string) (id string, ok bool) {
	id, name, found := strings.Cut(key, "/")
	if !found || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	if _, err := ParseID(id); err != nil {
		return "", false
	}
	return id, true
}
