package gitsource

import (
	"context"
	"errors"
	"fmt"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
	"github.com/go-git/go-git/v5/storage"
)

// Local sources (a path or a file:// URL) are served in process by go-git's own upload-pack,
// not by go-git's default file transport. That one runs the git-upload-pack program (and
// `git --exec-path`) without setting their environment, so they would inherit the agent's
// whole environment, secrets included (HASTACK_AGENT_GIT_TOKEN, ..._WEBHOOK_SECRET, AWS_*).
// In process there is no child to inherit anything, and no git CLI is needed.
func init() {
	client.InstallProtocol("file", localTransport{})
}

// localTransport serves local repositories in process. Like git-upload-pack, it lets a fetch
// ask for a commit by its hash only when the repository's uploadpack.allowReachableSHA1InWant,
// allowTipSHA1InWant or allowAnySHA1InWant is set.
type localTransport struct{}

var _ transport.Transport = localTransport{}

// NewUploadPackSession implements transport.Transport.
func (localTransport) NewUploadPackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.UploadPackSession, error) {
	sto, err := openLocal(ep.Path)
	if err != nil {
		return nil, err
	}
	s, err := server.NewClient(loaded{sto}).NewUploadPackSession(ep, auth)
	if err != nil {
		return nil, err
	}
	return &localUploadPack{UploadPackSession: s, hashWants: allowsHashWants(sto)}, nil
}

// NewReceivePackSession implements transport.Transport (the agent never pushes).
func (localTransport) NewReceivePackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.ReceivePackSession, error) {
	sto, err := openLocal(ep.Path)
	if err != nil {
		return nil, err
	}
	return server.NewClient(loaded{sto}).NewReceivePackSession(ep, auth)
}

// openLocal opens the repository at path: a bare one, or a work tree with its .git (go-git's
// server.DefaultLoader reads only bare ones correctly).
func openLocal(path string) (storage.Storer, error) {
	repo, err := git.PlainOpenWithOptions(path, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return nil, transport.ErrRepositoryNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return repo.Storer, nil
}

// loaded is a server.Loader of one repository, already open.
type loaded struct{ sto storer.Storer }

func (l loaded) Load(*transport.Endpoint) (storer.Storer, error) { return l.sto, nil }

// allowsHashWants tells whether the repository's configuration lets a client fetch a commit by
// its hash, as git-upload-pack reads it.
func allowsHashWants(sto storage.Storer) bool {
	cfg, err := sto.Config()
	if err != nil {
		return false
	}
	up := cfg.Raw.Section("uploadpack")
	for _, key := range []string{"allowReachableSHA1InWant", "allowTipSHA1InWant", "allowAnySHA1InWant"} {
		switch strings.ToLower(up.Option(key)) {
		case "true", "yes", "on", "1":
			return true
		}
	}
	return false
}

// localUploadPack advertises allow-reachable-sha1-in-want when the repository allows it.
type localUploadPack struct {
	transport.UploadPackSession
	hashWants bool
}

func (s *localUploadPack) AdvertisedReferences() (*packp.AdvRefs, error) {
	return s.AdvertisedReferencesContext(context.Background())
}

func (s *localUploadPack) AdvertisedReferencesContext(ctx context.Context) (*packp.AdvRefs, error) {
	ar, err := s.UploadPackSession.AdvertisedReferencesContext(ctx)
	if err != nil || !s.hashWants {
		return ar, err
	}
	// The session checks requests against this same list.
	if err := ar.Capabilities.Set(capability.AllowReachableSHA1InWant); err != nil {
		return nil, fmt.Errorf("advertise capabilities: %w", err)
	}
	return ar, nil
}
