//go:build !linux

package binlog

import "os"

// freeSpace is not known here: a full disk shows as a failed write.
func freeSpace(dir string) (free int64, ok bool) { return 0, false }

// lockSpool takes no lock here: spools left by a killed process are not swept.
func lockSpool(dir string) (*os.File, error) { return nil, nil }

// spoolAbandoned is false here: nothing tells.
func spoolAbandoned(dir string) bool { return false }
