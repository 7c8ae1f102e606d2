package sync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hastack/hastack/internal/compose"
)

// Files outside git are the agent's too. The persistent paths in SharedDir (.env, secrets/,
// nginx/ssl/) and the env file change by hand, not by commits; the agent applies such a change
// like a deploy of the applied commit, health-gated and recorded in the history (trigger
// "outside"): the release is prepared again, so a changed .env shows in Compose's configuration
// and the services it changes are recreated in the plan's rolling steps; a service that mounts a
// changed directory is reloaded in place when it can (ReloadLabel: nginx and its certificate),
// else restarted, except the databases (ExclusiveServices), which read their secrets only when
// they initialise. A failed change marks no commit bad and rolls nothing back (git holds no older
// copy of those files): it alerts DeployFailed and is tried again when the files change again.

// envFileKey names the env file among the outside paths.
const envFileKey = "env_file"

// outsideDigests returns a digest per outside path: each persistent path that is a file (.env),
// each entry directly under one that is a directory (secrets/db, nginx/ssl/nginx.crt), and the
// env file. A digest covers the names, kinds, modes and contents of the files under it (small
// files: secrets, certificates, .env), not directories' modification times.
func (r *Reconciler) outsideDigests() map[string]string {
	roots := map[string]string{}
	for _, p := range r.opts.Persistent {
		full := filepath.Join(r.sharedDir(), p)
		entries, err := os.ReadDir(full)
		if err != nil {
			roots[p] = full // a file, or missing
			continue
		}
		for _, e := range entries {
			roots[path.Join(p, e.Name())] = filepath.Join(full, e.Name())
		}
	}
	if r.opts.EnvFile != "" {
		roots[envFileKey] = r.opts.EnvFile
	}
	out := map[string]string{}
	for name, root := range roots {
		h := sha256.New()
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				fmt.Fprintf(h, "%s missing\n", p)
				return nil
			}
			fmt.Fprintf(h, "%s %v\n", p, d.Type())
			switch {
			case d.Type().IsRegular():
				hashFile(h, p)
			case d.Type()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				fmt.Fprintf(h, "-> %s\n", target)
			}
			return nil
		})
		out[name] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

// maxOutsideFile is the largest outside file whose content is digested; a larger one counts
// by its size and modification time.
const maxOutsideFile = 1 << 20

// hashFile adds a file's mode and content to h. Contents, not modification times: secrets-init
// rewrites a secret with the same content, and makes and removes a temporary file beside it
// (touching its directory), at every start of a service that depends on it.
func hashFile(h io.Writer, p string) {
	fi, err := os.Stat(p)
	if err != nil {
		fmt.Fprintf(h, "unreadable\n")
		return
	}
	fmt.Fprintf(h, "%o %d\n", fi.Mode().Perm(), fi.Size())
	if fi.Size() > maxOutsideFile {
		fmt.Fprintf(h, "%d\n", fi.ModTime().UnixNano())
		return
	}
	b, err := os.ReadFile(p)
	if err != nil {
		fmt.Fprintf(h, "unreadable\n")
		return
	}
	h.Write(b)
}

// digestKey is one string for a set of digests.
func digestKey(d map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(d)) {
		b.WriteString(k + "=" + d[k] + " ")
	}
	return b.String()
}

// changedOutside lists the outside paths whose digest differs between two sets.
func changedOutside(was, now map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(now)) {
		if was[k] != now[k] {
			out = append(out, k)
		}
	}
	return out
}

// checkOutside compares the outside paths as they are now (outsideDigests) with what the last
// deploy applied; a change not yet tried asks for a deploy of it and returns true (the drift
// check then waits for it).
func (r *Reconciler) checkOutside(st State, now map[string]string) bool {
	if st.Outside == nil {
		// A state from before outside paths were tracked: this is the baseline.
		st.Outside = now
		if err := r.save(st); err != nil {
			r.log.Warn("outside paths: save", "err", err)
		}
		return false
	}
	changed := changedOutside(st.Outside, now)
	if len(changed) == 0 {
		return false
	}
	key := digestKey(now)
	r.mu.Lock()
	tried := r.outsideTried == key
	r.mu.Unlock()
	if tried {
		return false // it failed; waiting for the files to change again
	}
	r.log.Info("files outside git changed; applying them", "paths", changed)
	r.outsidePending.Store(true)
	r.Trigger("outside: " + strings.Join(changed, ", "))
	return true
}

// outsideTargets are what an outside change must touch besides the plan: the running
// containers of the services that mount a changed path (under projectDir), reloaded in place
// when they can, restarted otherwise; not the services the plan recreates, nor the databases.
func (r *Reconciler) outsideTargets(ctx context.Context, changed []string, projectDir string, services []compose.Service, recreating []string) (reload []reloadTarget, restart []string, err error) {
	under := func(a, b string) bool { return a == b || strings.HasPrefix(a, b+string(filepath.Separator)) }
	var mounting []compose.Service
	for _, s := range services {
		if slices.Contains(recreating, s.Name) {
			continue
		}
		for _, p := range changed {
			if p == envFileKey || p == ".env" {
				continue // Compose's configuration: the plan has it
			}
			dir := filepath.Join(projectDir, p)
			if slices.ContainsFunc(s.BindSources, func(src string) bool { return under(src, dir) || under(dir, src) }) {
				mounting = append(mounting, s)
				break
			}
		}
	}
	if len(mounting) == 0 {
		return nil, nil, nil
	}
	running, err := r.engine.ProjectContainers(ctx, r.opts.Project)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range mounting {
		for _, c := range running {
			if c.Service != s.Name || c.State != "running" {
				continue
			}
			switch {
			case len(s.Reload) > 0:
				reload = append(reload, reloadTarget{svc: s, container: c.Name})
			case slices.Contains(r.opts.ExclusiveServices, s.Name):
				r.log.Warn("outside paths: a database server is not restarted for a change to its files: it reads them only when it initialises",
					"service", s.Name)
			case !slices.Contains(restart, s.Name):
				restart = append(restart, s.Name)
			}
		}
	}
	return reload, restart, nil
}

// applyOutside reloads or restarts the running services that mount the changed outside paths
// of d (the plan has already recreated those whose configuration changed).
func (r *Reconciler) applyOutside(ctx context.Context, stack Stack, d *Deploy, services []compose.Service, recreated []string) error {
	reload, restart, err := r.outsideTargets(ctx, d.Outside, filepath.Join(r.currentLink(), r.opts.Subpath), services, recreated)
	if err != nil {
		return err
	}
	for _, t := range reload {
		r.phase("reloading", []string{t.svc.Name}, 0, 0)
		if len(t.svc.ReloadTest) > 0 {
			if out, err := r.runner.Run(ctx, t.container, t.svc.ReloadTest); err != nil {
				return fmt.Errorf("%s: the changed files fail %s's check (%s): %w%s", t.svc.Name, t.svc.Name, strings.Join(t.svc.ReloadTest, " "), err, outputTail(out))
			}
		}
		if out, err := r.runner.Run(ctx, t.container, t.svc.Reload); err != nil {
			return fmt.Errorf("%s: reload (%s): %w%s", t.svc.Name, strings.Join(t.svc.Reload, " "), err, outputTail(out))
		}
		d.Reloaded = append(d.Reloaded, t.svc.Name)
		r.log.Info("reloaded in place", "service", t.svc.Name, "outside", d.Outside)
	}
	for _, s := range restart {
		r.phase("starting", []string{s}, 0, 0)
		if err := stack.Restart(ctx, s); err != nil {
			return fmt.Errorf("restart %s: %w", s, err)
		}
		d.Restarted = append(d.Restarted, s)
		r.phase("waiting", []string{s}, 0, 0)
		if err := r.waitReady(ctx, []string{s}); err != nil {
			return err
		}
	}
	return nil
}
