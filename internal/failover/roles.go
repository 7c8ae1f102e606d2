package failover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/docker"
)

// RolesFile is who is who: the primary's address, and the quarantined servers' addresses.
type RolesFile struct {
	Primary     string   `json:"primary"`
	Quarantined []string `json:"quarantined,omitempty"`
	// Reseed are the servers asked to copy the primary's data again (RequestReseed): address
	// to request token. A server's entrypoint carries out a token once.
	Reseed map[string]string `json:"reseed,omitempty"`
	// Fenced are the servers the agent stopped and starts again until they rejoin (kept in the
	// agent's cache only: the containers do not need it).
	Fenced []string `json:"fenced,omitempty"`
}

// IsQuarantined tells whether the server at addr is quarantined.
func (rf RolesFile) IsQuarantined(addr string) bool { return slices.Contains(rf.Quarantined, addr) }

// Roles is where the roles are kept.
type Roles interface {
	Read(ctx context.Context) (RolesFile, error)
	Write(ctx context.Context, rf RolesFile) error
}

// Volume is a directory in a container's volume (docker.Client's WriteFiles and ReadFile);
// ReadFile's error for a missing file wraps fs.ErrNotExist.
type Volume interface {
	WriteFiles(ctx context.Context, container, dir string, files ...docker.File) error
	ReadFile(ctx context.Context, container, file string) ([]byte, error)
}

// VolumeRoles keeps the roles as two files in the volume the database containers and the web
// servers read (db_state): "primary" holds the primary's address, "quarantined" one address per
// line, "reseed" one "address token" per line. It writes them through Container, which mounts the volume writable at Dir, and caches
// them in CacheFile (the agent's state directory), which every agent process on the host reads:
// a round reads no more than a small local file.
type VolumeRoles struct {
	Volume    Volume
	Container string
	Dir       string
	CacheFile string
	mu        sync.Mutex
}

// Read returns the cached roles; without a cache it reads the volume (Refresh).
func (v *VolumeRoles) Read(ctx context.Context) (RolesFile, error) {
	rf, err := v.readCache()
	if errors.Is(err, fs.ErrNotExist) {
		return v.Refresh(ctx)
	}
	return rf, err
}

func (v *VolumeRoles) readCache() (RolesFile, error) {
	var rf RolesFile
	b, err := os.ReadFile(v.CacheFile)
	if err != nil {
		return rf, err
	}
	if err := json.Unmarshal(b, &rf); err != nil {
		return rf, fmt.Errorf("%s: %w", v.CacheFile, err)
	}
	return rf, nil
}

// Refresh reads the roles from the volume and caches them: the truth, at the agent's start.
func (v *VolumeRoles) Refresh(ctx context.Context) (RolesFile, error) {
	var rf RolesFile
	b, err := v.Volume.ReadFile(ctx, v.Container, v.Dir+"/primary")
	switch {
	case err == nil:
		rf.Primary = strings.TrimSpace(string(b))
		if rf.Primary != "" && net.ParseIP(rf.Primary) == nil {
			return rf, fmt.Errorf("the roles file %s/primary in %s holds %q, not an address", v.Dir, v.Container, rf.Primary)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return rf, err
	}
	b, err = v.Volume.ReadFile(ctx, v.Container, v.Dir+"/quarantined")
	switch {
	case err == nil:
		for _, l := range strings.Fields(string(b)) {
			rf.Quarantined = append(rf.Quarantined, l)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return rf, err
	}
	b, err = v.Volume.ReadFile(ctx, v.Container, v.Dir+"/reseed")
	switch {
	case err == nil:
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 2 {
				if rf.Reseed == nil {
					rf.Reseed = map[string]string{}
				}
				rf.Reseed[f[0]] = f[1]
			}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return rf, err
	}
	if cached, err := v.readCache(); err == nil {
		rf.Fenced = cached.Fenced
	}
	return rf, writeJSON(v.CacheFile, rf)
}

// Write writes the roles into the volume, then the cache.
func (v *VolumeRoles) Write(ctx context.Context, rf RolesFile) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	// Docker's archive API writes a file in place (no rename): a reader may see it empty for an
	// instant. The entrypoint and the page treat an empty file as "not decided" and read again.
	q := strings.Join(rf.Quarantined, "\n")
	if q != "" {
		q += "\n"
	}
	var reseed strings.Builder
	for _, addr := range slices.Sorted(maps.Keys(rf.Reseed)) {
		fmt.Fprintf(&reseed, "%s %s\n", addr, rf.Reseed[addr])
	}
	// One archive, one round trip: a switchover's pause and a failover's outage include it.
	if err := v.Volume.WriteFiles(ctx, v.Container, v.Dir,
		docker.File{Name: "quarantined", Data: []byte(q)},
		docker.File{Name: "reseed", Data: []byte(reseed.String())},
		docker.File{Name: "primary", Data: []byte(rf.Primary + "\n")}); err != nil {
		return err
	}
	return writeJSON(v.CacheFile, rf)
}

// writeJSON replaces file with v's JSON atomically (a temporary file renamed over it).
func writeJSON(file string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// FileObservations keeps the watch's last observation of the primary in a file, for
// `agent db failover` in another process: at every change, and every 2 s while nothing changes.
type FileObservations struct {
	File  string
	mu    sync.Mutex
	saved time.Time
	prev  Observation
}

// Save writes obs unless the same position and state were written in the last 2 s.
func (o *FileObservations) Save(obs Observation) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if time.Since(o.saved) < 2*time.Second && obs.Primary == o.prev.Primary && obs.SemiSyncOn == o.prev.SemiSyncOn && obs.BinlogText == o.prev.BinlogText {
		return nil
	}
	o.saved, o.prev = time.Now(), obs
	return writeJSON(o.File, obs)
}

// Load reads the last saved observation.
func (o *FileObservations) Load() (Observation, error) {
	var obs Observation
	b, err := os.ReadFile(o.File)
	if err != nil {
		return obs, err
	}
	if err := json.Unmarshal(b, &obs); err != nil {
		return obs, fmt.Errorf("%s: %w", o.File, err)
	}
	var perr error
	obs.BinlogPos, perr = parseList(obs.BinlogText)
	return obs, perr
}

// FileLock is an exclusive lock on a file (flock), shared by every agent process on the host
// that changes the databases: the watch, `agent db` and deploys.
type FileLock struct {
	File string
}

// TryLock takes the lock if it is free; unlock releases it.
func (l FileLock) TryLock() (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(l.File, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("database lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("database lock %s: %w", l.File, err)
	}
	return func() { f.Close() }, true, nil
}

// Lock waits for the lock until ctx ends.
func (l FileLock) Lock(ctx context.Context) (unlock func(), err error) {
	for {
		unlock, ok, err := l.TryLock()
		if err != nil || ok {
			return unlock, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("database lock %s is held (a failover, switchover or deploy in progress): %w", l.File, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
