package sync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hastack/hastack/internal/compose"
)

// A release is one commit's tree in WorkDir/<commit>, with the persistent paths linked into it
// and a digest override written beside its compose files; WorkDir/current points at the one
// that is applied.

// overrideName is the compose override the agent writes into each release: content digests.
const overrideName = ".hastack-agent.yml"

func (r *Reconciler) projectDir() string {
	return filepath.Join(r.opts.WorkDir, "current", r.opts.Subpath)
}

// stackOf opens commit's compose project (its files, with the digest override when written)
// at the stable project directory.
func (r *Reconciler) stackOf(commit string, withOverride bool) Stack {
	dir := filepath.Join(r.opts.WorkDir, commit, r.opts.Subpath)
	files := make([]string, 0, len(r.opts.ComposeFiles)+1)
	for _, f := range r.opts.ComposeFiles {
		files = append(files, filepath.Join(dir, f))
	}
	if withOverride {
		files = append(files, filepath.Join(dir, overrideName))
	}
	return r.newStack(r.projectDir(), files)
}

// prepare exports commit into WorkDir/<commit> (once), links the persistent paths into it and
// writes its digest override, and returns its compose project.
func (r *Reconciler) prepare(ctx context.Context, commit string) (Stack, error) {
	root := filepath.Join(r.opts.WorkDir, commit)
	if _, err := os.Stat(root); os.IsNotExist(err) {
		if err := os.MkdirAll(r.opts.WorkDir, 0o755); err != nil {
			return nil, fmt.Errorf("create work dir: %w", err)
		}
		if err := r.src.Export(ctx, commit, root); err != nil {
			return nil, fmt.Errorf("export %s: %w", short(commit), err)
		}
	}
	dir := filepath.Join(root, r.opts.Subpath)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("commit %s has no %s directory", short(commit), r.opts.Subpath)
	}
	shared := r.opts.SharedDir
	if shared == "" {
		shared = filepath.Join(r.opts.WorkDir, "shared")
	}
	if err := linkPersistent(dir, shared, r.opts.Persistent); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(filepath.Join(r.opts.WorkDir, "current")); os.IsNotExist(err) {
		// The first release: Compose needs the project directory to exist.
		if err := r.linkCurrent(commit); err != nil {
			return nil, err
		}
	}
	services, err := r.stackOf(commit, false).Services(ctx)
	if err != nil {
		return nil, err
	}
	// Compose reports paths under the stable current/ directory; the files to digest are this
	// release's copies, except the persistent paths (generated secrets, certificates): decided
	// by name, since they may not exist yet when a release is first prepared.
	current := filepath.Join(r.opts.WorkDir, "current")
	resolve := func(p string) string {
		rel, err := filepath.Rel(current, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "" // a host path such as /proc
		}
		if inStack, err := filepath.Rel(r.opts.Subpath, rel); err == nil && !strings.HasPrefix(inStack, "..") {
			for _, pp := range r.opts.Persistent {
				if inStack == pp || strings.HasPrefix(inStack, pp+"/") {
					return ""
				}
			}
		}
		return filepath.Join(root, rel)
	}
	if err := compose.WriteDigestOverride(filepath.Join(dir, overrideName), services, resolve); err != nil {
		return nil, fmt.Errorf("digest release %s: %w", short(commit), err)
	}
	return r.stackOf(commit, true), nil
}

// linkPersistent replaces each persistent path of a release with a symlink into shared, so
// generated secrets, certificates and .env survive from one release to the next. The first
// release seeds shared with what it carries there (e.g. a .gitignore).
func linkPersistent(dir, shared string, paths []string) error {
	for _, p := range paths {
		inRelease, inShared := filepath.Join(dir, p), filepath.Join(shared, p)
		if fi, err := os.Lstat(inRelease); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			continue
		}
		if _, err := os.Stat(inShared); os.IsNotExist(err) {
			if err := os.MkdirAll(filepath.Dir(inShared), 0o755); err != nil {
				return fmt.Errorf("persistent %s: %w", p, err)
			}
			if _, err := os.Stat(inRelease); err == nil {
				if err := os.Rename(inRelease, inShared); err != nil {
					return fmt.Errorf("persistent %s: %w", p, err)
				}
			} else if !strings.HasPrefix(filepath.Base(p), ".") {
				if err := os.MkdirAll(inShared, 0o700); err != nil {
					return fmt.Errorf("persistent %s: %w", p, err)
				}
			} else {
				continue // a file such as .env that nobody made yet
			}
		}
		if err := os.RemoveAll(inRelease); err != nil {
			return fmt.Errorf("persistent %s: %w", p, err)
		}
		if err := os.MkdirAll(filepath.Dir(inRelease), 0o755); err != nil {
			return fmt.Errorf("persistent %s: %w", p, err)
		}
		if err := os.Symlink(inShared, inRelease); err != nil {
			return fmt.Errorf("persistent %s: %w", p, err)
		}
	}
	return nil
}

// linkCurrent points WorkDir/current at commit's release, atomically.
func (r *Reconciler) linkCurrent(commit string) error {
	link := filepath.Join(r.opts.WorkDir, "current")
	tmp := link + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(commit, tmp); err != nil {
		return fmt.Errorf("link current release: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		return fmt.Errorf("link current release: %w", err)
	}
	return nil
}
