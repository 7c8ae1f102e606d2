package backup

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

const (
	testKey  = "6f1c2a9e0b7d4c3f8a5e2d1b0c9f8e7d6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"
	otherKey = "0000111122223333444455556666777788889999aaaabbbbccccddddeeeeffff"
)

func mustKeys(t *testing.T, text string) *ManifestKeys {
	t.Helper()
	k, err := ParseManifestKeys([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseManifestKeys(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		keys       int    // want this many keys, or
		err        string // an error containing this
	}{
		{"one key", testKey, 1, ""},
		{"one key and a newline", testKey + "\r\n", 1, ""},
		{"rotated: new first, old kept", "# new, since 2026-12\n" + otherKey + "\n\n  " + testKey + "  \n", 2, ""},
		{"empty", "", 0, "no key in it"},
		{"comments only", "# nothing\n\n", 0, "no key in it"},
		{"short", "s3cret", 0, "line 1: a key of 6 bytes: use at least 32"},
		{"a short second line", testKey + "\nshort\n", 0, "line 2"},
		{"the same key twice", testKey + "\n" + testKey, 0, "line 2: the same key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseManifestKeys([]byte(tc.text))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(k.keys) != tc.keys {
				t.Fatalf("%d keys, want %d", len(k.keys), tc.keys)
			}
		})
	}
	// Spaces around a key are not part of it: the same key, however the file was written.
	if a, b := mustKeys(t, testKey), mustKeys(t, " "+testKey+"\n"); a.SigningKeyID() != b.SigningKeyID() {
		t.Error("surrounding spaces changed the key")
	}
}

func TestSignAndCheck(t *testing.T) {
	manifest, err := EncodeManifest(validManifest())
	if err != nil {
		t.Fatal(err)
	}
	keys := mustKeys(t, testKey)
	sig := keys.Sign(manifest)
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	for _, tc := range []struct {
		name           string
		keys           *ManifestKeys
		manifest, sig  []byte
		status         AuthStatus
		keyID, problem string
	}{
		{"verified", keys, manifest, sig, AuthVerified, keys.SigningKeyID(), ""},
		{"manifest changed", keys, flip(manifest, 100), sig, AuthBad, keys.SigningKeyID(), "does not match"},
		{"manifest with a byte added", keys, append(bytes.Clone(manifest), ' '), sig, AuthBad, keys.SigningKeyID(), "does not match"},
		{"MAC changed", keys, manifest, flip(sig, len(sig)-2), AuthBad, keys.SigningKeyID(), "does not match"},
		{"upper case", keys, manifest, []byte(strings.ToUpper(string(sig[:29])) + string(sig[29:])), AuthBad, "", "not of the form"},
		{"malformed", keys, manifest, []byte("hmac-sha256 x y\n"), AuthBad, "", "not of the form"},
		{"another algorithm", keys, manifest, bytes.Replace(sig, []byte("hmac-sha256"), []byte("hmac-sha1"), 1), AuthBad, "", "not of the form"},
		{"empty signature object", keys, manifest, []byte{}, AuthBad, "", "not of the form"},
		{"unsigned", keys, manifest, nil, AuthUnsigned, "", ""},
		{"unsigned, no keys", nil, manifest, nil, AuthUnsigned, "", ""},
		{"signed, no keys", nil, manifest, sig, AuthNoKey, keys.SigningKeyID(), ""},
		{"signed with another key", mustKeys(t, otherKey), manifest, sig, AuthUnknownKey, keys.SigningKeyID(), ""},
		{"after a rotation, the old key still checks", mustKeys(t, otherKey+"\n"+testKey), manifest, sig, AuthVerified, keys.SigningKeyID(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.keys.Check(tc.manifest, tc.sig)
			if a.Status != tc.status || a.KeyID != tc.keyID || !strings.Contains(a.Problem, tc.problem) || (tc.problem == "") != (a.Problem == "") {
				t.Fatalf("Check = %+v, want status %s, key id %q, problem %q", a, tc.status, tc.keyID, tc.problem)
			}
			if a.NoKeys != (tc.keys == nil) {
				t.Fatalf("NoKeys = %t with keys %v", a.NoKeys, tc.keys)
			}
		})
	}
	if rotated := mustKeys(t, otherKey+"\n"+testKey); rotated.SigningKeyID() == keys.SigningKeyID() {
		t.Error("after a rotation the new key (the first line) must sign")
	}
}

func TestAuthorize(t *testing.T) {
	const id = "20261124T030000Z"
	for _, tc := range []struct {
		auth          Authenticity
		allowUnsigned bool
		want          string // "" accepted, else a part of the refusal
	}{
		{Authenticity{Status: AuthVerified}, false, ""},
		{Authenticity{Status: AuthVerified}, true, ""},
		{Authenticity{Status: AuthUnsigned}, false, "not signed"},
		{Authenticity{Status: AuthUnsigned, NoKeys: true}, false, "set backup.manifest_key_file"},
		{Authenticity{Status: AuthUnsigned}, true, ""},
		{Authenticity{}, false, "not signed"}, // never checked
		{Authenticity{}, true, ""},
		{Authenticity{Status: AuthNoKey, KeyID: "abcd"}, false, "no manifest key is configured"},
		{Authenticity{Status: AuthNoKey, KeyID: "abcd"}, true, ""},
		{Authenticity{Status: AuthUnknownKey, KeyID: "abcd"}, false, "key id abcd, which is not in the manifest key file"},
		{Authenticity{Status: AuthUnknownKey, KeyID: "abcd"}, true, ""},
		{Authenticity{Status: AuthBad, KeyID: "abcd", Problem: "the MAC does not match the manifest"}, false, "signature is wrong"},
		{Authenticity{Status: AuthBad, KeyID: "abcd", Problem: "the MAC does not match the manifest"}, true, "does not accept a wrong signature"},
		{Authenticity{Status: "from the future"}, true, "not signed"},
	} {
		err := Authorize(id, tc.auth, tc.allowUnsigned)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Authorize(%+v, allow %t) = %v, want accepted", tc.auth, tc.allowUnsigned, err)
		case tc.want != "" && (!errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), id)):
			t.Errorf("Authorize(%+v, allow %t) = %v, want ErrUnauthenticated naming %s and saying %q", tc.auth, tc.allowUnsigned, err, id, tc.want)
		}
	}
	if err := Authorize(id, Authenticity{Status: AuthUnsigned}, false); !strings.Contains(err.Error(), "--allow-unsigned") {
		t.Errorf("the refusal of an unsigned backup must say how to go on: %v", err)
	}
}

// A backup taken with keys is signed in the store, and List then Authenticate check it against
// the bytes List read; a changed manifest or a removed signature is found.
func TestSignedBackupInTheStore(t *testing.T) {
	keys := mustKeys(t, testKey)
	st := &memStore{}
	m, err := Run(context.Background(), Options{Replica: "r", Primary: "p", PasswordFile: "/p", Keys: keys},
		&fakeDB{replicaReady: true, dump: realHeader + sampleDump + realTrailer}, st)
	if err != nil {
		t.Fatal(err)
	}
	catalog := func(change func(c memCatalog)) memCatalog {
		c := memCatalog{m.DumpKey: st.data.Bytes()}
		for k, v := range st.objects {
			c[k] = bytes.Clone(v)
		}
		change(c)
		return c
	}
	for _, tc := range []struct {
		name   string
		keys   *ManifestKeys
		change func(c memCatalog)
		want   AuthStatus
	}{
		{"as written", keys, func(memCatalog) {}, AuthVerified},
		{"rows changed", keys, func(c memCatalog) {
			c[ManifestKey(m.ID)] = bytes.Replace(c[ManifestKey(m.ID)], []byte(`"rows": 6`), []byte(`"rows": 7`), 1)
		}, AuthBad},
		{"signature removed", keys, func(c memCatalog) { delete(c, SignatureKey(m.ID)) }, AuthUnsigned},
		{"checked without keys", nil, func(memCatalog) {}, AuthNoKey},
		{"checked with another key", mustKeys(t, otherKey), func(memCatalog) {}, AuthUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := catalog(tc.change)
			entries, err := List(context.Background(), c)
			if err != nil || len(entries) != 1 || !entries[0].Complete {
				t.Fatalf("List: %v, %+v", err, entries)
			}
			if err := Authenticate(context.Background(), c, tc.keys, &entries[0]); err != nil {
				t.Fatal(err)
			}
			if got := entries[0].Auth.Status; got != tc.want {
				t.Fatalf("Auth %+v, want %s", entries[0].Auth, tc.want)
			}
		})
	}
	if _, ok := st.objects[SignatureKey(m.ID)]; !ok {
		t.Fatal("no signature object")
	}
	unsigned := &memStore{}
	if _, err := Run(context.Background(), Options{Replica: "r", Primary: "p", PasswordFile: "/p"},
		&fakeDB{replicaReady: true, dump: realHeader + sampleDump + realTrailer}, unsigned); err != nil {
		t.Fatal(err)
	}
	for k := range unsigned.objects {
		if strings.HasSuffix(k, ".sig") {
			t.Fatalf("a backup without keys wrote a signature %s", k)
		}
	}
}

func TestAuthenticateNeedsAnEntryOfList(t *testing.T) {
	e := Entry{ID: "20261124T030000Z", Complete: true, Manifest: &Manifest{}}
	if err := Authenticate(context.Background(), memCatalog{}, nil, &e); err == nil {
		t.Fatal("Authenticate checked a manifest whose bytes it does not have")
	}
}
