package sync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hastack/hastack/internal/compose"
	"github.com/hastack/hastack/internal/pathguard"
)

// Live paths (Options.Live) are directories of the stack that a service re-reads in place:
// nginx's configuration. A bind mount pins the directory it was made from, so a release's own
// copy would need a new container for each change; instead every release links the path to one
// directory, WorkDir/live/<path>, which the containers mount, and keeps the commit's copy in
// <release>/.hastack-live/<path>. A deploy makes the live directory the release's copy file by
// file, then has each running service that mounts it check the change (its ReloadTestLabel
// command) and apply it (ReloadLabel); a failed check puts the old files back and fails the
// deploy with nothing else touched. A service without ReloadLabel is recreated instead, by the
// digest of the release's copy.

// liveCopyDir holds the commit's copy of the live paths in each release.
const liveCopyDir = ".hastack-live"

// maxLiveBytes bounds a live directory: it is kept in memory to be put back.
const maxLiveBytes = 16 << 20

// Runner runs a command in a container (docker.Client.Run).
type Runner interface {
	Run(ctx context.Context, container string, cmd []string) (string, error)
}

// liveDir is WorkDir/live/<p>: the agent's own copy, beside the releases (not in SharedDir,
// which may be the operator's checkout: scripts/up makes it the repository's stack/).
func (r *Reconciler) liveDir(p string) (string, error) {
	return pathguard.Join(filepath.Join(r.opts.WorkDir, "live"), p)
}

// reloadedLive returns the live paths that a service of the freshly exported release (dir is
// its Subpath directory, root the release) mounts and reloads. A commit from before a path
// became live (its service has no reload label, its image may even COPY the path) keeps its
// own copy in place: it deploys as it always did, by recreating that service.
func (r *Reconciler) reloadedLive(ctx context.Context, root, dir string) ([]string, error) {
	if len(r.opts.Live) == 0 {
		return nil, nil
	}
	services, err := r.stackOf(root, dir, false).Services(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range r.opts.Live {
		if slices.ContainsFunc(services, func(s compose.Service) bool {
			return len(s.Reload) > 0 && slices.Contains(s.BindSources, filepath.Join(dir, p))
		}) {
			out = append(out, p)
		}
	}
	return out, nil
}

// linkLive moves each of the live paths of a freshly exported release (dir is its Subpath
// directory, root the release) to root/.hastack-live/<path> and links the path to its live
// directory. A commit without the path gets an empty copy.
func (r *Reconciler) linkLive(root, dir string, paths []string) error {
	for _, p := range paths {
		if err := realParents(dir, p); err != nil {
			return err
		}
		inRelease, err := pathguard.Join(dir, p)
		if err != nil {
			return fmt.Errorf("live %s: %w", p, err)
		}
		saved, err := pathguard.Join(filepath.Join(root, liveCopyDir), p)
		if err != nil {
			return fmt.Errorf("live %s: %w", p, err)
		}
		live, err := r.liveDir(p)
		if err != nil {
			return fmt.Errorf("live %s: %w", p, err)
		}
		if err := os.MkdirAll(filepath.Dir(saved), 0o755); err != nil {
			return fmt.Errorf("live %s: %w", p, err)
		}
		fi, err := os.Lstat(inRelease)
		switch {
		case err == nil && fi.IsDir():
			if err := os.Rename(inRelease, saved); err != nil {
				return fmt.Errorf("live %s: %w", p, err)
			}
		case err == nil:
			return fmt.Errorf("live %s: not a directory in the commit", p)
		case errors.Is(err, fs.ErrNotExist):
			if err := os.MkdirAll(saved, 0o755); err != nil {
				return fmt.Errorf("live %s: %w", p, err)
			}
		default:
			return fmt.Errorf("live %s: %w", p, err)
		}
		if err := os.MkdirAll(live, 0o755); err != nil {
			return fmt.Errorf("live %s: %w", p, err)
		}
		if err := os.MkdirAll(filepath.Dir(inRelease), 0o755); err != nil {
			return fmt.Errorf("live %s: %w", p, err)
		}
		if err := os.Symlink(live, inRelease); err != nil {
			return fmt.Errorf("live %s: %w", p, err)
		}
	}
	return nil
}

// liveOf returns the live path that the stack-relative path inStack is in, if any.
func (r *Reconciler) liveOf(inStack string) (string, bool) {
	for _, p := range r.opts.Live {
		if inStack == p || strings.HasPrefix(inStack, p+"/") {
			return p, true
		}
	}
	return "", false
}

// readLiveBoth reads live path p's files as a release has them (under dir: its copy directory,
// or a diff's tree) and as its live directory has them now, and returns that directory too.
func (r *Reconciler) readLiveBoth(dir, p string) (live string, next, prev map[string]liveFile, err error) {
	inRelease, err := pathguard.Join(dir, p)
	if err != nil {
		return "", nil, nil, err
	}
	if live, err = r.liveDir(p); err != nil {
		return "", nil, nil, err
	}
	if next, err = readLive(inRelease); err != nil {
		return "", nil, nil, fmt.Errorf("live %s: read the release's copy: %w", p, err)
	}
	if prev, err = readLive(live); err != nil {
		return "", nil, nil, fmt.Errorf("live %s: %w", p, err)
	}
	return live, next, prev, nil
}

// liveFile is one file of a live directory, kept to be put back.
type liveFile struct {
	data []byte
	mode fs.FileMode
}

// readLive reads every regular file under dir (relative path to content).
func readLive(dir string) (map[string]liveFile, error) {
	files := map[string]liveFile{}
	total := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == dir {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file (a live directory holds files only)", path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if total += len(b); total > maxLiveBytes {
			return fmt.Errorf("%s: more than %d MiB", dir, maxLiveBytes>>20)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel] = liveFile{data: b, mode: info.Mode().Perm()}
		return nil
	})
	return files, err
}

// writeLive makes dir hold exactly files: each written beside and renamed over the old (a
// reader sees the old file or the new, never half of one), then the files not in files removed.
func writeLive(dir string, files map[string]liveFile) error {
	for rel, f := range files {
		dst, err := pathguard.Join(dir, rel)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		tmp := filepath.Join(filepath.Dir(dst), ".hastack-new-"+filepath.Base(dst))
		if err := os.WriteFile(tmp, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(tmp, f.mode); err != nil { // the umask does not decide
			return err
		}
		if err := os.Rename(tmp, dst); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	old, err := readLive(dir)
	if err != nil {
		return err
	}
	for rel := range old {
		if _, keep := files[rel]; !keep {
			if err := os.Remove(filepath.Join(dir, rel)); err != nil {
				return err
			}
		}
	}
	return nil
}

// sameLive tells whether two sets of files are the same.
func sameLive(a, b map[string]liveFile) bool {
	if len(a) != len(b) {
		return false
	}
	for rel, f := range a {
		g, ok := b[rel]
		if !ok || f.mode != g.mode || string(f.data) != string(g.data) {
			return false
		}
	}
	return true
}

// applyLive makes each live directory the release's copy (root is the release, projectDir the
// directory Compose resolves the stack's paths under) and reloads the running services that
// mount it. It returns the services it reloaded. On a failed check or reload the old files are
// put back (and the services that had reloaded reload them again).
func (r *Reconciler) applyLive(ctx context.Context, root, projectDir string, services []compose.Service, recreating []string) ([]string, error) {
	var reloaded []string
	for _, p := range r.opts.Live {
		if !exists(filepath.Join(root, liveCopyDir, p)) {
			continue // not live in this release (reloadedLive): its copy is in place
		}
		live, next, prev, err := r.readLiveBoth(filepath.Join(root, liveCopyDir), p)
		if err != nil {
			return reloaded, err
		}
		// Applied means checked and reloaded (or nothing ran to reload): a deploy interrupted
		// after writing the files finds them the same, but not applied.
		marker := live + ".applied"
		want := liveDigest(next)
		if sameLive(prev, next) && readMarker(marker) == want {
			continue
		}
		targets, err := r.reloadTargets(ctx, filepath.Join(projectDir, p), services, recreating)
		if err != nil {
			return reloaded, err
		}
		if err := writeLive(live, next); err != nil {
			r.restoreLive(ctx, p, live, prev, nil)
			return reloaded, fmt.Errorf("live %s: write: %w", p, err)
		}
		for _, t := range targets {
			if len(t.svc.ReloadTest) == 0 {
				continue
			}
			if out, err := r.runner.Run(ctx, t.container, t.svc.ReloadTest); err != nil {
				r.restoreLive(ctx, p, live, prev, nil)
				return reloaded, fmt.Errorf("%s: the new %s fails %s's check (%s), the old files are back: %w%s",
					t.svc.Name, p, t.svc.Name, strings.Join(t.svc.ReloadTest, " "), err, outputTail(out))
			}
		}
		var done []reloadTarget
		for _, t := range targets {
			if out, err := r.runner.Run(ctx, t.container, t.svc.Reload); err != nil {
				r.restoreLive(ctx, p, live, prev, append(done, t))
				return reloaded, fmt.Errorf("%s: reload after a change to %s (%s), the old files are back: %w%s",
					t.svc.Name, p, strings.Join(t.svc.Reload, " "), err, outputTail(out))
			}
			done = append(done, t)
			reloaded = append(reloaded, t.svc.Name)
			r.log.Info("reloaded in place", "service", t.svc.Name, "path", p)
		}
		if err := os.WriteFile(marker, []byte(want+"\n"), 0o644); err != nil {
			return reloaded, fmt.Errorf("live %s: %w", p, err)
		}
	}
	return reloaded, nil
}

// liveDigest is a digest of a set of files (names, modes, contents).
func liveDigest(files map[string]liveFile) string {
	names := slices.Sorted(maps.Keys(files))
	h := sha256.New()
	for _, n := range names {
		f := files[n]
		fmt.Fprintf(h, "%q %o %d\n", n, f.mode, len(f.data))
		h.Write(f.data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// readMarker returns the digest an .applied marker holds ("" without one).
func readMarker(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// liveReloads lists the running services that a diff's release (its Subpath directory dir,
// with the live paths in place) would reload: those that mount a live path whose files differ
// from the live directory's.
func (r *Reconciler) liveReloads(ctx context.Context, dir, projectDir string, services []compose.Service, recreating []string) ([]Change, error) {
	var out []Change
	for _, p := range r.opts.Live {
		_, next, prev, err := r.readLiveBoth(dir, p)
		if err != nil {
			return nil, err
		}
		if sameLive(prev, next) {
			continue
		}
		targets, err := r.reloadTargets(ctx, filepath.Join(projectDir, p), services, recreating)
		if err != nil {
			return nil, err
		}
		for _, t := range targets {
			out = append(out, Change{Service: t.svc.Name, Reason: "reload: " + p})
		}
	}
	return out, nil
}

type reloadTarget struct {
	svc       compose.Service
	container string
}

// reloadTargets are the running containers of the services that mount dir and reload it,
// except those the deploy recreates: their new containers start with the new files (and a
// container of the old image may not even know how to check them).
func (r *Reconciler) reloadTargets(ctx context.Context, dir string, services []compose.Service, recreating []string) ([]reloadTarget, error) {
	var mounting []compose.Service
	for _, s := range services {
		if len(s.Reload) == 0 || slices.Contains(recreating, s.Name) {
			continue
		}
		for _, src := range s.BindSources {
			if src == dir || strings.HasPrefix(src, dir+string(filepath.Separator)) {
				mounting = append(mounting, s)
				break
			}
		}
	}
	if len(mounting) == 0 {
		return nil, nil
	}
	running, err := r.engine.ProjectContainers(ctx, r.opts.Project)
	if err != nil {
		return nil, err
	}
	var out []reloadTarget
	for _, s := range mounting {
		for _, c := range running {
			if c.Service == s.Name && c.State == "running" {
				out = append(out, reloadTarget{svc: s, container: c.Name})
			}
		}
	}
	return out, nil
}

// restoreLive puts the old files back and has the services that had reloaded the new ones
// reload again.
func (r *Reconciler) restoreLive(ctx context.Context, p, live string, prev map[string]liveFile, reloaded []reloadTarget) {
	if err := writeLive(live, prev); err != nil {
		r.log.Error("live: cannot put the old files back", "path", p, "err", err)
		return
	}
	for _, t := range reloaded {
		if _, err := r.runner.Run(context.WithoutCancel(ctx), t.container, t.svc.Reload); err != nil {
			r.log.Error("live: reload of the old files failed", "service", t.svc.Name, "err", err)
		}
	}
}

func outputTail(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	if len(out) > 2000 {
		out = "..." + out[len(out)-2000:]
	}
	return ": " + out
}
