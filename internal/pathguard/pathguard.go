// Package pathguard proves that paths built from outside input stay under their root: a path
// joined from a name, and a tree's symbolic links resolved the way the kernel will resolve them.
//
// A lexical check of each link alone is not enough: a/b -> .. and a/c -> b/../.. each look
// inside the tree, yet a/c reaches the tree's parent, because b is itself a link. Links lets
// nothing out: every link is followed through the other links of the tree, as the kernel does.
package pathguard

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrEscapes is matched (errors.Is) by every error that says a path or link leaves its root.
var ErrEscapes = errors.New("leaves its root")

// maxHops bounds the links followed for one path, as the kernel's ELOOP does (40 on Linux).
const maxHops = 40

// Join joins root and a relative name from outside input, and proves that the result stays
// under root: name must be relative, and no ".." may climb out. It does not look at the disk.
func Join(root, name string) (string, error) {
	if name == "" || filepath.IsAbs(name) || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("path %q: must be a relative name: %w", name, ErrEscapes)
	}
	p := filepath.Join(root, name)
	if _, ok := Rel(root, p); !ok {
		return "", fmt.Errorf("path %q: %w %s", name, ErrEscapes, root)
	}
	return p, nil
}

// Rel returns p relative to root, and whether p lies under root (or is root), lexically.
func Rel(root, p string) (string, bool) {
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false
	}
	return rel, true
}

// Links checks that every symbolic link of a tree resolves inside the tree. links maps each
// link's slash-separated path relative to the tree to its target. mounts are paths of the
// tree that lead elsewhere (links made later into another directory): entering one is fine,
// climbing out of one with ".." is not, since ".." then means the other directory's parent.
func Links(links map[string]string, mounts ...string) error {
	mounted := map[string]bool{}
	inTree := maps.Clone(links)
	for _, m := range mounts {
		mounted[path.Clean(m)] = true
		delete(inTree, path.Clean(m)) // the mount's own link points elsewhere by design
	}
	for rel := range inTree {
		if _, err := resolve(inTree, mounted, rel); err != nil {
			return err
		}
	}
	return nil
}

// resolve follows the link at rel through every link of the tree and returns the tree path it
// names in the end.
func resolve(links map[string]string, mounted map[string]bool, rel string) (string, error) {
	escape := func(why string) error {
		return fmt.Errorf("symlink %s -> %s: %s: %w the exported tree", rel, links[rel], why, ErrEscapes)
	}
	target := links[rel]
	if target == "" || path.IsAbs(target) || strings.ContainsRune(target, 0) {
		return "", escape("an absolute or empty target")
	}
	var at []string // the resolved position, one tree path element each
	if d := path.Dir(rel); d != "." {
		at = strings.Split(d, "/")
	}
	pending := strings.Split(target, "/")
	hops := 1
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(at) == 0 {
				return "", escape("climbs above the tree's root")
			}
			if mounted[strings.Join(at, "/")] {
				return "", escape("climbs out of " + strings.Join(at, "/") + ", which is kept outside the tree")
			}
			at = at[:len(at)-1]
			continue
		}
		at = append(at, c)
		next, isLink := links[strings.Join(at, "/")]
		if !isLink {
			continue
		}
		if hops++; hops > maxHops {
			return "", escape("too many levels of links")
		}
		if next == "" || path.IsAbs(next) {
			return "", escape("passes through a link with an absolute target")
		}
		at = at[:len(at)-1]
		pending = append(strings.Split(next, "/"), pending...)
	}
	return strings.Join(at, "/"), nil
}

// TreeLinks reads every symbolic link under root on disk, keyed by its slash-separated path
// relative to root, for Links.
func TreeLinks(root string) (map[string]string, error) {
	links := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		links[filepath.ToSlash(rel)] = filepath.ToSlash(target)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read links under %s: %w", root, err)
	}
	return links, nil
}
