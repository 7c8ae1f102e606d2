package backup

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Seed corpora are committed in testdata/fuzz/<FuzzName>/ (the golden manifests of both
// versions and edits of them; real and forged dumps). Run one, for example:
//
//	go test -run='^$' -fuzz='^FuzzDecodeManifest$' -fuzztime=20s ./internal/backup/

// FuzzDecodeManifest: any bytes either decode into a valid manifest that encodes back to the same
// manifest (version 2, canonically: encoding is a fixed point) or fail with ErrInvalidManifest;
// version 1 keys are split at their only dot or kept aside as ambiguous, never guessed.
func FuzzDecodeManifest(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("error %v does not match ErrInvalidManifest", err)
			}
			if !reflect.DeepEqual(m, Manifest{}) {
				t.Fatalf("a manifest with the error: %+v", m)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("DecodeManifest returned an invalid manifest: %v", err)
		}
		for _, key := range m.AmbiguousTables {
			if m.Version != manifestV1 || strings.Count(key, ".") < 2 {
				t.Fatalf("ambiguous %q in a version %d manifest", key, m.Version)
			}
		}
		if m.Version == manifestV1 {
			for name := range m.Tables {
				if strings.Contains(name.Database, ".") || strings.Contains(name.Table, ".") {
					t.Fatalf("version 1 key split with a dot left in %+v: that is a guess", name)
				}
			}
		}
		if restorable := m.Restorable(); (restorable != nil) != (len(m.AmbiguousTables) > 0) ||
			restorable != nil && !errors.Is(restorable, ErrAmbiguous) {
			t.Fatalf("Restorable() = %v with ambiguous tables %q", restorable, m.AmbiguousTables)
		}

		// Round trip through the current version.
		if len(m.AmbiguousTables) > 0 {
			return // not representable in version 2: by design
		}
		m.Version = ManifestVersion
		enc, err := EncodeManifest(m)
		if err != nil {
			t.Fatalf("EncodeManifest of a decoded manifest: %v", err)
		}
		back, err := DecodeManifest(enc)
		if err != nil {
			t.Fatalf("DecodeManifest(EncodeManifest(m)): %v\n%s", err, enc)
		}
		m.Started, m.Finished = m.Started.UTC(), m.Finished.UTC()
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", back, m)
		}
		again, err := EncodeManifest(back)
		if err != nil || !bytes.Equal(again, enc) {
			t.Fatalf("encoding is not a fixed point (%v):\n%s\n%s", err, enc, again)
		}
	})
}

// FuzzManifestSignature: a signature verifies exactly the bytes it was made for; any other
// manifest bytes or signature bytes are not verified, and a wrong signature is never accepted,
// not even with allowUnsigned.
func FuzzManifestSignature(f *testing.F) {
	keys, err := ParseManifestKeys([]byte(testKey + "\n" + otherKey))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, manifest, sig []byte, flip uint) {
		good := keys.Sign(manifest)
		if a := keys.Check(manifest, good); a.Status != AuthVerified || a.KeyID != keys.SigningKeyID() {
			t.Fatalf("Check(m, Sign(m)) = %+v", a)
		}
		// The fuzzed signature verifies only if it is the signature, give or take its newline.
		a := keys.Check(manifest, sig)
		if isGood := sig != nil && bytes.Equal(bytes.TrimSuffix(sig, []byte("\n")), bytes.TrimSuffix(good, []byte("\n"))); (a.Status == AuthVerified) != isGood {
			t.Fatalf("Check(m, %q) = %+v; the signature is %q", sig, a, good)
		}
		if a.Status == AuthBad && Authorize("20261124T030000Z", a, true) == nil {
			t.Fatal("a wrong signature was accepted with allowUnsigned")
		}
		// One bit of the manifest changed: never verified.
		if len(manifest) > 0 {
			changed := bytes.Clone(manifest)
			changed[flip%uint(len(changed))] ^= 1 << (flip / uint(len(changed)) % 8)
			if a := keys.Check(changed, good); a.Status != AuthBad {
				t.Fatalf("a changed manifest checked as %+v", a)
			}
		}
		// Bytes appended: never verified.
		if a := keys.Check(append(bytes.Clone(manifest), byte(flip)), good); a.Status != AuthBad {
			t.Fatalf("a manifest with a byte appended checked as %+v", a)
		}
		// Without keys nothing verifies.
		if a := (*ManifestKeys)(nil).Check(manifest, sig); a.Status == AuthVerified {
			t.Fatalf("verified without a key: %+v", a)
		}
	})
}

// FuzzRowCounter: the counter never fails, whatever the dump; how the dump is split into writes
// does not change what it finds; its line buffer stays bounded; every table it counts was named
// by a CREATE TABLE or INSERT INTO; and it calls a dump complete only if its last non-empty line
// is mariadb-dump's closing comment, ended by a newline.
func FuzzRowCounter(f *testing.F) {
	f.Fuzz(func(t *testing.T, dump []byte, split uint16) {
		whole := NewRowCounter()
		if n, err := whole.Write(dump); n != len(dump) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		parts := NewRowCounter()
		at := int(split) % (len(dump) + 1)
		parts.Write(dump[:at])
		parts.Write(dump[at:])
		if !reflect.DeepEqual(whole.Tables(), parts.Tables()) || whole.Completed() != parts.Completed() ||
			whole.GTID() != parts.GTID() || whole.DumpVersion() != parts.DumpVersion() || whole.ServerVersion() != parts.ServerVersion() {
			t.Fatalf("split at %d: tables %v / %v, completed %t / %t", at, whole.Tables(), parts.Tables(), whole.Completed(), parts.Completed())
		}
		if cap(whole.head) > 2*headMax || cap(parts.head) > 2*headMax {
			t.Fatalf("line buffer grew to %d bytes", max(cap(whole.head), cap(parts.head)))
		}
		named := bytes.Count(dump, []byte("CREATE TABLE `")) + bytes.Count(dump, []byte("INSERT INTO `"))
		var rows int64
		for name, n := range whole.Tables() {
			if n < 0 {
				t.Fatalf("table %+v: %d rows", name, n)
			}
			rows += n
		}
		if len(whole.Tables()) > named {
			t.Fatalf("%d tables from %d CREATE TABLE and INSERT INTO", len(whole.Tables()), named)
		}
		if rows > int64(bytes.Count(dump, []byte("("))) {
			t.Fatalf("%d rows from %d opening parentheses", rows, bytes.Count(dump, []byte("(")))
		}
		if whole.Completed() && !lastLineCompletes(dump) {
			t.Fatalf("complete, but the last non-empty line is not the closing comment:\n%q", tail(dump))
		}
	})
}

// lastLineCompletes is the plain reading of "the dump's last non-empty line is its closing
// comment": the line is ended by a newline and starts with "-- Dump completed".
func lastLineCompletes(dump []byte) bool {
	lines := strings.Split(string(dump), "\n")
	if strings.Trim(lines[len(lines)-1], " \t\r") != "" {
		return false // the last line has no newline
	}
	for i := len(lines) - 2; i >= 0; i-- {
		if strings.Trim(lines[i], " \t\r") != "" {
			return strings.HasPrefix(lines[i], "-- Dump completed")
		}
	}
	return false
}

func tail(b []byte) []byte { return b[max(0, len(b)-200):] }
