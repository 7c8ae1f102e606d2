package backup

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Manifests are authenticated with HMAC-SHA256 under a key that the store never sees: anyone who
// can write to the bucket can forge a manifest and the dump it describes (its SHA-256 included),
// and a restore runs the dump's SQL as root.
//
// The MAC is a sibling object, <id>/manifest.json.sig, not a field of the manifest, because it
// then covers the manifest's exact stored bytes: nothing is re-encoded to be checked, so an
// agent that encodes manifests differently later (field order, escaping, a new optional field)
// still checks every old signature, and the bytes are authenticated before they are parsed.
// The signature is written before the manifest, which is written last as always: a backup that
// has a manifest has its signature, unless someone removed it (then it is unsigned, and refused
// like any unsigned backup).
//
// The signature object is one line: "hmac-sha256 <key id> <mac>", both hex. The key id (a MAC
// of a constant, not the key) tells a signature made with a key the agent does not have (rotated
// away, or lost) from a wrong one made with a key it has.

const (
	sigAlgorithm = "hmac-sha256"
	// macContext separates these MACs from any other use of the same key.
	macContext   = "hastack backup manifest\x00"
	keyIDContext = "hastack backup manifest key id"
	// MinManifestKeyLen is the shortest key accepted, in bytes of the key file's line.
	MinManifestKeyLen = 32
	maxSignature      = 4 << 10
)

var signatureLine = regexp.MustCompile(`^` + sigAlgorithm + ` ([0-9a-f]{16}) ([0-9a-f]{64})\n?$`)

// ManifestKeys are the keys that sign and check manifests. The first signs; all check, so that a
// key can be rotated: a new one goes first, the old one stays on a later line until the backups
// it signed are gone. A nil *ManifestKeys has no key.
type ManifestKeys struct {
	keys []manifestKey
}

type manifestKey struct {
	id     string
	secret []byte
}

// ParseManifestKeys reads a key file: one key per line (at least MinManifestKeyLen bytes of
// random text, e.g. 64 hex digits), the newest first; blank lines and lines starting with '#'
// are ignored. Surrounding spaces are not part of a key.
func ParseManifestKeys(text []byte) (*ManifestKeys, error) {
	k := &ManifestKeys{}
	seen := map[string]bool{}
	for i, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < MinManifestKeyLen {
			return nil, fmt.Errorf("line %d: a key of %d bytes: use at least %d bytes of random text (openssl rand -hex 32)", i+1, len(line), MinManifestKeyLen)
		}
		key := manifestKey{id: keyID([]byte(line)), secret: []byte(line)}
		if seen[key.id] {
			return nil, fmt.Errorf("line %d: the same key as an earlier line", i+1)
		}
		seen[key.id] = true
		k.keys = append(k.keys, key)
	}
	if len(k.keys) == 0 {
		return nil, errors.New("no key in it: put one line of random text in it (openssl rand -hex 32)")
	}
	return k, nil
}

func keyID(secret []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(keyIDContext))
	return hex.EncodeToString(mac.Sum(nil)[:8])
}

func (k manifestKey) mac(manifest []byte) []byte {
	mac := hmac.New(sha256.New, k.secret)
	mac.Write([]byte(macContext))
	mac.Write(manifest)
	return mac.Sum(nil)
}

// SigningKeyID is the id of the key that signs, or "" without keys.
func (k *ManifestKeys) SigningKeyID() string {
	if k == nil || len(k.keys) == 0 {
		return ""
	}
	return k.keys[0].id
}

// Sign returns the signature object of a manifest's bytes (as stored), made with the first key.
func (k *ManifestKeys) Sign(manifest []byte) []byte {
	key := k.keys[0]
	return fmt.Appendf(nil, "%s %s %x\n", sigAlgorithm, key.id, key.mac(manifest))
}

// AuthStatus says what checking a manifest's signature found.
type AuthStatus string

// The statuses of Authenticity. Only AuthVerified authenticates a backup; a restore accepts
// AuthUnsigned, AuthNoKey and AuthUnknownKey only when told to (--allow-unsigned), and never
// AuthBad.
const (
	AuthVerified   AuthStatus = "verified"    // signed with one of the keys, and the MAC matches
	AuthUnsigned   AuthStatus = "unsigned"    // no signature object
	AuthNoKey      AuthStatus = "no-key"      // signed, but no key was given to check it
	AuthUnknownKey AuthStatus = "unknown-key" // signed with a key that is not among the keys
	AuthBad        AuthStatus = "bad"         // a MAC that does not match its key, or a malformed signature
)

// Authenticity is the result of checking one manifest's signature.
type Authenticity struct {
	Status AuthStatus `json:"status"`
	KeyID  string     `json:"key_id,omitempty"` // the key the signature names
	// Problem says what is wrong with an AuthBad signature.
	Problem string `json:"problem,omitempty"`
	NoKeys  bool   `json:"no_keys,omitempty"` // no key was configured to check it with
}

// Check checks the signature object sig (nil: there is none) of a manifest's stored bytes.
func (k *ManifestKeys) Check(manifest, sig []byte) Authenticity {
	noKeys := k == nil || len(k.keys) == 0
	if sig == nil {
		return Authenticity{Status: AuthUnsigned, NoKeys: noKeys}
	}
	m := signatureLine.FindSubmatch(sig)
	if m == nil {
		return Authenticity{Status: AuthBad, NoKeys: noKeys, Problem: fmt.Sprintf("the signature object is not of the form %q", sigAlgorithm+" <key id> <mac>")}
	}
	id, got := string(m[1]), m[2]
	if noKeys {
		return Authenticity{Status: AuthNoKey, KeyID: id, NoKeys: true}
	}
	for _, key := range k.keys {
		if key.id != id {
			continue
		}
		want := make([]byte, hex.EncodedLen(sha256.Size))
		hex.Encode(want, key.mac(manifest))
		if hmac.Equal(got, want) {
			return Authenticity{Status: AuthVerified, KeyID: id}
		}
		return Authenticity{Status: AuthBad, KeyID: id, Problem: "the MAC does not match the manifest"}
	}
	return Authenticity{Status: AuthUnknownKey, KeyID: id}
}

// ErrUnauthenticated is matched (errors.Is) by every error of Authorize.
var ErrUnauthenticated = errors.New("manifest not authenticated")

// AuthError is a backup that Authorize refused: Auth says why.
type AuthError struct {
	ID   string
	Auth Authenticity
}

func (e *AuthError) Unwrap() error { return ErrUnauthenticated }

func (e *AuthError) Error() string {
	const forgeable = "anyone who can write to the bucket can forge a manifest and its dump, and a restore runs the dump's SQL as root"
	a := e.Auth
	switch a.Status {
	case AuthBad:
		return fmt.Sprintf("backup %s: its manifest's signature is wrong (%s, key id %s): the manifest or its signature was changed after the backup, or forged; "+
			"do not use this backup (--allow-unsigned does not accept a wrong signature, only a missing one)", e.ID, a.Problem, orDash(a.KeyID))
	case AuthNoKey:
		return fmt.Sprintf("backup %s is signed (key id %s), but no manifest key is configured to check it: set backup.manifest_key_file (or --manifest-key FILE) "+
			"to the key file it was signed with; if that key is lost, pass --allow-unsigned with the backup's ID to restore it unchecked (%s)", e.ID, a.KeyID, forgeable)
	case AuthUnknownKey:
		return fmt.Sprintf("backup %s is signed with key id %s, which is not in the manifest key file: it was signed with a key since rotated away (add that key as another line of the file), "+
			"or forged; if the key is lost, pass --allow-unsigned with the backup's ID to restore it unchecked (%s)", e.ID, a.KeyID, forgeable)
	}
	msg := fmt.Sprintf("backup %s's manifest is not signed: %s. Restore a signed backup; or, if you know that this one is genuine "+
		"(taken before manifests were signed), pass --allow-unsigned with its ID", e.ID, forgeable)
	if a.NoKeys {
		msg += "; and set backup.manifest_key_file, so that backups are signed and checked"
	}
	return msg
}

// Authorize decides whether a backup whose manifest checked as a may be restored (or drilled):
// a verified one always; an unsigned one, or one signed with a key not at hand, only when
// allowUnsigned; one with a wrong signature never. A wrong signature is refused even with
// allowUnsigned because it is the one case that shows tampering (or a damaged store), while a
// missing or uncheckable one is what every backup taken before signing, or after losing the key,
// looks like. (Whoever can write to the bucket can also remove a signature: allowUnsigned trusts
// the bucket, and is meant for one backup named by its ID.) An unchecked manifest (a zero
// Authenticity) counts as unsigned.
func Authorize(id string, a Authenticity, allowUnsigned bool) error {
	if a.Status == "" {
		a.Status = AuthUnsigned
	}
	switch a.Status {
	case AuthVerified:
		return nil
	case AuthUnsigned, AuthNoKey, AuthUnknownKey:
		if allowUnsigned {
			return nil
		}
	}
	return &AuthError{ID: id, Auth: a}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
