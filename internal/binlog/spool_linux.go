package binlog

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// freeSpace is what an unprivileged process may still write in dir's file system; ok is false
// when the system does not say.
func freeSpace(dir string) (free int64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}

// lockSpool takes the lock that tells sweepSpools the spool's owner lives: an exclusive flock
// on dir/.lock, released by the kernel when the process ends, however it ends.
func lockSpool(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// spoolAbandoned tells whether no process holds the spool in dir (see sweepSpools). One made in
// the last minutes is left alone: its owner may be between making its lock file and locking it.
func spoolAbandoned(dir string) bool {
	st, err := os.Stat(dir)
	if err != nil || time.Since(st.ModTime()) < 5*time.Minute {
		return false
	}
	f, err := os.Open(filepath.Join(dir, ".lock"))
	if err != nil {
		return errors.Is(err, os.ErrNotExist) && time.Since(st.ModTime()) > time.Hour
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}
