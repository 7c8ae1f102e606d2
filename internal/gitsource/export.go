package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/hastack/hastack/internal/pathguard"
)

// Export writes the tree of commit at subpath ("" or "." for the whole tree)
// as plain files into dst, which must not exist yet.
//
// Regular files get mode 0644 or 0755 as git records them, symlinks are
// made as symlinks (a tree whose links, followed through each other, lead out
// of dst is refused with ErrUnsafeTree, since the export would depend on what
// lies outside it), and
// submodules become empty directories, as in a checkout without submodules.
// Everything is written into dst+".tmp-<random>" in dst's parent, synced,
// then renamed to dst: a crash never leaves a half-written dst (it may leave
// a .tmp- directory, which the caller may delete). The parent of dst is
// created if missing.
func (s *Source) Export(ctx context.Context, commit, subpath, dst string) error {
	release, err := s.acquire(ctx)
	if err != nil {
		return fmt.Errorf("export %s: %w", commit, err)
	}
	defer release()

	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("export %s to %s: the destination already exists: remove it or export elsewhere", shortHash(commit), dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("export %s to %s: %w", shortHash(commit), dst, err)
	}
	repo, err := s.openMirror()
	if err != nil {
		return fmt.Errorf("export %s: %w", shortHash(commit), err)
	}
	tree, err := s.subtree(repo, commit, subpath)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}

	parent := filepath.Dir(dst)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("export %s: create parent directory: %w", shortHash(commit), err)
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(dst)+".tmp-*")
	if err != nil {
		return fmt.Errorf("export %s: create temporary directory: %w", shortHash(commit), err)
	}
	renamed := false
	defer func() {
		if !renamed {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("export %s: %w", shortHash(commit), err)
	}

	w := &exporter{repo: repo, root: tmp, links: map[string]string{}}
	if err := walkTree(ctx, repo, tree, "", w.visit); err != nil {
		return fmt.Errorf("export %s of commit %s: %w", displaySubpath(subpath), shortHash(commit), err)
	}
	if err := checkLinks(w.links); err != nil {
		return fmt.Errorf("export %s of commit %s: %w", displaySubpath(subpath), shortHash(commit), err)
	}
	for i := len(w.dirs) - 1; i >= 0; i-- { // deepest first, then the root
		if err := syncPath(w.dirs[i]); err != nil {
			return fmt.Errorf("export %s: sync: %w", shortHash(commit), err)
		}
	}
	if err := syncPath(tmp); err != nil {
		return fmt.Errorf("export %s: sync: %w", shortHash(commit), err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("export %s: move into place: %w", shortHash(commit), err)
	}
	renamed = true
	if err := syncPath(parent); err != nil {
		return fmt.Errorf("export %s: sync %s: %w", shortHash(commit), parent, err)
	}
	return nil
}

// exporter writes tree entries under root.
type exporter struct {
	repo  *git.Repository
	root  string
	dirs  []string          // directories made, to sync at the end
	links map[string]string // symlinks made, to check together at the end
}

func (w *exporter) visit(rel string, e object.TreeEntry) error {
	p := filepath.Join(w.root, filepath.FromSlash(rel))
	switch e.Mode {
	case filemode.Dir, filemode.Submodule:
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(p, 0o755); err != nil {
			return err
		}
		w.dirs = append(w.dirs, p)
		return nil
	case filemode.Symlink:
		target, err := readBlob(w.repo, e)
		if err != nil {
			return err
		}
		w.links[rel] = string(target)
		return os.Symlink(string(target), p)
	case filemode.Regular, filemode.Deprecated, filemode.Executable:
		return w.writeFile(p, e)
	default:
		return fmt.Errorf("%s: unsupported git file mode %s", rel, e.Mode)
	}
}

func (w *exporter) writeFile(p string, e object.TreeEntry) (err error) {
	mode := os.FileMode(0o644)
	if e.Mode == filemode.Executable {
		mode = 0o755
	}
	blob, err := w.repo.BlobObject(e.Hash)
	if err != nil {
		return fmt.Errorf("read blob %s: %w", e.Hash, err)
	}
	r, err := blob.Reader()
	if err != nil {
		return fmt.Errorf("read blob %s: %w", e.Hash, err)
	}
	defer r.Close()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Chmod(mode); err != nil { // whatever the umask
		return err
	}
	return f.Sync()
}

// Files returns the content of every file under subpath of commit, keyed by
// slash-separated path relative to subpath. A symlink's value is its target
// (symlinks that leave subpath are refused, as in Export); submodules are
// left out. File modes are not part of the result: compare TreeHash values
// to notice any change, modes included.
func (s *Source) Files(ctx context.Context, commit, subpath string) (map[string][]byte, error) {
	release, err := s.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("read files of %s: %w", commit, err)
	}
	defer release()
	repo, err := s.openMirror()
	if err != nil {
		return nil, fmt.Errorf("read files of %s: %w", shortHash(commit), err)
	}
	tree, err := s.subtree(repo, commit, subpath)
	if err != nil {
		return nil, fmt.Errorf("read files: %w", err)
	}
	files, links := map[string][]byte{}, map[string]string{}
	err = walkTree(ctx, repo, tree, "", func(rel string, e object.TreeEntry) error {
		switch e.Mode {
		case filemode.Dir, filemode.Submodule:
			return nil
		case filemode.Symlink, filemode.Regular, filemode.Deprecated, filemode.Executable:
			b, err := readBlob(repo, e)
			if err != nil {
				return err
			}
			if e.Mode == filemode.Symlink {
				links[rel] = string(b)
			}
			files[rel] = b
			return nil
		default:
			return fmt.Errorf("%s: unsupported git file mode %s", rel, e.Mode)
		}
	})
	if err == nil {
		err = checkLinks(links)
	}
	if err != nil {
		return nil, fmt.Errorf("read files of %s in commit %s: %w", displaySubpath(subpath), shortHash(commit), err)
	}
	return files, nil
}

// TreeHash returns the git tree id of subpath in commit. Two commits whose
// subpath has the same tree id export exactly the same files, modes and
// symlinks: a cheap way to tell whether a new commit changes the stack.
func (s *Source) TreeHash(ctx context.Context, commit, subpath string) (string, error) {
	release, err := s.acquire(ctx)
	if err != nil {
		return "", fmt.Errorf("read tree of %s: %w", commit, err)
	}
	defer release()
	repo, err := s.openMirror()
	if err != nil {
		return "", fmt.Errorf("read tree of %s: %w", shortHash(commit), err)
	}
	tree, err := s.subtree(repo, commit, subpath)
	if err != nil {
		return "", fmt.Errorf("read tree: %w", err)
	}
	return tree.Hash.String(), nil
}

// subtree finds the tree at subpath of commit.
func (s *Source) subtree(repo *git.Repository, commit, subpath string) (*object.Tree, error) {
	c, err := s.parseCommit(repo, commit)
	if err != nil {
		return nil, err
	}
	root, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("read tree of commit %s: %w", shortHash(commit), err)
	}
	sub, err := cleanSubpath(subpath)
	if err != nil {
		return nil, err
	}
	if sub == "" {
		return root, nil
	}
	entry, err := root.FindEntry(sub)
	if err != nil {
		return nil, fmt.Errorf("subpath %s %w in commit %s: check the subpath setting or the commit", sub, ErrNotFound, shortHash(commit))
	}
	if entry.Mode != filemode.Dir {
		return nil, fmt.Errorf("subpath %s is a file, not a directory, in commit %s: check the subpath setting", sub, shortHash(commit))
	}
	tree, err := repo.TreeObject(entry.Hash)
	if err != nil {
		return nil, fmt.Errorf("read tree %s of commit %s: %w", sub, shortHash(commit), err)
	}
	return tree, nil
}

// cleanSubpath turns "stack/", "./stack" or "stack" into "stack", and ""
// or "." into "". It refuses paths that leave the repository.
func cleanSubpath(subpath string) (string, error) {
	p := filepath.ToSlash(subpath)
	if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("subpath %s must be relative to the repository root", subpath)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("subpath %s must not contain ..", subpath)
		}
	}
	if p = path.Clean(p); p == "." {
		return "", nil
	}
	return p, nil
}

// walkTree calls fn for every entry under tree, parents before children,
// with its slash-separated path relative to tree. It refuses entry names
// that could leave the tree.
func walkTree(ctx context.Context, repo *git.Repository, tree *object.Tree, prefix string, fn func(rel string, e object.TreeEntry) error) error {
	for _, e := range tree.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00") {
			return fmt.Errorf("%w: entry name %q in %q", ErrUnsafeTree, e.Name, prefix)
		}
		rel := path.Join(prefix, e.Name)
		if err := fn(rel, e); err != nil {
			return err
		}
		if e.Mode == filemode.Dir {
			sub, err := repo.TreeObject(e.Hash)
			if err != nil {
				return fmt.Errorf("read tree %s: %w", rel, err)
			}
			if err := walkTree(ctx, repo, sub, rel, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkLinks refuses a tree whose symlinks, followed through each other as the kernel will,
// lead out of the exported directory: the export would then depend on what lies outside it.
func checkLinks(links map[string]string) error {
	if err := pathguard.Links(links); err != nil {
		return fmt.Errorf("%w: %w: use relative targets that stay inside it", ErrUnsafeTree, err)
	}
	return nil
}

// readBlob reads the whole content of a blob entry.
func readBlob(repo *git.Repository, e object.TreeEntry) ([]byte, error) {
	blob, err := repo.BlobObject(e.Hash)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", e.Hash, err)
	}
	r, err := blob.Reader()
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", e.Hash, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", e.Hash, err)
	}
	return b, nil
}

// syncPath fsyncs a file or directory.
func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func shortHash(h string) string {
	if len(h) > 7 {
		return h[:7]
	}
	return h
}

func displaySubpath(subpath string) string {
	if p, err := cleanSubpath(subpath); err == nil && p != "" {
		return "subpath " + p
	}
	return "the tree"
}
