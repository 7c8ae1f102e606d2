package pathguard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLinks builds the fuzzer's links on disk and checks that whatever Links accepts, the
// kernel resolves inside the tree. Input: "path=target" pairs separated by ";".
func FuzzLinks(f *testing.F) {
	for _, seed := range []string{
		"a/b=..;a/c=b/../..",
		"x=y/..;y=z;z=.",
		"d/e/f=../../g;g=d/e",
		"l=../x",
		"a=b;b=a",
		"s=.;t=s/s/s/..",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		links := parseSpec(spec)
		if len(links) == 0 {
			return
		}
		root := filepath.Join(t.TempDir(), "tree")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		for rel, target := range links {
			p := filepath.Join(root, rel)
			if os.MkdirAll(filepath.Dir(p), 0o755) != nil || os.Symlink(target, p) != nil {
				return // a parent is itself a link or a file: not a tree git can hold
			}
		}
		onDisk, err := TreeLinks(root)
		if err != nil {
			return
		}
		if Links(onDisk) != nil {
			return
		}
		for rel := range onDisk {
			real, err := filepath.EvalSymlinks(filepath.Join(root, rel))
			if err != nil {
				continue
			}
			if r, err := filepath.Rel(root, real); err != nil || r == ".." || strings.HasPrefix(r, "../") {
				t.Fatalf("Links accepted %v, but %s resolves to %s, outside the tree", onDisk, rel, real)
			}
		}
	})
}

// parseSpec turns "a/b=..;c=d" into links with short, plain path elements.
func parseSpec(spec string) map[string]string {
	links := map[string]string{}
	for _, pair := range strings.Split(spec, ";") {
		rel, target, ok := strings.Cut(pair, "=")
		if !ok || len(links) >= 8 || !plain(rel, false) || !plain(target, true) {
			continue
		}
		links[filepath.Clean(rel)] = target
	}
	return links
}

func plain(p string, dots bool) bool {
	if p == "" || len(p) > 40 || strings.HasPrefix(p, "/") {
		return false
	}
	for _, part := range strings.Split(p, "/") {
		if part == "." || part == ".." {
			if !dots {
				return false
			}
			continue
		}
		if part == "" || strings.Trim(part, "abcdefgxyz") != "" {
			return false
		}
	}
	return true
}
