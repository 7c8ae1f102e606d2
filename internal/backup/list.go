package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"
)

// Object is one stored object, its key relative to the store's prefix.
type Object struct {
	Key  string
	Size int64
}

// Catalog reads what a store holds; Get returns ErrNotFound for a missing object.
type Catalog interface {
	List(ctx context.Context) ([]Object, error)
	Get(ctx context.Context, key string) (io.ReadCloser, int64, error)
}

// Entry is one backup in a store: complete when its manifest is there and valid.
type Entry struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Complete bool      `json:"complete"`
	Problem  string    `json:"problem,omitempty"` // why it is not complete
	Manifest *Manifest `json:"manifest,omitempty"`
	Bytes    int64     `json:"bytes"` // all its objects
	Keys     []string  `json:"-"`     // all its objects' keys
	// Auth is what checking the manifest's signature found: set by Authenticate, not by List.
	Auth Authenticity `json:"auth,omitzero"`

	raw []byte // the manifest's bytes as read: what its signature covers
}

// maxManifest bounds what is read as a manifest.
const maxManifest = 16 << 20

// List groups a store's objects by backup, newest first, reading each manifest.
func List(ctx context.Context, c Catalog) ([]Entry, error) {
	objs, err := c.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	byID := map[string]*Entry{}
	for _, o := range objs {
		id, ok := IDFromKey(o.Key)
		if !ok {
			continue
		}
		t, err := ParseID(id)
		if err != nil {
			continue
		}
		e := byID[id]
		if e == nil {
			e = &Entry{ID: id, Time: t, Problem: "no manifest: failed or in progress"}
			byID[id] = e
		}
		e.Bytes += o.Size
		e.Keys = append(e.Keys, o.Key)
	}
	var out []Entry
	for id, e := range byID {
		m, raw, err := readManifest(ctx, c, id)
		switch {
		case err == nil:
			e.Complete, e.Problem, e.Manifest, e.raw = true, "", &m, raw
		case !errors.Is(err, ErrNotFound):
			e.Problem = err.Error()
		}
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out, nil
}

func readManifest(ctx context.Context, c Catalog, id string) (Manifest, []byte, error) {
	b, err := ReadSmall(ctx, c, ManifestKey(id), maxManifest)
	if err != nil {
		return Manifest{}, nil, err
	}
	m, err := DecodeManifest(b)
	if err == nil && m.ID != id {
		err = fmt.Errorf("manifest of %s names backup %s", id, m.ID)
	}
	return m, b, err
}

// TooLargeError is an object larger than ReadSmall was allowed to read.
type TooLargeError struct {
	Key string
	Max int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("read %s: larger than %d bytes", e.Key, e.Max)
}

// ReadSmall reads a whole object of at most max bytes; a larger one is a *TooLargeError.
func ReadSmall(ctx context.Context, c Catalog, key string, max int64) ([]byte, error) {
	rc, _, err := c.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if int64(len(b)) > max {
		return nil, &TooLargeError{Key: key, Max: max}
	}
	return b, nil
}

// Authenticate reads the signature of a complete entry of List and checks it, with keys (nil:
// none configured), against the manifest's bytes as List read them, which are the bytes its
// Manifest was decoded from. It sets e.Auth; an error is a failure to read the signature.
func Authenticate(ctx context.Context, c Catalog, keys *ManifestKeys, e *Entry) error {
	if !e.Complete || e.raw == nil {
		return fmt.Errorf("authenticate backup %s: its manifest was not read (not a complete backup of List)", e.ID)
	}
	sig, err := ReadSmall(ctx, c, SignatureKey(e.ID), maxSignature)
	if errors.Is(err, ErrNotFound) {
		sig, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("authenticate backup %s: %w", e.ID, err)
	}
	e.Auth = keys.Check(e.raw, sig)
	return nil
}

// ErrNotFound is what a Catalog's Get returns (wrapped or not) for a missing object.
var ErrNotFound = errors.New("object not found")
