package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bad source setting is a configuration error wherever it is judged: exit 3 with the
// setting's name, for `agent run` as for any command that loads the configuration.
func TestBadSourceSettingExitsWithTheConfigCode(t *testing.T) {
	for _, tc := range []struct{ name, source, field string }{
		{"https with an ssh key", "  url: https://git.example.com/r.git\n  ssh_key_file: /k\n", "source.ssh_key_file"},
		{"password in the URL", "  url: https://u:hunter2@git.example.com/r.git\n", "source.url"},
		{"relative path", "  url: ./repo\n", "source.url"},
		{"unsupported scheme", "  url: ftp://git.example.com/r.git\n", "source.url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "agent.yml")
			if err := os.WriteFile(cfg, []byte("source:\n"+tc.source), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), []string{"run", "--config", cfg}, &stdout, &stderr); code != exitConfig {
				t.Fatalf("exit %d, want %d (configuration); stderr %q", code, exitConfig, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.field) || strings.Contains(stderr.String(), "hunter2") {
				t.Fatalf("stderr %q: want the field %s named and no password", stderr.String(), tc.field)
			}
		})
	}
}
