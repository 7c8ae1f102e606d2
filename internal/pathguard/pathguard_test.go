package pathguard

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestJoin(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"0123456789abcdef0123456789abcdef01234567", true},
		{"a/b", true},
		{"a/../b", true},
		{"", false},
		{"..", false},
		{"../x", false},
		{"a/../../x", false},
		{"/etc", false},
		{"x\x00y", false},
	} {
		got, err := Join("/work/releases", tc.name)
		if tc.ok != (err == nil) {
			t.Errorf("Join(%q) = %q, %v; want ok=%v", tc.name, got, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrEscapes) {
			t.Errorf("Join(%q): %v does not match ErrEscapes", tc.name, err)
		}
	}
}

func TestLinks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		links  map[string]string
		mounts []string
		ok     bool
	}{
		{"none", nil, nil, true},
		{"sibling", map[string]string{"a/l": "../b"}, nil, true},
		{"to the root", map[string]string{"a/b": ".."}, nil, true},
		{"dot", map[string]string{"l": "."}, nil, true},
		{"chain inside", map[string]string{"a": "b", "b": "c/d", "c/e": "../a"}, nil, true},
		{"above the root", map[string]string{"l": "../x"}, nil, false},
		{"absolute", map[string]string{"l": "/etc"}, nil, false},
		{"empty", map[string]string{"l": ""}, nil, false},
		// Each passes a lexical check alone; together a/c reaches the tree's parent.
		{"two links reach out", map[string]string{"a/b": "..", "a/c": "b/../.."}, nil, false},
		{"through a link to the root, up", map[string]string{"r": ".", "a/up": "../r/../.."}, nil, false},
		{"chain out", map[string]string{"x": "y/..", "y": "z", "z": ".."}, nil, false},
		{"loop", map[string]string{"a": "b", "b": "a"}, nil, false},
		{"self", map[string]string{"a": "a/x"}, nil, false},
		{"into a mount", map[string]string{"stack/k": "secrets/key"}, []string{"stack/secrets"}, true},
		{"out of a mount", map[string]string{"stack/k": "secrets/.."}, []string{"stack/secrets"}, false},
		{"out of a mount, deeper first", map[string]string{"stack/k": "secrets/a/../../x"}, []string{"stack/secrets"}, false},
		{"the mount's own link is not checked", map[string]string{"stack/secrets": "/srv/shared/secrets"}, []string{"stack/secrets"}, true},
	} {
		err := Links(tc.links, tc.mounts...)
		if tc.ok != (err == nil) {
			t.Errorf("%s: Links(%v) = %v, want ok=%v", tc.name, tc.links, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrEscapes) {
			t.Errorf("%s: %v does not match ErrEscapes", tc.name, err)
		}
	}
}

// TestLinksAgreesWithTheKernel builds trees on disk and compares Links with where the kernel
// really resolves each link.
func TestLinksAgreesWithTheKernel(t *testing.T) {
	for _, links := range []map[string]string{
		{"a/b": "..", "a/c": "b/../.."},
		{"a/b": "..", "a/c": "b/a"},
		{"x": "y/..", "y": "z", "z": "."},
		{"x": "y/..", "y": "z", "z": ".."},
		{"d/e/f": "../../g", "g": "d/e"},
	} {
		outer := t.TempDir()
		root := filepath.Join(outer, "tree")
		for rel, target := range links {
			p := filepath.Join(root, rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}
		read, err := TreeLinks(root)
		if err != nil {
			t.Fatal(err)
		}
		if len(read) != len(links) {
			t.Fatalf("TreeLinks read %v, want %v", read, links)
		}
		inside := true
		for rel := range links {
			real, err := filepath.EvalSymlinks(filepath.Join(root, rel))
			if err != nil {
				continue // dangling: it names nothing outside either
			}
			if r, _ := filepath.Rel(root, real); r == ".." || len(r) > 2 && r[:3] == "../" {
				inside = false
			}
		}
		err = Links(read)
		if !inside && err == nil {
			t.Errorf("%v: the kernel resolves a link outside the tree, Links accepts it", links)
		}
		if inside && err != nil {
			t.Errorf("%v: every link resolves inside, Links refuses: %v", links, err)
		}
	}
}

func TestRel(t *testing.T) {
	for _, tc := range []struct {
		p, rel string
		ok     bool
	}{
		{"/work/current", ".", true},
		{"/work/current/stack/x", "stack/x", true},
		{"/work", "", false},
		{"/work/currentx", "", false},
		{"/proc/1", "", false},
	} {
		rel, ok := Rel("/work/current", tc.p)
		if rel != tc.rel || ok != tc.ok {
			t.Errorf("Rel(/work/current, %s) = %q %v, want %q %v", tc.p, rel, ok, tc.rel, tc.ok)
		}
	}
}
