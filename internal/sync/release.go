package sync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/compose"
	"github.com/hastack/hastack/internal/pathguard"
)

// A release is one commit's tree in WorkDir/<commit>, with the persistent paths linked into it
// and a digest override written beside its compose files; WorkDir/current points at the one
// that is applied. A diff exports into a temporary WorkDir/.diff-*/<commit> instead, removed
// when it is done, and never writes outside it.

// overrideName is the compose override the agent writes into each release: content digests.
const overrideName = ".hastack-agent.yml"

// diffPrefix names the temporary directories of diffs; leftovers of a crash are removed at start.
const diffPrefix = ".diff-"

// ErrInvalidCommit is matched (errors.Is) when a commit given from outside is not a full
// 40-hex commit id: the only form a release directory may be named after.
var ErrInvalidCommit = errors.New("not a full 40-hex commit id")

// checkCommit accepts a full, lower-case 40-hex commit id only: no ref name, no short id, no
// path, so a release's name can never leave WorkDir.
func checkCommit(commit string) error {
	if len(commit) != 40 || strings.Trim(commit, "0123456789abcdef") != "" {
		return fmt.Errorf("commit %.50q: %w", commit, ErrInvalidCommit)
	}
	return nil
}

// releaseRoot is WorkDir/<commit>, for a valid commit id.
func (r *Reconciler) releaseRoot(commit string) (string, error) {
	if err := checkCommit(commit); err != nil {
		return "", err
	}
	return pathguard.Join(r.opts.WorkDir, commit)
}

// currentLink is WorkDir/current, the link to the applied release: Compose runs in
// current/<Subpath>, so the paths it resolves stay the same from one release to the next.
func (r *Reconciler) currentLink() string { return filepath.Join(r.opts.WorkDir, "current") }

func (r *Reconciler) sharedDir() string {
	if r.opts.SharedDir != "" {
		return r.opts.SharedDir
	}
	return filepath.Join(r.opts.WorkDir, "shared")
}

// stackOf opens the compose project of the release at root (its files, with the digest
// override when written) at projectDir.
func (r *Reconciler) stackOf(root, projectDir string, withOverride bool) Stack {
	dir := filepath.Join(root, r.opts.Subpath)
	files := make([]string, 0, len(r.opts.ComposeFiles)+1)
	for _, f := range r.opts.ComposeFiles {
		files = append(files, filepath.Join(dir, f))
	}
	if withOverride {
		files = append(files, filepath.Join(dir, overrideName))
	}
	return r.newStack(projectDir, files)
}

// prepare makes commit's release in WorkDir/<commit> (once) and returns its compose project,
// with its digest override written.
func (r *Reconciler) prepare(ctx context.Context, commit string) (Stack, error) {
	root, err := r.releaseRoot(commit)
	if err != nil {
		return nil, err
	}
	if err := r.ensureRelease(ctx, commit, root); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(r.currentLink()); os.IsNotExist(err) {
		// The first release: Compose needs the project directory to exist.
		if err := r.linkCurrent(commit); err != nil {
			return nil, err
		}
	}
	return r.openRelease(ctx, commit, root, r.currentLink())
}

// ensureRelease makes WorkDir/<commit> unless it exists: exported into a staging directory,
// its persistent paths linked, then renamed into place. An existing release is therefore
// always complete, and nothing in it is removed or relinked again.
func (r *Reconciler) ensureRelease(ctx context.Context, commit, root string) error {
	fi, err := os.Lstat(root)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("release %s: %s is not a directory: remove it", short(commit), root)
	case !os.IsNotExist(err):
		return fmt.Errorf("release %s: %w", short(commit), err)
	}
	if err := os.MkdirAll(r.opts.WorkDir, 0o755); err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	staging := root + ".staging"
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("release %s: remove an interrupted staging directory: %w", short(commit), err)
	}
	if err := r.exportRelease(ctx, commit, staging, true); err != nil {
		os.RemoveAll(staging)
		return err
	}
	if err := os.Rename(staging, root); err != nil {
		os.RemoveAll(staging)
		return fmt.Errorf("release %s: move into place: %w", short(commit), err)
	}
	return nil
}

// exportRelease exports commit into dst, which does not exist yet, and links the persistent
// paths of its stack to the shared directory. seed says whether a persistent path the shared
// directory lacks is created there from the release (deploys); a diff leaves the release's own
// copy in place instead and writes nothing outside dst. The commit's symlinks are first proven
// to stay in the tree, the persistent paths counted as the links to elsewhere they become.
func (r *Reconciler) exportRelease(ctx context.Context, commit, dst string, seed bool) error {
	if err := r.src.Export(ctx, commit, dst); err != nil {
		return fmt.Errorf("export %s: %w", short(commit), err)
	}
	dir, err := pathguard.Join(dst, r.opts.Subpath)
	if err != nil {
		return fmt.Errorf("release %s: %w", short(commit), err)
	}
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("commit %s has no %s directory", short(commit), r.opts.Subpath)
	}
	links, err := pathguard.TreeLinks(dst)
	if err != nil {
		return fmt.Errorf("release %s: %w", short(commit), err)
	}
	var mounts []string
	for _, p := range append(slices.Clone(r.opts.Persistent), r.opts.Live...) {
		mounts = append(mounts, path.Join(filepath.ToSlash(r.opts.Subpath), p))
	}
	if err := pathguard.Links(links, mounts...); err != nil {
		return fmt.Errorf("release %s: %w", short(commit), err)
	}
	if err := linkPersistent(dir, r.sharedDir(), r.opts.Persistent, seed); err != nil {
		return fmt.Errorf("release %s: %w", short(commit), err)
	}
	if seed { // a diff keeps the commit's copy where it is, and writes nothing outside dst
		live, err := r.reloadedLive(ctx, dst, dir)
		if err != nil {
			return fmt.Errorf("release %s: %w", short(commit), err)
		}
		if err := r.linkLive(dst, dir, live); err != nil {
			return fmt.Errorf("release %s: %w", short(commit), err)
		}
	}
	return nil
}

// openRelease writes the digest override of the release at root and returns its compose
// project, run in base/<Subpath>: the stable WorkDir/current, or the release itself.
func (r *Reconciler) openRelease(ctx context.Context, commit, root, base string) (Stack, error) {
	projectDir := filepath.Join(base, r.opts.Subpath)
	services, err := r.stackOf(root, projectDir, false).Services(ctx)
	if err != nil {
		return nil, err
	}
	// A service that reloads a live directory it mounts is not recreated for a change there. (A
	// file mounted from inside one still counts: a file bind mount keeps the file it was made
	// from, which a reload would not see replaced.)
	for i, s := range services {
		if len(s.Reload) == 0 {
			continue
		}
		var kept []string
		for _, src := range s.BindSources {
			if rel, ok := pathguard.Rel(projectDir, src); ok && slices.Contains(r.opts.Live, rel) {
				continue
			}
			kept = append(kept, src)
		}
		services[i].BindSources = kept
	}
	// Compose reports paths under base; the files to digest are this release's copies, except
	// the persistent paths (generated secrets, certificates): decided by name, since they may
	// not exist yet when a release is first prepared.
	resolve := func(p string) string {
		rel, ok := pathguard.Rel(base, p)
		if !ok {
			return "" // a host path such as /proc
		}
		if inStack, err := filepath.Rel(r.opts.Subpath, rel); err == nil && !strings.HasPrefix(inStack, "..") {
			for _, pp := range r.opts.Persistent {
				if inStack == pp || strings.HasPrefix(inStack, pp+"/") {
					return ""
				}
			}
			// A live path's content is the release's copy (a diff's tree has it in place).
			if _, live := r.liveOf(inStack); live {
				if saved := filepath.Join(root, liveCopyDir, inStack); exists(saved) {
					return saved
				}
			}
		}
		return filepath.Join(root, rel)
	}
	if err := compose.WriteDigestOverride(filepath.Join(root, r.opts.Subpath, overrideName), services, resolve); err != nil {
		return nil, fmt.Errorf("digest release %s: %w", short(commit), err)
	}
	return r.stackOf(root, projectDir, true), nil
}

// linkPersistent replaces each persistent path of a freshly exported release with a symlink
// into shared, so generated secrets, certificates and .env survive from one release to the
// next. With seed, the first release seeds shared with what it carries there (e.g. a
// .gitignore). It changes only the release's own tree: a persistent path whose parent in the
// release is a symlink (the commit's) is refused rather than followed.
func linkPersistent(dir, shared string, paths []string, seed bool) error {
	for _, p := range paths { // all checked before anything changes
		if err := realParents(dir, p); err != nil {
			return err
		}
	}
	for _, p := range paths {
		inRelease, err := pathguard.Join(dir, p)
		if err != nil {
			return fmt.Errorf("persistent %s: %w", p, err)
		}
		inShared, err := pathguard.Join(shared, p)
		if err != nil {
			return fmt.Errorf("persistent %s: %w", p, err)
		}
		fi, err := os.Lstat(inRelease)
		ownCopy := err == nil && fi.Mode()&os.ModeSymlink == 0 // not a link the commit carries
		if _, err := os.Stat(inShared); os.IsNotExist(err) {
			switch {
			case !seed:
				continue // a diff: the release's own copy is what a deploy would seed shared with
			case ownCopy:
				if err := os.MkdirAll(filepath.Dir(inShared), 0o755); err != nil {
					return fmt.Errorf("persistent %s: %w", p, err)
				}
				if err := os.Rename(inRelease, inShared); err != nil {
					return fmt.Errorf("persistent %s: %w", p, err)
				}
			case !strings.HasPrefix(filepath.Base(p), "."):
				if err := os.MkdirAll(inShared, 0o700); err != nil {
					return fmt.Errorf("persistent %s: %w", p, err)
				}
			default:
				continue // a file such as .env that nobody made yet
			}
		}
		if err := os.RemoveAll(inRelease); err != nil { // a symlink itself, never its target
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

// realParents refuses a persistent path p of dir whose parent directories in dir include a
// symlink: removing or creating p would then happen wherever that link leads.
func realParents(dir, p string) error {
	parts := strings.Split(filepath.ToSlash(filepath.Dir(p)), "/")
	at := dir
	for _, part := range parts {
		if part == "." || part == "" {
			continue
		}
		at = filepath.Join(at, part)
		fi, err := os.Lstat(at)
		if os.IsNotExist(err) {
			return nil // made below as a real directory
		}
		if err != nil {
			return fmt.Errorf("persistent %s: %w", p, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 || !fi.IsDir() {
			return fmt.Errorf("persistent %s: %s is a symlink or file in the commit, not a directory: %w", p, at, pathguard.ErrEscapes)
		}
	}
	return nil
}

// linkCurrent points WorkDir/current at commit's release, atomically.
func (r *Reconciler) linkCurrent(commit string) error {
	if err := checkCommit(commit); err != nil {
		return fmt.Errorf("link current release: %w", err)
	}
	link := r.currentLink()
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

// removeDiffLeftovers removes the temporary trees of diffs a crash left behind, and the
// staging directories of releases it interrupted.
func (r *Reconciler) removeDiffLeftovers() {
	left, _ := filepath.Glob(filepath.Join(r.opts.WorkDir, diffPrefix+"*"))
	staging, _ := filepath.Glob(filepath.Join(r.opts.WorkDir, "*.staging"))
	for _, d := range append(left, staging...) {
		if strings.HasSuffix(d, ".staging") && checkCommit(strings.TrimSuffix(filepath.Base(d), ".staging")) != nil {
			continue // not one of ours
		}
		os.RemoveAll(d)
	}
}

// KeepReleases is how many releases pruneReleases keeps besides those the state names (the
// applied, last good and in-progress commits) and those containers may still mount: the most
// recently made ones.
const KeepReleases = 3

// pruneReleases removes the release directories nothing needs any more: one full tree per
// commit would otherwise pile up forever. Kept: the ones the state names; every release made
// since the oldest container of the project was created, and the newest made before (a
// container keeps the directories it mounted from the release that was current when it was
// created, whatever current points at now); and the KeepReleases most recent others. Only
// directories named by a full commit id are touched, and nothing when the containers cannot
// be listed.
func (r *Reconciler) pruneReleases(ctx context.Context, st State) {
	entries, err := os.ReadDir(r.opts.WorkDir)
	if err != nil {
		return
	}
	running, err := r.engine.ProjectContainers(ctx, r.opts.Project)
	if err != nil {
		r.log.Warn("prune releases: list containers", "err", err)
		return
	}
	var oldest time.Time
	for _, c := range running {
		if !c.Created.IsZero() && (oldest.IsZero() || c.Created.Before(oldest)) {
			oldest = c.Created
		}
	}
	type rel struct {
		name string
		made time.Time
	}
	var others []rel
	for _, e := range entries {
		if !e.IsDir() || checkCommit(e.Name()) != nil || e.Name() == st.Applied || e.Name() == st.LastGood || e.Name() == st.InProgress {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		others = append(others, rel{e.Name(), fi.ModTime()})
	}
	slices.SortFunc(others, func(a, b rel) int { return b.made.Compare(a.made) }) // newest first
	keptBefore := false
	for i, o := range others {
		switch {
		case i < KeepReleases:
			continue
		case !oldest.IsZero() && !o.made.Before(oldest):
			continue // possibly current while a container that still runs was created
		case !oldest.IsZero() && !keptBefore:
			keptBefore = true // the newest made before: current when the oldest container was
			continue
		}
		if err := os.RemoveAll(filepath.Join(r.opts.WorkDir, o.name)); err != nil {
			r.log.Warn("prune releases", "release", o.name, "err", err)
			continue
		}
		r.log.Debug("pruned release", "release", short(o.name))
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
