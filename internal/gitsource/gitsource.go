// Package gitsource follows one git repository for the agent: it keeps a
// local bare mirror of the repository up to date, resolves the configured
// branch, tag or pinned commit to a commit, and exports the tree of a commit
// (or of one subdirectory of it) as plain files.
//
// It is the only package of the project that imports go-git. Repositories are
// reached over https/http (token as basic-auth password), ssh (private key and
// a mandatory known_hosts file) or the local filesystem (an absolute path or a
// file:// URL, served in process: local.go).
//
// The mirror lives in Options.CacheDir, in a directory named after the
// repository and a hash of its URL (see Source.MirrorDir), so changing the URL
// starts a fresh mirror and never mixes two repositories. It is a normal bare
// repository: refs/heads/* and refs/tags/* mirror the remote's, with forced
// updates and pruning.
package gitsource

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	neturl "net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/hastack/hastack/internal/setting"
)

// DefaultRef is the ref followed when Options.Ref is empty.
const DefaultRef = "main"

// Errors a caller can test for with errors.Is. The error that carries them
// also says, for a person, what to do next.
var (
	// ErrAuth means the server refused the credentials (or wanted some).
	ErrAuth = errors.New("authentication failed")
	// ErrHostKey means the ssh server's host key is not trusted by the
	// configured known_hosts file.
	ErrHostKey = errors.New("ssh host key not trusted")
	// ErrNotFound means a ref, commit, subpath or repository does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnsafeTree means the tree holds something that cannot be exported
	// safely, such as a symlink that points outside the exported directory.
	ErrUnsafeTree = errors.New("unsafe tree")
)

// Options say which repository, which revision, and how to authenticate.
type Options struct {
	// URL of the repository: https://..., http://..., ssh://user@host[:port]/path,
	// user@host:path (scp-like), file:///path, or a local path.
	URL string
	// Ref to follow: a branch name ("main"), a tag ("v1.2"), a full ref name
	// ("refs/heads/x", "refs/tags/y"), or a full 40-hex commit to pin.
	// Default DefaultRef.
	Ref string
	// Username for https basic auth; default "git" when Token is set.
	Username string
	// Token for https (the basic-auth password). It is never logged and is
	// removed from every error message.
	Token string
	// SSHKeyFile is the ssh private key file (unencrypted). Required for ssh URLs.
	SSHKeyFile string
	// KnownHostsFile is the ssh known_hosts file. Required for ssh URLs:
	// there is no insecure host-key default.
	KnownHostsFile string
	// CacheDir is the directory that holds the local bare mirror; created if
	// missing.
	CacheDir string
}

// Revision is a commit that a ref resolved to.
type Revision struct {
	Commit  string    // 40 hex
	Ref     string    // what was resolved, e.g. "refs/heads/main", or the commit for a pin
	Subject string    // first line of the commit message
	Author  string    // "Name <email>"
	Time    time.Time // committer time
}

// transportKind is how a URL is reached.
type transportKind int

const (
	kindLocal transportKind = iota + 1 // a path or file:// URL
	kindHTTP                           // http:// or https://
	kindSSH                            // ssh:// or scp-like
)

// scpLike matches user@host:path and host:path, as git itself does: no
// scheme, and the part before the first colon holds no slash.
var scpLike = regexp.MustCompile(`^(?:[^@/:]+@)?[^@/:]+:[^/]`)

// classify tells how url is reached, or why it cannot be: an unsupported scheme, a URL
// without a host, or a relative path (relative to what? the agent's working directory is
// nobody's choice).
func classify(raw string) (transportKind, error) {
	if i := strings.Index(raw, "://"); i > 0 {
		var kind transportKind
		switch strings.ToLower(raw[:i]) {
		case "https", "http":
			kind = kindHTTP
		case "ssh", "git+ssh", "ssh+git":
			kind = kindSSH
		case "file":
			kind = kindLocal
		default:
			return 0, fmt.Errorf("scheme %q is not supported: use https://, ssh://, file:// or an absolute path", raw[:i])
		}
		u, err := neturl.Parse(raw)
		if err != nil { // its message quotes the URL, which may hold a password
			return 0, errors.New("not a valid URL")
		}
		switch {
		case kind == kindLocal && u.Path == "":
			return 0, errors.New("a file:// URL needs a path")
		case kind != kindLocal && u.Host == "":
			return 0, errors.New("the URL has no host")
		}
		return kind, nil
	}
	switch {
	case filepath.IsAbs(raw):
		return kindLocal, nil
	case scpLike.MatchString(raw) && !strings.HasPrefix(raw, "."):
		return kindSSH, nil
	}
	return 0, fmt.Errorf("%q is neither a URL, an absolute path nor user@host:path", raw)
}

// Validate checks the options without touching the network or the disk: it is the one
// validator of the source's settings (the agent's configuration calls it too). It returns a
// *setting.Error naming the first bad setting. CacheDir is not a setting: New requires it.
func (o Options) Validate() error {
	bad := func(field, problem string) error { return &setting.Error{Field: field, Problem: problem} }
	if strings.TrimSpace(o.URL) == "" {
		return bad("source.url", "required: the git repository to follow")
	}
	kind, err := classify(o.URL)
	if err != nil {
		return bad("source.url", err.Error())
	}
	if _, _, hasPass := userinfo(o.URL); hasPass {
		return bad("source.url", "must not hold a password or token: put the token in source.token_file (https) or use source.ssh_key_file (ssh)")
	}
	if err := validateRef(o.Ref); err != nil {
		return bad("source.ref", err.Error())
	}
	switch kind {
	case kindHTTP:
		if o.SSHKeyFile != "" {
			return bad("source.ssh_key_file", "only used with ssh URLs; source.url is "+redactURL(o.URL, o.Token))
		}
		if o.KnownHostsFile != "" {
			return bad("source.known_hosts_file", "only used with ssh URLs; source.url is "+redactURL(o.URL, o.Token))
		}
	case kindSSH:
		if o.Token != "" {
			return bad("source.token_file", "only used with https URLs: ssh authenticates with source.ssh_key_file")
		}
		if o.Username != "" {
			return bad("source.username", "only used with https URLs: put the ssh user in the URL (ssh://user@host/path)")
		}
		if o.KnownHostsFile == "" {
			return bad("source.known_hosts_file", "required for ssh URLs, host keys are always checked (make one with: ssh-keyscan HOST > known_hosts)")
		}
		if o.SSHKeyFile == "" {
			return bad("source.ssh_key_file", "required for ssh URLs")
		}
	case kindLocal:
		for _, f := range []struct{ name, val string }{
			{"source.token_file", o.Token},
			{"source.username", o.Username},
			{"source.ssh_key_file", o.SSHKeyFile},
			{"source.known_hosts_file", o.KnownHostsFile},
		} {
			if f.val != "" {
				return bad(f.name, "not used with a local repository path")
			}
		}
	}
	return nil
}

// validateRef accepts "", a 40-hex commit, a full ref name under refs/, or a
// short branch or tag name.
func validateRef(ref string) error {
	switch {
	case ref == "":
		return nil
	case plumbing.IsHash(ref) && len(ref) == 40:
		return nil
	case strings.HasPrefix(ref, "refs/"):
		if plumbing.ReferenceName(ref).Validate() != nil {
			return fmt.Errorf("%q is not a valid ref name", ref)
		}
		return nil
	case strings.HasPrefix(ref, "-"):
		return fmt.Errorf("%q is not a valid branch or tag name", ref)
	default:
		if plumbing.ReferenceName("refs/heads/"+ref).Validate() != nil {
			return fmt.Errorf("%q is not a valid branch or tag name", ref)
		}
		return nil
	}
}

// Source follows one repository through a local bare mirror.
//
// A Source may be shared between goroutines: its methods serialize on an
// internal lock (waiting for it is bounded by the context). Two Sources, in
// one process or several, must not use the same CacheDir and URL at once.
type Source struct {
	opts   Options
	kind   transportKind
	url    string // URL as given to go-git (local paths made absolute)
	mirror string // path of the bare mirror
	lock   chan struct{}
}

// New validates o, fills defaults and returns a Source. It does no I/O: the
// mirror is made by the first Fetch.
func New(o Options) (*Source, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("configure git source: %w", err)
	}
	if strings.TrimSpace(o.CacheDir) == "" {
		return nil, errors.New("configure git source: no cache directory")
	}
	if o.Ref == "" {
		o.Ref = DefaultRef
	}
	kind, _ := classify(o.URL)
	if kind == kindHTTP && o.Token != "" && o.Username == "" {
		o.Username = "git"
	}
	url := o.URL
	if kind == kindLocal && !strings.Contains(url, "://") {
		abs, err := filepath.Abs(url)
		if err != nil {
			return nil, fmt.Errorf("configure git source: resolve local path %s: %w", url, err)
		}
		url = abs
	}
	return &Source{
		opts:   o,
		kind:   kind,
		url:    url,
		mirror: filepath.Join(o.CacheDir, mirrorName(url)),
		lock:   make(chan struct{}, 1),
	}, nil
}

// MirrorDir is the bare repository that mirrors the source:
// CacheDir/<last URL element>-<12 hex of the URL's sha256>.git.
func (s *Source) MirrorDir() string { return s.mirror }

// DisplayURL is the source URL with any credential removed, for logs and
// status pages.
func (s *Source) DisplayURL() string { return redactURL(s.url, s.opts.Token) }

// mirrorName names the mirror directory after the repository, plus a hash of
// the URL so two repositories of the same name never share a mirror.
func mirrorName(url string) string {
	sum := sha256.Sum256([]byte(url))
	base := strings.TrimSuffix(strings.TrimRight(url, "/"), ".git")
	if i := strings.LastIndexAny(base, "/:"); i >= 0 {
		base = base[i+1:]
	}
	var b strings.Builder
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := strings.TrimLeft(b.String(), ".")
	if name == "" {
		name = "repo"
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return name + "-" + hex.EncodeToString(sum[:6]) + ".git"
}
