// Package compose drives Docker Compose v2 (the `docker compose` CLI plugin) for one project:
// validate, describe, build and bring up services. Driving the real CLI, rather than embedding
// Compose's Go SDK, keeps the agent's behaviour identical to what operators run by hand (the
// same engine, the same labels, the same `docker compose ps`), works with whichever Compose v2
// the host has, and keeps BuildKit and its dependency tree out of the agent (see
// docs/agent.md, "Why the compose CLI").
package compose

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"gopkg.in/yaml.v3"

	"github.com/hastack/hastack/internal/config"
)

// RollingLabel on a service puts it in a rolling group: the agent updates the members of a group
// one at a time, each gated on health, so the group never loses all its instances at once.
const RollingLabel = "io.hastack.rolling-group"

// DigestLabel carries a digest of the files a service is built from and bind-mounts from the
// project (see WriteDigestOverride). Being part of the configuration, it changes Compose's
// config hash when those files change, so Compose itself recreates the service.
const DigestLabel = "io.hastack.content-digest"

// ReloadTestLabel and ReloadLabel name the commands (run in the service's container, split on
// spaces, no shell) that check and apply a change to a live path it mounts (sync.Options.Live)
// without recreating it: nginx's `nginx -t` and `nginx -s reload`. A service that mounts a live
// path without ReloadLabel is recreated when it changes, as for any other file.
const (
	ReloadTestLabel = "io.hastack.reload-test"
	ReloadLabel     = "io.hastack.reload"
)

// Project is one Compose project in a directory.
type Project struct {
	Name string // compose project name (-p)
	// Dir is the project directory: .env and relative paths resolve here. Compose hashes the
	// absolute paths it resolves, so the agent keeps Dir the same from one commit to the next.
	Dir   string
	Files []string // absolute paths of the compose files; empty means Compose's default lookup
	// EnvFile replaces Dir/.env as the source of variables when set.
	EnvFile string
	// Binary is the docker CLI; "" means "docker" from PATH.
	Binary string
	// Output receives the CLI's progress output (nil discards it).
	Output io.Writer
}

// Service is a service as the project at Dir defines it.
type Service struct {
	Name         string
	ConfigHash   string // what Compose stamps on the container as com.docker.compose.config-hash
	RollingGroup string
	Restart      string
	DependsOn    []string
	// BuildContext is the absolute build context directory ("" for services that use an image).
	BuildContext string
	// Dockerfile is the build's Dockerfile, relative to BuildContext ("" for the default).
	Dockerfile string
	// BindSources are the absolute host paths the service bind-mounts.
	BindSources []string
	// Digest is the service's DigestLabel value ("" without the override).
	Digest string
	// ReloadTest and Reload are its ReloadTestLabel and ReloadLabel commands (nil without).
	ReloadTest, Reload []string
}

// Error is a failed compose command, with the tail of what it printed.
type Error struct {
	Args   []string
	Err    error
	Output string
}

func (e *Error) Error() string {
	return fmt.Sprintf("docker compose %s: %v: %s", strings.Join(e.Args, " "), e.Err, lastLines(e.Output, 8))
}

func (e *Error) Unwrap() error { return e.Err }

func (p Project) base() []string {
	args := []string{"compose", "--project-name", p.Name, "--project-directory", p.Dir}
	for _, f := range p.Files {
		args = append(args, "--file", f)
	}
	if p.EnvFile != "" {
		args = append(args, "--env-file", p.EnvFile)
	}
	return args
}

// StopGrace is how long a cancelled `docker compose` has after SIGTERM before it is killed.
const StopGrace = 30 * time.Second

// run runs `docker compose <args>` in the project and returns its stdout. The CLI inherits
// the agent's environment without the agent's secrets (config.ChildEnv): a compose file
// cannot interpolate them, nor a plugin read them.
func (p Project) run(ctx context.Context, args ...string) ([]byte, error) {
	bin := p.Binary
	if bin == "" {
		bin = "docker"
	}
	cmd := exec.CommandContext(ctx, bin, append(p.base(), args...)...)
	// Cancelled (the agent stopping), Compose gets SIGTERM and time to stop what it started
	// cleanly; only then SIGKILL.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = StopGrace
	cmd.Dir = p.Dir
	cmd.Env = config.ChildEnv(os.Environ())
	var stdout, buf bytes.Buffer
	// Two goroutines copy stdout and stderr: combined takes the writes of both, one at a time.
	combined := &lockedWriter{w: &buf}
	cmd.Stdout = io.MultiWriter(&stdout, combined)
	stderr := io.Writer(combined)
	if p.Output != nil {
		stderr = io.MultiWriter(combined, p.Output)
	}
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return nil, &Error{Args: args, Err: err, Output: buf.String()}
	}
	return stdout.Bytes(), nil
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// Validate checks the project's compose files (syntax, interpolation, references) without
// touching any container.
func (p Project) Validate(ctx context.Context) error {
	_, err := p.run(ctx, "config", "--quiet")
	return err
}

type configJSON struct {
	Services map[string]struct {
		Labels    map[string]string `json:"labels"`
		Restart   string            `json:"restart"`
		DependsOn map[string]any    `json:"depends_on"`
		Volumes   []struct {
			Type   string `json:"type"`
			Source string `json:"source"`
		} `json:"volumes"`
		Build *struct {
			Context    string `json:"context"`
			Dockerfile string `json:"dockerfile"`
		} `json:"build"`
	} `json:"services"`
}

// Services describes every service the project defines (with the profiles that are active).
func (p Project) Services(ctx context.Context) ([]Service, error) {
	raw, err := p.run(ctx, "config", "--format", "json")
	if err != nil {
		return nil, err
	}
	var cfg configJSON
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("parse compose config: %w", err)
	}
	hashes, err := p.run(ctx, "config", "--hash", "*")
	if err != nil {
		return nil, err
	}
	byName := map[string]string{}
	for _, line := range strings.Split(string(hashes), "\n") {
		if name, hash, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			byName[name] = hash
		}
	}
	var out []Service
	for name, s := range cfg.Services {
		svc := Service{Name: name, ConfigHash: byName[name], RollingGroup: s.Labels[RollingLabel], Restart: s.Restart, Digest: s.Labels[DigestLabel],
			ReloadTest: strings.Fields(s.Labels[ReloadTestLabel]), Reload: strings.Fields(s.Labels[ReloadLabel])}
		for _, v := range s.Volumes {
			if v.Type == "bind" {
				svc.BindSources = append(svc.BindSources, v.Source)
			}
		}
		for dep := range s.DependsOn {
			svc.DependsOn = append(svc.DependsOn, dep)
		}
		sort.Strings(svc.DependsOn)
		if s.Build != nil && s.Build.Context != "" {
			svc.BuildContext, svc.Dockerfile = s.Build.Context, s.Build.Dockerfile
			if !filepath.IsAbs(svc.BuildContext) {
				svc.BuildContext = filepath.Join(p.Dir, svc.BuildContext)
			}
		}
		out = append(out, svc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Build builds the images of the given services (every service with a build section when none
// is given).
func (p Project) Build(ctx context.Context, services ...string) error {
	_, err := p.run(ctx, append([]string{"build"}, services...)...)
	return err
}

// Up creates or recreates the given services (all when none is given) and their dependencies
// where needed, and starts them, without building; containers of services the project no longer
// defines are removed. It does not use --no-deps: Compose hashes a service's configuration
// without its depends_on then, and the container would never match `config --hash` again.
func (p Project) Up(ctx context.Context, services ...string) error {
	args := append([]string{"up", "--detach", "--no-build", "--remove-orphans"}, services...)
	_, err := p.run(ctx, args...)
	return err
}

// Restart restarts the given services' containers, as they are: a service that reads files
// from a mounted directory only when it starts sees them changed.
func (p Project) Restart(ctx context.Context, services ...string) error {
	_, err := p.run(ctx, append([]string{"restart"}, services...)...)
	return err
}

// WriteDigestOverride writes a compose override file to path that labels each service with a
// digest of its build context and the bind-mounted files that come with the release. resolve
// maps a path as Compose reports it to the path of the release's copy of it, or "" for a path
// whose content is not part of the release (generated secrets, host paths): those are left out.
func WriteDigestOverride(path string, services []Service, resolve func(string) string) error {
	type labelled struct {
		Labels map[string]string `yaml:"labels"`
	}
	doc := struct {
		Services map[string]labelled `yaml:"services"`
	}{Services: map[string]labelled{}}
	for _, s := range services {
		h := sha256.New()
		for i, p := range append([]string{s.BuildContext}, s.BindSources...) {
			local := ""
			if p != "" {
				local = resolve(p)
			}
			if local == "" {
				continue
			}
			var d string
			var err error
			if i == 0 {
				d, err = HashContext(local, s.Dockerfile) // what Docker sends to the build, not the whole directory
			} else {
				d, err = HashTree(local)
			}
			if err != nil {
				return fmt.Errorf("service %s: %w", s.Name, err)
			}
			fmt.Fprintf(h, "%s=%s\n", p, d)
		}
		doc.Services[s.Name] = labelled{Labels: map[string]string{DigestLabel: hex.EncodeToString(h.Sum(nil))[:32]}}
	}
	var buf bytes.Buffer
	buf.WriteString("# Generated by the agent: content digests, so that changed files recreate their services.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("digest override: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("digest override: %w", err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// HashTree digests a file, or every file under a directory (paths, modes, contents, symlink
// targets), in a stable order. A path that does not exist digests as empty.
func HashTree(dir string) (string, error) { return hashTree(dir, nil) }

// HashContext digests a build context as Docker sends it: HashTree without the paths its
// ignore file excludes, which is <dockerfile>.dockerignore beside the Dockerfile when there is
// one (dockerfile relative to dir; "" for the default), else the context's .dockerignore. A
// context that is the whole repository with a .dockerignore keeping only the Go sources
// (lb-health, docker-proxy) must not change, and recreate its services, on every commit to the
// page.
func HashContext(dir, dockerfile string) (string, error) {
	ignoreFile := filepath.Join(dir, ".dockerignore")
	if dockerfile != "" && !filepath.IsAbs(dockerfile) {
		if own := filepath.Join(dir, dockerfile+".dockerignore"); fileExists(own) {
			ignoreFile = own
		}
	}
	f, err := os.Open(ignoreFile)
	if os.IsNotExist(err) {
		return hashTree(dir, nil)
	}
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", dir, err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return "", fmt.Errorf("digest %s: read .dockerignore: %w", dir, err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return "", fmt.Errorf("digest %s: .dockerignore: %w", dir, err)
	}
	tree, err := hashTree(dir, pm)
	if err != nil {
		return "", err
	}
	// The Dockerfile and the ignore file shape the image even where the ignore file leaves
	// them out of the context (stack/alertmanager/Dockerfile*): they count then too.
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	extra := ""
	for _, f := range []string{filepath.Join(dir, dockerfile), ignoreFile} {
		rel, err := filepath.Rel(dir, f)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		if ok, _ := pm.MatchesOrParentMatches(filepath.ToSlash(rel)); !ok {
			continue // in the context: already counted
		}
		d, err := HashTree(f)
		if err != nil {
			return "", err
		}
		extra += rel + "=" + d + "\n"
	}
	if extra == "" {
		return tree, nil
	}
	h := sha256.Sum256([]byte(tree + "\n" + extra))
	return hex.EncodeToString(h[:]), nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// hashTree is HashTree, leaving out what ignore matches (nil: nothing). The .dockerignore
// itself always counts.
func hashTree(dir string, ignore *patternmatcher.PatternMatcher) (string, error) {
	if _, err := os.Lstat(dir); os.IsNotExist(err) {
		return hex.EncodeToString(sha256.New().Sum(nil)), nil
	}
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if ignore != nil && rel != "." && rel != ".dockerignore" {
			skip, err := ignore.MatchesOrParentMatches(filepath.ToSlash(rel))
			if err != nil {
				return err
			}
			if skip {
				if d.IsDir() && !ignore.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%o\x00", rel, info.Mode())
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			h.Write([]byte(target))
		case d.Type().IsRegular():
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		h.Write([]byte{0})
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
