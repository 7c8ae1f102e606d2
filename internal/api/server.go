package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// timeouts bound how long one client may hold a connection and its handler.
type timeouts struct {
	header, read, write, idle time.Duration
}

// serverTimeouts: a request's headers within 5 s and its body within 30 s (the webhook's at
// most 1 MiB), the answer within the longest handler (a diff, diffTimeout) plus a margin.
var serverTimeouts = timeouts{header: 5 * time.Second, read: 30 * time.Second, write: diffTimeout + 30*time.Second, idle: 60 * time.Second}

// maxHeaderBytes bounds a request's headers; the API's own need well under 1 KiB.
const maxHeaderBytes = 64 << 10

// NewServer returns an HTTP server for h that times out slow and idle clients, so that slow
// clients hold neither handlers nor connections for long.
func NewServer(h http.Handler) *http.Server { return newServer(h, serverTimeouts) }

func newServer(h http.Handler, t timeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.header,
		ReadTimeout:       t.read,
		WriteTimeout:      t.write,
		IdleTimeout:       t.idle,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}

// DefaultTokenFile is where the agent keeps its API token when api.token_file is not set.
func DefaultTokenFile(stateDir string) string { return filepath.Join(stateDir, "api-token") }

// LoadOrCreateToken reads the API token from path, or creates the file (mode 0600, 32 random
// bytes in hex) when it does not exist yet.
func LoadOrCreateToken(path string) (string, error) {
	tok, err := ReadToken(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	b := make([]byte, 32)
	rand.Read(b)
	tok = hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create API token: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return ReadToken(path) // made by another process in the meantime
	}
	if err != nil {
		return "", fmt.Errorf("create API token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("create API token %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("create API token %s: %w", path, err)
	}
	return tok, nil
}

// ReadToken reads an API token file: one line, not empty.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read API token: %w", err)
	}
	tok := strings.TrimRight(string(b), "\r\n")
	if tok == "" || strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("read API token %s: want one non-empty line", path)
	}
	return tok, nil
}
