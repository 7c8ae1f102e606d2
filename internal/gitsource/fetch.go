package gitsource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// remoteName is the name of the mirror's only remote.
const remoteName = "origin"

// mirrorRefSpecs copy the remote's branches and tags as they are: forced
// (a force-pushed branch or a moved tag is followed) and pruned.
var mirrorRefSpecs = []config.RefSpec{
	"+refs/heads/*:refs/heads/*",
	"+refs/tags/*:refs/tags/*",
}

// pinRefPrefix holds refs that keep a pinned commit fetched by its hash
// (one that no branch or tag reaches) from being lost. Pruning does not
// touch it.
const pinRefPrefix = "refs/hastack/pinned/"

// acquire takes the Source's lock, or gives up when ctx ends.
func (s *Source) acquire(ctx context.Context) (release func(), err error) {
	select {
	case s.lock <- struct{}{}:
		return func() { <-s.lock }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Fetch brings the mirror up to date with the remote (cloning it on first
// use) and resolves Options.Ref to a commit.
//
// A branch or tag is fetched every time, with forced updates and pruning.
// A pinned commit already in the mirror is returned without touching the
// network (a commit never changes); otherwise branches and tags are fetched
// and, if the commit is still missing, the commit itself by its hash (which
// the server must allow). The whole operation is bounded by ctx, except the
// TCP connect of ssh, which has its own 30 s timeout.
func (s *Source) Fetch(ctx context.Context) (Revision, error) {
	release, err := s.acquire(ctx)
	if err != nil {
		return Revision{}, fmt.Errorf("fetch %s: %w", s.DisplayURL(), err)
	}
	defer release()

	repo, err := s.openOrInitMirror()
	if err != nil {
		return Revision{}, err
	}

	if isCommitHash(s.opts.Ref) {
		return s.fetchPinned(ctx, repo)
	}
	if err := s.fetch(ctx, repo, mirrorRefSpecs, true); err != nil {
		return Revision{}, err
	}
	name, hash, err := s.resolveRef(repo)
	if err != nil {
		return Revision{}, err
	}
	return revision(repo, hash, name.String())
}

// fetchPinned makes sure the pinned commit is in the mirror.
func (s *Source) fetchPinned(ctx context.Context, repo *git.Repository) (Revision, error) {
	hash := plumbing.NewHash(s.opts.Ref)
	if hasCommit(repo, hash) {
		return revision(repo, hash, hash.String())
	}
	if err := s.fetch(ctx, repo, mirrorRefSpecs, true); err != nil {
		return Revision{}, err
	}
	if !hasCommit(repo, hash) {
		spec := config.RefSpec(hash.String() + ":" + pinRefPrefix + hash.String())
		if err := s.fetch(ctx, repo, []config.RefSpec{spec}, false); err != nil && ctx.Err() != nil {
			return Revision{}, err
		}
		// Any other failure (the server does not allow fetching by hash,
		// or does not have the commit) is reported as not found below.
	}
	if !hasCommit(repo, hash) {
		return Revision{}, fmt.Errorf("resolve source.ref: commit %s %w in %s: push it to a branch or tag of the repository, or fix source.ref",
			hash, ErrNotFound, s.DisplayURL())
	}
	return revision(repo, hash, hash.String())
}

// fetch runs one fetch of specs from the remote into the mirror.
func (s *Source) fetch(ctx context.Context, repo *git.Repository, specs []config.RefSpec, prune bool) error {
	auth, hostKey, err := s.auth()
	if err != nil {
		return s.redact(err)
	}
	err = repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: remoteName,
		RemoteURL:  s.url,
		RefSpecs:   specs,
		Auth:       auth,
		Tags:       git.NoTags, // the tag refspec fetches (and prunes) every tag
		Force:      true,
		Prune:      prune,
	})
	if err == nil || errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return s.redact(fmt.Errorf("fetch %s: %w (%v)", s.DisplayURL(), ctxErr, err))
	}
	return s.redact(s.explainFetchError(err, hostKey))
}

// openOrInitMirror opens the bare mirror, creating it first if needed. A new
// mirror is made in a temporary directory and renamed into place, so a crash
// never leaves a half-made one.
func (s *Source) openOrInitMirror() (*git.Repository, error) {
	repo, err := git.PlainOpen(s.mirror)
	if err == nil {
		return repo, nil
	}
	if !errors.Is(err, git.ErrRepositoryNotExists) {
		return nil, fmt.Errorf("open mirror %s: %w (delete the directory to clone again)", s.mirror, err)
	}
	if _, statErr := os.Stat(s.mirror); statErr == nil {
		// Not a repository: the remains of something else. Start over.
		if err := os.RemoveAll(s.mirror); err != nil {
			return nil, fmt.Errorf("remove broken mirror %s: %w", s.mirror, err)
		}
	}
	if err := os.MkdirAll(s.opts.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("create cache directory (source.cache_dir): %w", err)
	}
	tmp, err := os.MkdirTemp(s.opts.CacheDir, filepath.Base(s.mirror)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create mirror %s: %w", s.mirror, err)
	}
	defer os.RemoveAll(tmp) // no-op once renamed
	initRepo, err := git.PlainInit(tmp, true)
	if err != nil {
		return nil, fmt.Errorf("create mirror %s: %w", s.mirror, err)
	}
	_, err = initRepo.CreateRemote(&config.RemoteConfig{
		Name:  remoteName,
		URLs:  []string{redactURL(s.url, s.opts.Token)},
		Fetch: mirrorRefSpecs,
	})
	if err != nil {
		return nil, fmt.Errorf("create mirror %s: %w", s.mirror, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("create mirror %s: %w", s.mirror, err)
	}
	if err := os.Rename(tmp, s.mirror); err != nil {
		return nil, fmt.Errorf("create mirror %s: %w", s.mirror, err)
	}
	repo, err = git.PlainOpen(s.mirror)
	if err != nil {
		return nil, fmt.Errorf("open mirror %s: %w", s.mirror, err)
	}
	return repo, nil
}

// openMirror opens an existing mirror for reading.
func (s *Source) openMirror() (*git.Repository, error) {
	repo, err := git.PlainOpen(s.mirror)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return nil, fmt.Errorf("open mirror %s: it does not exist yet: call Fetch first", s.mirror)
	}
	if err != nil {
		return nil, fmt.Errorf("open mirror %s: %w", s.mirror, err)
	}
	return repo, nil
}

// resolveRef finds the ref that Options.Ref names: a full ref name as is,
// else a branch or a tag (an ambiguous name is an error), peeled to a commit.
func (s *Source) resolveRef(repo *git.Repository) (plumbing.ReferenceName, plumbing.Hash, error) {
	ref := s.opts.Ref
	var candidates []plumbing.ReferenceName
	if strings.HasPrefix(ref, "refs/") {
		candidates = []plumbing.ReferenceName{plumbing.ReferenceName(ref)}
	} else {
		candidates = []plumbing.ReferenceName{plumbing.NewBranchReferenceName(ref), plumbing.NewTagReferenceName(ref)}
	}
	var found []*plumbing.Reference
	for _, name := range candidates {
		r, err := repo.Reference(name, true)
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			continue
		}
		if err != nil {
			return "", plumbing.ZeroHash, fmt.Errorf("resolve source.ref %s: %w", name, err)
		}
		found = append(found, r)
	}
	switch len(found) {
	case 0:
		return "", plumbing.ZeroHash, fmt.Errorf("resolve source.ref: ref %s %w in %s: set source.ref to an existing branch, tag or commit (%s)",
			ref, ErrNotFound, s.DisplayURL(), listRefs(repo))
	case 1:
	default:
		return "", plumbing.ZeroHash, fmt.Errorf("resolve source.ref: %s is both a branch and a tag in %s: set source.ref to refs/heads/%s or refs/tags/%s",
			ref, s.DisplayURL(), ref, ref)
	}
	hash, err := peel(repo, found[0].Hash())
	if err != nil {
		return "", plumbing.ZeroHash, fmt.Errorf("resolve source.ref %s: %w", found[0].Name(), err)
	}
	return found[0].Name(), hash, nil
}

// peel follows annotated tags to the commit they point at.
func peel(repo *git.Repository, hash plumbing.Hash) (plumbing.Hash, error) {
	for range 10 {
		tag, err := repo.TagObject(hash)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			break // not a tag object
		}
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if tag.TargetType != plumbing.CommitObject && tag.TargetType != plumbing.TagObject {
			return plumbing.ZeroHash, fmt.Errorf("tag %s points at a %s, not a commit", tag.Name, tag.TargetType)
		}
		hash = tag.Target
	}
	if _, err := repo.CommitObject(hash); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("commit %s: %w", hash, err)
	}
	return hash, nil
}

// listRefs names up to ten branches and ten tags, for error messages.
func listRefs(repo *git.Repository) string {
	var heads, tags []string
	iter, err := repo.References()
	if err != nil {
		return "could not list refs"
	}
	_ = iter.ForEach(func(r *plumbing.Reference) error {
		switch {
		case r.Name().IsBranch():
			heads = append(heads, r.Name().Short())
		case r.Name().IsTag():
			tags = append(tags, r.Name().Short())
		}
		return nil
	})
	return "branches: " + shortList(heads) + "; tags: " + shortList(tags)
}

func shortList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	sort.Strings(names)
	const max = 10
	if len(names) > max {
		return strings.Join(names[:max], ", ") + fmt.Sprintf(" and %d more", len(names)-max)
	}
	return strings.Join(names, ", ")
}

// revision describes commit hash, reached through ref.
func revision(repo *git.Repository, hash plumbing.Hash, ref string) (Revision, error) {
	c, err := repo.CommitObject(hash)
	if err != nil {
		return Revision{}, fmt.Errorf("read commit %s: %w", hash, err)
	}
	subject, _, _ := strings.Cut(strings.TrimLeft(c.Message, "\n"), "\n")
	return Revision{
		Commit:  hash.String(),
		Ref:     ref,
		Subject: strings.TrimSpace(subject),
		Author:  c.Author.Name + " <" + c.Author.Email + ">",
		Time:    c.Committer.When,
	}, nil
}

// isCommitHash tells whether s is a full 40-hex commit id.
func isCommitHash(s string) bool { return len(s) == 40 && plumbing.IsHash(s) }

// hasCommit tells whether the mirror holds commit hash.
func hasCommit(repo *git.Repository, hash plumbing.Hash) bool {
	_, err := repo.CommitObject(hash)
	return err == nil
}

// parseCommit checks that commit is a full hash naming a commit of the mirror.
func (s *Source) parseCommit(repo *git.Repository, commit string) (*object.Commit, error) {
	if !isCommitHash(commit) {
		return nil, fmt.Errorf("%q is not a full 40-hex commit id", commit)
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("commit %s %w in the mirror of %s: fetch first", commit, ErrNotFound, s.DisplayURL())
	}
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", commit, err)
	}
	return c, nil
}

// IsAncestor tells whether ancestor is descendant or one of its ancestors.
// Both commits must already be in the mirror (see Fetch).
func (s *Source) IsAncestor(ctx context.Context, ancestor, descendant string) (bool, error) {
	release, err := s.acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("check ancestry: %w", err)
	}
	defer release()
	repo, err := s.openMirror()
	if err != nil {
		return false, fmt.Errorf("check ancestry: %w", err)
	}
	a, err := s.parseCommit(repo, ancestor)
	if err != nil {
		return false, fmt.Errorf("check ancestry: %w", err)
	}
	d, err := s.parseCommit(repo, descendant)
	if err != nil {
		return false, fmt.Errorf("check ancestry: %w", err)
	}
	seen := map[plumbing.Hash]bool{d.Hash: true}
	queue := []*object.Commit{d}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("check ancestry of %s: %w", ancestor, err)
		}
		c := queue[0]
		queue = queue[1:]
		if c.Hash == a.Hash {
			return true, nil
		}
		for _, p := range c.ParentHashes {
			if seen[p] {
				continue
			}
			seen[p] = true
			pc, err := repo.CommitObject(p)
			if err != nil {
				return false, fmt.Errorf("check ancestry: read commit %s: %w", p, err)
			}
			queue = append(queue, pc)
		}
	}
	return false, nil
}
