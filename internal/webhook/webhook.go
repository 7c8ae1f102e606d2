// Package webhook authenticates push webhooks from GitHub, Gitea, Forgejo and GitLab and reads
// from them which ref was pushed and to which commit. It does not act on them: the caller starts
// a sync.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// Push is one authenticated push: Ref (e.g. "refs/heads/main" or "refs/tags/v1.2.0") now
// points at After, as the provider reports it. For an annotated tag After may name the tag
// object rather than the commit.
type Push struct {
	Provider   string // one of the Provider constants
	Ref        string
	After      string
	Repository string // "owner/name" or GitLab's path with namespace
}

// Providers, as reported in Push.Provider.
const (
	ProviderGitHub  = "github"
	ProviderGitea   = "gitea"
	ProviderForgejo = "forgejo"
	ProviderGitLab  = "gitlab"
)

// MaxBodyBytes is the largest webhook body Verify reads.
const MaxBodyBytes = 1 << 20

var (
	// ErrUnauthorized means the request's signature or token is missing or wrong, or that it
	// comes from no known provider: answer 401.
	ErrUnauthorized = errors.New("webhook: unauthorized")
	// ErrIgnored means the request is authentic but announces no new commit (a ping, another
	// event, a deleted ref): answer 202 and do nothing.
	ErrIgnored = errors.New("webhook: ignored")
	// ErrTooLarge means the body is over MaxBodyBytes: answer 413.
	ErrTooLarge = errors.New("webhook: body over 1 MiB")
)

// Verify authenticates r against secret and parses the push it announces. The provider is told
// by the request's headers:
//
//   - GitHub: X-GitHub-Event, signed with X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>.
//   - Gitea and Forgejo: X-Gitea-Event or X-Forgejo-Event, signed with X-Gitea-Signature or
//     X-Forgejo-Signature (<hex HMAC-SHA256>), or with X-Hub-Signature-256 when neither is sent.
//   - GitLab: X-Gitlab-Event ("Push Hook" or "Tag Push Hook"), X-Gitlab-Token: <secret>.
//
// An empty secret authenticates nothing. Errors wrap ErrUnauthorized, ErrIgnored or
// ErrTooLarge; any other error is a malformed push (answer 400). Verify reads r.Body.
func Verify(r *http.Request, secret []byte) (Push, error) {
	if len(secret) == 0 {
		return Push{}, fmt.Errorf("%w: no webhook secret is configured", ErrUnauthorized)
	}
	p, event, ok := detect(r.Header)
	if !ok {
		return Push{}, fmt.Errorf("%w: no X-GitHub-Event, X-Gitea-Event, X-Forgejo-Event or X-Gitlab-Event header",
			ErrUnauthorized)
	}
	if p.token != nil { // checked before the body is read
		if err := p.token(r.Header, secret); err != nil {
			return Push{}, err
		}
	}
	body, err := readBody(r.Body)
	if err != nil {
		return Push{}, err
	}
	if p.signature != nil {
		if err := p.signature(r.Header, body, secret); err != nil {
			return Push{}, err
		}
	}
	if !p.isPush(event) {
		return Push{}, fmt.Errorf("%w: %s event %q is not a push", ErrIgnored, p.name, event)
	}
	payload, err := jsonPayload(r.Header, body)
	if err != nil {
		return Push{}, fmt.Errorf("webhook: %s push: %w", p.name, err)
	}
	push, err := p.parse(payload)
	if err != nil {
		return Push{}, fmt.Errorf("webhook: %s push: %w", p.name, err)
	}
	push.Provider = p.name
	switch {
	case push.Ref == "":
		return Push{}, fmt.Errorf("webhook: %s push: no ref", p.name)
	case push.After == "":
		return Push{}, fmt.Errorf("webhook: %s push: no new commit (\"after\")", p.name)
	case strings.Trim(push.After, "0") == "":
		return Push{}, fmt.Errorf("%w: %s push deletes %s", ErrIgnored, p.name, push.Ref)
	}
	return push, nil
}

// provider is how one kind of server authenticates and shapes its webhooks.
type provider struct {
	name      string
	token     func(h http.Header, secret []byte) error       // shared-token providers
	signature func(h http.Header, body, secret []byte) error // HMAC providers
	isPush    func(event string) bool
	parse     func(payload []byte) (Push, error)
}

var (
	github = provider{
		name:      ProviderGitHub,
		signature: hmacHeaders("X-Hub-Signature-256"),
		isPush:    func(e string) bool { return e == "push" },
		parse:     parseGitHubStyle,
	}
	gitea = provider{
		name:      ProviderGitea,
		signature: hmacHeaders("X-Gitea-Signature", "X-Forgejo-Signature", "X-Hub-Signature-256"),
		isPush:    func(e string) bool { return e == "push" },
		parse:     parseGitHubStyle,
	}
	gitlab = provider{
		name:   ProviderGitLab,
		token:  gitlabToken,
		isPush: func(e string) bool { return e == "Push Hook" || e == "Tag Push Hook" },
		parse:  parseGitLab,
	}
)

// detect picks the provider from the event header. Gitea and Forgejo also send X-GitHub-Event,
// so they are looked for first.
func detect(h http.Header) (provider, string, bool) {
	if e := h.Get("X-Forgejo-Event"); e != "" {
		p := gitea
		p.name = ProviderForgejo
		return p, e, true
	}
	if e := h.Get("X-Gitea-Event"); e != "" {
		return gitea, e, true
	}
	if e := h.Get("X-Gitlab-Event"); e != "" {
		return gitlab, e, true
	}
	if e := h.Get("X-GitHub-Event"); e != "" {
		return github, e, true
	}
	return provider{}, "", false
}

func readBody(r io.Reader) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r, MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("webhook: read body: %w", err)
	}
	if len(body) > MaxBodyBytes {
		return nil, ErrTooLarge
	}
	return body, nil
}

// hmacHeaders checks the first of the named headers that is present: a hex HMAC-SHA256 of the
// body, with or without a "sha256=" prefix.
func hmacHeaders(names ...string) func(h http.Header, body, secret []byte) error {
	return func(h http.Header, body, secret []byte) error {
		for _, name := range names {
			v := h.Get(name)
			if v == "" {
				continue
			}
			if name == "X-Hub-Signature-256" {
				var ok bool
				if v, ok = strings.CutPrefix(v, "sha256="); !ok {
					return fmt.Errorf("%w: %s does not start with sha256=", ErrUnauthorized, name)
				}
			}
			got, err := hex.DecodeString(v)
			if err != nil {
				return fmt.Errorf("%w: %s is not hexadecimal", ErrUnauthorized, name)
			}
			mac := hmac.New(sha256.New, secret)
			mac.Write(body)
			if !hmac.Equal(got, mac.Sum(nil)) {
				return fmt.Errorf("%w: %s does not match the body and the secret", ErrUnauthorized, name)
			}
			return nil
		}
		return fmt.Errorf("%w: no %s header", ErrUnauthorized, strings.Join(names, " or "))
	}
}

// gitlabToken compares X-Gitlab-Token with the secret in constant time, length included.
func gitlabToken(h http.Header, secret []byte) error {
	token := h.Get("X-Gitlab-Token")
	if token == "" {
		return fmt.Errorf("%w: no X-Gitlab-Token header", ErrUnauthorized)
	}
	got, want := sha256.Sum256([]byte(token)), sha256.Sum256(secret)
	if !hmac.Equal(got[:], want[:]) {
		return fmt.Errorf("%w: X-Gitlab-Token does not match the secret", ErrUnauthorized)
	}
	return nil
}

// jsonPayload returns the JSON document of the body, which GitHub and Gitea may also send as a
// form with a "payload" field.
func jsonPayload(h http.Header, body []byte) ([]byte, error) {
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return body, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("parse form: %w", err)
	}
	if !form.Has("payload") {
		return nil, errors.New("form has no payload field")
	}
	return []byte(form.Get("payload")), nil
}

// parseGitHubStyle reads a push from GitHub, Gitea and Forgejo, which share its shape.
func parseGitHubStyle(payload []byte) (Push, error) {
	var v struct {
		Ref        string `json:"ref"`
		After      string `json:"after"`
		Repository struct {
			FullName string `json:"full_name"`
		} `json:"repository"`
	}
	if err := json.Unmarshal(payload, &v); err != nil {
		return Push{}, fmt.Errorf("decode: %w", err)
	}
	return Push{Ref: v.Ref, After: v.After, Repository: v.Repository.FullName}, nil
}

func parseGitLab(payload []byte) (Push, error) {
	var v struct {
		Ref     string `json:"ref"`
		After   string `json:"after"`
		Project struct {
			PathWithNamespace string `json:"path_with_namespace"`
		} `json:"project"`
	}
	if err := json.Unmarshal(payload, &v); err != nil {
		return Push{}, fmt.Errorf("decode: %w", err)
	}
	return Push{Ref: v.Ref, After: v.After, Repository: v.Project.PathWithNamespace}, nil
}
