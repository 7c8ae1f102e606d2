package binlog

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Prefix is where the archive lives in the backup store, beside the dumps: every key this
// package builds or accepts starts with it.
const Prefix = "binlog/"

// The objects of one segment, under its base key binlog/<start>-<end>-<written>.
const (
	dataSuffix          = ".binlog.zst"
	encryptedDataSuffix = ".binlog.zst.age"
	manifestSuffix      = ".json"
	signatureSuffix     = ".json.sig"
)

// A base key names the segment's start and end ordinals (Position.Ordinal, 20 digits) and the
// time it was written (Unix nanoseconds, 19 digits): keys sort by position, and two segments
// never share a key, even two written for the same range.
var keyPattern = regexp.MustCompile(`^binlog/([0-9]{20})-([0-9]{20})-([0-9]{19})(\.binlog\.zst|\.binlog\.zst\.age|\.json|\.json\.sig)$`)

// keyInfo is what a segment's key says about it.
type keyInfo struct {
	base       string
	start, end uint64 // ordinals
	written    int64  // Unix nanoseconds
}

func (k keyInfo) writtenTime() time.Time { return time.Unix(0, k.written).UTC() }

// baseKey returns the base key of a segment. Every part is a number, formatted here: the key
// cannot leave Prefix whatever the manifest says.
func baseKey(start, end Position, written time.Time) string {
	return fmt.Sprintf("%s%020d-%020d-%019d", Prefix, start.Ordinal(), end.Ordinal(), written.UnixNano())
}

// segmentKey is baseKey for a segment about to be written, refused when parseKey would not read
// it back as written (a writing time before 1970, say): such a segment would be invisible.
func segmentKey(start, end Position, written time.Time) (string, error) {
	base := baseKey(start, end, written)
	k, _, ok := parseKey(manifestKey(base))
	if !ok || k.base != base || k.start != start.Ordinal() || k.end != end.Ordinal() || k.written != written.UnixNano() {
		return "", fmt.Errorf("no valid segment key for %s to %s written at %s: %q", start, end, written.UTC().Format(time.RFC3339Nano), base)
	}
	return base, nil
}

func dataKey(base string, encrypted bool) string {
	if encrypted {
		return base + encryptedDataSuffix
	}
	return base + dataSuffix
}

func manifestKey(base string) string  { return base + manifestSuffix }
func signatureKey(base string) string { return base + signatureSuffix }

// parseKey reads a segment object's key: its base key, what the key says, and which object it
// is (one of the suffixes). Anything else, under Prefix or not, is not a segment object.
func parseKey(key string) (info keyInfo, suffix string, ok bool) {
	m := keyPattern.FindStringSubmatch(key)
	if m == nil {
		return keyInfo{}, "", false
	}
	start, err1 := strconv.ParseUint(m[1], 10, 64)
	end, err2 := strconv.ParseUint(m[2], 10, 64)
	written, err3 := strconv.ParseInt(m[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || end < start || written <= 0 {
		return keyInfo{}, "", false
	}
	base := strings.TrimSuffix(key, m[4])
	return keyInfo{base: base, start: start, end: end, written: written}, m[4], true
}
