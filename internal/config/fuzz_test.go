package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fuzzSecret is what every secret file holds in FuzzLoad: it must never show in String.
const fuzzSecret = "FUZZ-SECRET-7f3a9c"

// FuzzLoad: loading never panics; a file that decodes either loads into a configuration that
// validates or fails with a *FieldError; every error is the configuration's; the secrets never
// show in String; and a file without ${ loads the same whatever the environment holds (a $ is
// never dropped, no variable reaches a value it was not asked into).
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "value")
	}
	f.Add([]byte("source:\n  url: file:///srv/a.git\nstate_dir: ${X}\n"), "/s\nhistory: 999")
	f.Add([]byte("source: {url: '${X}', ref: $${X}}\n"), "file:///srv/a.git")

	readFile := func(string) ([]byte, error) { return []byte(fuzzSecret + "\n"), nil }
	f.Fuzz(func(t *testing.T, data []byte, value string) {
		// The variable's value for every name but the agent's own, which are overrides.
		env := func(name string) string {
			if strings.HasPrefix(name, "HASTACK_AGENT_") {
				return ""
			}
			return value
		}
		c, err := LoadFrom(bytes.NewReader(data), env, readFile)

		d := Default()
		decodeErr := decode(&d, bytes.NewReader(data), env)
		switch {
		case err == nil && decodeErr != nil:
			t.Fatalf("loaded, but the file does not decode: %v", decodeErr)
		case err == nil:
			if verr := c.Validate(); verr != nil {
				t.Fatalf("loaded a configuration that does not validate: %v", verr)
			}
			if !strings.Contains(value, fuzzSecret) && !bytes.Contains(data, []byte(fuzzSecret)) &&
				strings.Contains(c.String(), fuzzSecret) {
				t.Fatalf("String shows a secret:\n%s", c)
			}
		case decodeErr == nil:
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("a file that decodes fails with %v (%T), not a *FieldError", err, err)
			}
		}
		if err != nil && !strings.HasPrefix(err.Error(), "config: ") {
			t.Fatalf("error %q does not say it is the configuration's", err)
		}

		if bytes.Contains(data, []byte("${")) {
			return
		}
		none := func(string) string { return "" }
		c2, err2 := LoadFrom(bytes.NewReader(data), none, readFile)
		if (err == nil) != (err2 == nil) || err == nil && !reflect.DeepEqual(c, c2) {
			t.Fatalf("without ${ the environment matters: %v / %v\n%+v\n%+v", err, err2, c, c2)
		}
	})
}

// FuzzExpand: expand never panics; text without ${ is returned as it is; a variable's value
// is inserted as it is; and any text survives being written with each ${ as $${.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{"", "$", "$$", "${A}", "$${A}", "$$${A}", "a${A}b${B}", "${A", "${A:-x}", "${${", "}{$"} {
		f.Add(s, "value\nwith: newline")
	}
	f.Fuzz(func(t *testing.T, s, value string) {
		env := func(string) string { return value }
		got, err := expand(s, env)
		if !strings.Contains(s, "${") && (err != nil || got != s) {
			t.Fatalf("expand(%q) = %q, %v: text without ${ changed", s, got, err)
		}
		if got, err := expand("<${NAME}>", env); err != nil || got != "<"+value+">" {
			t.Fatalf("expand(<${NAME}>) = %q, %v; want <%s>", got, err, value)
		}
		escaped := strings.ReplaceAll(s, "${", "$${")
		if got, err := expand(escaped, env); err != nil || got != s {
			t.Fatalf("expand(%q) = %q, %v; want the literal %q", escaped, got, err, s)
		}
	})
}
