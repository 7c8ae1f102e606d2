package gitsource

import (
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
)

// sshDialTimeout bounds the TCP connect of an ssh fetch; go-git does not
// pass the fetch's context to its ssh dialer.
const sshDialTimeout = 30 * time.Second

// hostKeyFailure records why the host key callback refused a server during
// one fetch, so the fetch error can say what to do about it whatever way
// the transport wrapped the callback's error.
type hostKeyFailure struct {
	host    string // host:port as dialled
	changed bool   // the host is known with another key (else: unknown host)
	err     error
}

// auth builds the go-git auth method for one fetch. For ssh it also returns
// the record that the host key callback fills on refusal.
func (s *Source) auth() (transport.AuthMethod, *hostKeyFailure, error) {
	switch s.kind {
	case kindHTTP:
		if s.opts.Token == "" {
			return nil, nil, nil
		}
		return &githttp.BasicAuth{Username: s.opts.Username, Password: s.opts.Token}, nil, nil
	case kindSSH:
		return s.sshAuth()
	default:
		return nil, nil, nil
	}
}

func (s *Source) sshAuth() (transport.AuthMethod, *hostKeyFailure, error) {
	ep, err := transport.NewEndpoint(s.url)
	if err != nil {
		return nil, nil, fmt.Errorf("parse ssh URL %s: %w", s.DisplayURL(), err)
	}
	user := ep.User
	if user == "" {
		user = "git"
	}
	port := ep.Port
	if port == 0 {
		port = 22
	}
	hostWithPort := net.JoinHostPort(ep.Host, strconv.Itoa(port))

	pem, err := os.ReadFile(s.opts.SSHKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read ssh key (source.ssh_key_file): %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, nil, fmt.Errorf("read ssh key %s (source.ssh_key_file): the key is protected by a passphrase: use a key without one (ssh-keygen -p -N '' -f KEY)", s.opts.SSHKeyFile)
		}
		return nil, nil, fmt.Errorf("parse ssh key %s (source.ssh_key_file): %w", s.opts.SSHKeyFile, err)
	}

	if _, err := os.Stat(s.opts.KnownHostsFile); err != nil {
		return nil, nil, fmt.Errorf("read known_hosts (source.known_hosts_file): %w", err)
	}
	db, err := knownhosts.NewDB(s.opts.KnownHostsFile)
	if err != nil {
		return nil, nil, fmt.Errorf("parse known_hosts %s (source.known_hosts_file): %w", s.opts.KnownHostsFile, err)
	}
	check := db.HostKeyCallback()
	failure := &hostKeyFailure{}
	callback := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := check(hostname, remote, key)
		if err != nil {
			failure.host = hostWithPort
			failure.changed = knownhosts.IsHostKeyChanged(err)
			failure.err = err
		}
		return err
	}
	return &sshAuth{
		user:     user,
		signer:   signer,
		callback: callback,
		algos:    db.HostKeyAlgorithms(hostWithPort),
	}, failure, nil
}

// sshAuth is a go-git ssh auth method with a private key, a known_hosts
// callback that cannot be bypassed, and a dial timeout.
type sshAuth struct {
	user     string
	signer   ssh.Signer
	callback ssh.HostKeyCallback
	algos    []string
}

var _ gitssh.AuthMethod = (*sshAuth)(nil)

// Name implements transport.AuthMethod.
func (a *sshAuth) Name() string { return gitssh.PublicKeysName }

// String implements transport.AuthMethod; it shows no secret.
func (a *sshAuth) String() string { return "user: " + a.user + ", name: " + a.Name() }

// ClientConfig implements gitssh.AuthMethod.
func (a *sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	return &ssh.ClientConfig{
		User:              a.user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(a.signer)},
		HostKeyCallback:   a.callback,
		HostKeyAlgorithms: a.algos,
		Timeout:           sshDialTimeout,
	}, nil
}

// explainFetchError turns a transport error into one that says what to do
// next, wrapping ErrAuth, ErrHostKey or ErrNotFound where they apply.
func (s *Source) explainFetchError(err error, hk *hostKeyFailure) error {
	u := s.DisplayURL()
	switch {
	case hk != nil && hk.err != nil:
		host, port, _ := net.SplitHostPort(hk.host)
		scan := "ssh-keyscan " + host
		if port != "22" {
			scan = "ssh-keyscan -p " + port + " " + host
		}
		if hk.changed {
			return fmt.Errorf("%w: the host key of %s does not match known_hosts file %s (source.known_hosts_file): the server's key changed or the connection is intercepted; if the change is expected, replace its line with the output of %s: %w",
				ErrHostKey, hk.host, s.opts.KnownHostsFile, scan, err)
		}
		return fmt.Errorf("%w: the host key of %s is not in known_hosts file %s (source.known_hosts_file): add it with %s >> %s: %w",
			ErrHostKey, hk.host, s.opts.KnownHostsFile, scan, s.opts.KnownHostsFile, err)
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		if s.opts.Token == "" {
			return fmt.Errorf("%w for %s: the server wants credentials: set the token (source.token_file): %w", ErrAuth, u, err)
		}
		return fmt.Errorf("%w for %s: check the token (source.token_file) and the user (source.username): %w", ErrAuth, u, err)
	case s.kind == kindSSH && strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Errorf("%w for %s: check that the public key of source.ssh_key_file (%s) is authorized for the user in the URL: %w",
			ErrAuth, u, s.opts.SSHKeyFile, err)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		hint := "check source.url"
		if s.kind == kindHTTP {
			hint = "check source.url (private repositories also answer this when the token cannot read them)"
		}
		return fmt.Errorf("fetch %s: repository %w: %s: %w", u, ErrNotFound, hint, err)
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return fmt.Errorf("fetch %s: the repository is empty: push a commit to it: %w", u, err)
	case s.kind == kindLocal && strings.Contains(err.Error(), "does not appear to be a git repository"),
		s.kind == kindLocal && strings.Contains(err.Error(), "not a git repository"):
		return fmt.Errorf("fetch %s: repository %w: check source.url: %w", u, ErrNotFound, err)
	default:
		return fmt.Errorf("fetch %s: %w", u, err)
	}
}

// redactURL removes a password from url and every occurrence of token.
func redactURL(url, token string) string {
	if u, err := neturl.Parse(url); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			url = u.Redacted()
		}
	}
	return redactString(url, token)
}

// redactString replaces every occurrence of secret in s.
func redactString(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "REDACTED")
}

// userinfo parses the user and password of a URL.
func userinfo(url string) (user, pass string, hasPass bool) {
	u, err := neturl.Parse(url)
	if err != nil || u.User == nil {
		return "", "", false
	}
	pass, hasPass = u.User.Password()
	return u.User.Username(), pass, hasPass
}

// redactedError carries an error whose message has had a secret removed. It
// still unwraps to the original so errors.Is keeps working; only its own
// Error text is safe to show.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact returns err with the token removed from its message.
func (s *Source) redact(err error) error {
	if err == nil || s.opts.Token == "" || !strings.Contains(err.Error(), s.opts.Token) {
		return err
	}
	return &redactedError{msg: redactString(err.Error(), s.opts.Token), err: err}
}
