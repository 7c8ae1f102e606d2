package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateManifestKeyFile(t *testing.T) {
	for _, tc := range []struct {
		file string
		ok   bool
	}{
		{"", true},
		{"/root/hastack/stack/secrets/agent/manifest_key", true},
		{"stack/secrets/agent/manifest_key", false},
		{"./manifest_key", false},
	} {
		c := Default()
		c.Source.URL = "file:///srv/hastack.git"
		c.Backup.ManifestKeyFile = tc.file
		err := c.Validate()
		var fe *FieldError
		switch {
		case tc.ok && err != nil:
			t.Errorf("manifest_key_file %q: %v", tc.file, err)
		case !tc.ok && (!errors.As(err, &fe) || fe.Field != "backup.manifest_key_file" || !strings.Contains(err.Error(), "absolute")):
			t.Errorf("manifest_key_file %q: err = %v, want a FieldError of backup.manifest_key_file", tc.file, err)
		}
	}
}

func TestWarningsManifestKeyFileMode(t *testing.T) {
	key := filepath.Join(t.TempDir(), "manifest_key")
	os.WriteFile(key, []byte("x"), 0o600)
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o400, false}, {0o640, true}, {0o644, true}} {
		if err := os.Chmod(key, tc.mode); err != nil {
			t.Fatal(err)
		}
		c := Default()
		c.Source.URL = "file:///srv/hastack.git"
		c.Backup.ManifestKeyFile = key
		ws := c.Warnings()
		if got := len(ws) == 1 && strings.HasPrefix(ws[0], "backup.manifest_key_file: "); got != tc.warn || !tc.warn && len(ws) != 0 {
			t.Errorf("mode %04o: warnings %q, want a warning: %t", tc.mode, ws, tc.warn)
		}
	}
}

func TestLoadManifestKeyFile(t *testing.T) {
	c, err := LoadFrom(strings.NewReader("source: {url: /srv/hastack.git}\nbackup:\n  manifest_key_file: /srv/hastack/stack/secrets/agent/manifest_key\n"),
		func(string) string { return "" }, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.Backup.ManifestKeyFile != "/srv/hastack/stack/secrets/agent/manifest_key" {
		t.Fatalf("backup.manifest_key_file = %q", c.Backup.ManifestKeyFile)
	}
}
