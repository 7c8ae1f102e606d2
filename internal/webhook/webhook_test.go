package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var secret = []byte("It's a Secret to Everybody")

func sign(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// request builds a webhook request; headers may use the placeholders {sig} (the body's hex
// HMAC with secret) and {badsig} (the HMAC with another key).
func request(body []byte, headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		v = strings.ReplaceAll(v, "{sig}", sign(secret, body))
		v = strings.ReplaceAll(v, "{badsig}", sign([]byte("wrong"), body))
		r.Header.Set(k, v)
	}
	return r
}

func TestVerify(t *testing.T) {
	githubPush := Push{Provider: ProviderGitHub, Ref: "refs/heads/main",
		After: "59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5", Repository: "example-org/hastack"}
	giteaPush := Push{Provider: ProviderGitea, Ref: "refs/heads/main",
		After: "bffeb74224043ba2feb48d137756c8a9331c449a", Repository: "ops/hastack"}
	forgejoPush := giteaPush
	forgejoPush.Provider = ProviderForgejo
	gitlabPush := Push{Provider: ProviderGitLab, Ref: "refs/heads/main",
		After: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", Repository: "ops/hastack"}

	tests := []struct {
		name    string
		body    string // fixture
		headers map[string]string
		secret  []byte // nil: secret
		want    Push
		wantErr error
	}{
		{
			name:    "github push",
			body:    "github_push.json",
			headers: map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256={sig}"},
			want:    githubPush,
		},
		{
			name:    "github tag push",
			body:    "github_tag_push.json",
			headers: map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256={sig}"},
			want: Push{Provider: ProviderGitHub, Ref: "refs/tags/v1.4.0",
				After: "59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5", Repository: "example-org/hastack"},
		},
		{
			name:    "github ping is ignored",
			body:    "github_ping.json",
			headers: map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256={sig}"},
			wantErr: ErrIgnored,
		},
		{
			name:    "github ping with a wrong signature is unauthorized",
			body:    "github_ping.json",
			headers: map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256={badsig}"},
			wantErr: ErrUnauthorized,
		},
		{
			name:    "github branch deletion is ignored",
			body:    "github_branch_delete.json",
			headers: map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256={sig}"},
			wantErr: ErrIgnored,
		},
		{
			name:    "github wrong signature",
			body:    "github_push.json",
			headers: map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256={badsig}"},
			wantErr: ErrUnauthorized,
		},
		{
			name:    "github signature without sha256= prefix",
			body:    "github_push.json",
			headers: map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "{sig}"},
			wantErr: ErrUnauthorized,
		},
		{
			name:    "github signature not hex",
			body:    "github_push.json",
			headers: map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=zz"},
			wantErr: ErrUnauthorized,
		},
		{
			name:    "github missing signature",
			body:    "github_push.json",
			headers: map[string]string{"X-GitHub-Event": "push"},
			wantErr: ErrUnauthorized,
		},
		{
			name:    "github sha1 signature only",
			body:    "github_push.json",
			headers: map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature": "sha1=0123"},
			wantErr: ErrUnauthorized,
		},
		{
			name:    "empty secret authenticates nothing",
			body:    "github_push.json",
			headers: map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256={sig}"},
			secret:  []byte{},
			wantErr: ErrUnauthorized,
		},
		{
			name: "gitea push",
			body: "gitea_push.json",
			headers: map[string]string{"X-Gitea-Event": "push", "X-GitHub-Event": "push",
				"X-Gitea-Signature": "{sig}", "X-Hub-Signature-256": "sha256={sig}"},
			want: giteaPush,
		},
		{
			name:    "gitea push signed only with X-Hub-Signature-256",
			body:    "gitea_push.json",
			headers: map[string]string{"X-Gitea-Event": "push", "X-Hub-Signature-256": "sha256={sig}"},
			want:    giteaPush,
		},
		{
			name: "forgejo push",
			body: "gitea_push.json",
			headers: map[string]string{"X-Forgejo-Event": "push", "X-Gitea-Event": "push",
				"X-Forgejo-Signature": "{sig}"},
			want: forgejoPush,
		},
		{
			name: "gitea wrong signature is not rescued by a good X-Hub-Signature-256",
			body: "gitea_push.json",
			headers: map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": "{badsig}",
				"X-Hub-Signature-256": "sha256={sig}"},
			wantErr: ErrUnauthorized,
		},
		{
			name:    "gitea missing signature",
			body:    "gitea_push.json",
			headers: map[string]string{"X-Gitea-Event": "push"},
			wantErr: ErrUnauthorized,
		},
		{
			name:    "gitea create event is ignored",
			body:    "gitea_create.json",
			headers: map[string]string{"X-Gitea-Event": "create", "X-Gitea-Signature": "{sig}"},
			wantErr: ErrIgnored,
		},
		{
			name:    "gitlab push",
			body:    "gitlab_push.json",
			headers: map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": string(secret)},
			want:    gitlabPush,
		},
		{
			name:    "gitlab tag push",
			body:    "gitlab_tag_push.json",
			headers: map[string]string{"X-Gitlab-Event": "Tag Push Hook", "X-Gitlab-Token": string(secret)},
			want: Push{Provider: ProviderGitLab, Ref: "refs/tags/v1.4.0",
				After: "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7", Repository: "ops/hastack"},
		},
		{
			name:    "gitlab wrong token",
			body:    "gitlab_push.json",
			headers: map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"},
			wantErr: ErrUnauthorized,
		},
		{
			name:    "gitlab token with a prefix of the secret",
			body:    "gitlab_push.json",
			headers: map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": string(secret[:5])},
			wantErr: ErrUnauthorized,
		},
		{
			name:    "gitlab missing token",
			body:    "gitlab_push.json",
			headers: map[string]string{"X-Gitlab-Event": "Push Hook"},
			wantErr: ErrUnauthorized,
		},
		{
			name:    "gitlab merge request is ignored",
			body:    "gitlab_push.json",
			headers: map[string]string{"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": string(secret)},
			wantErr: ErrIgnored,
		},
		{
			name:    "unknown provider",
			body:    "github_push.json",
			headers: map[string]string{"X-Bitbucket-Event": "repo:push", "X-Hub-Signature-256": "sha256={sig}"},
			wantErr: ErrUnauthorized,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := secret
			if tt.secret != nil {
				key = tt.secret
			}
			got, err := Verify(request(fixture(t, tt.body), tt.headers), key)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				if got != (Push{}) {
					t.Errorf("push %+v returned with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestVerifyBodyLimit(t *testing.T) {
	at := bytes.Repeat([]byte(" "), MaxBodyBytes-len(`{}`))
	at = append(append([]byte("{"), at...), '}') // exactly MaxBodyBytes: read, then ignored as a ping
	_, err := Verify(request(at, map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256={sig}"}), secret)
	if !errors.Is(err, ErrIgnored) {
		t.Errorf("body of exactly %d bytes: %v, want ErrIgnored", MaxBodyBytes, err)
	}

	over := append(at, ' ')
	_, err = Verify(request(over, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256={sig}"}), secret)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("body of %d bytes: %v, want ErrTooLarge", len(over), err)
	}
}

func TestVerifyFormEncoded(t *testing.T) {
	body := []byte("payload=" + url.QueryEscape(string(fixture(t, "github_push.json"))))
	r := request(body, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256={sig}"})
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	got, err := Verify(r, secret)
	if err != nil {
		t.Fatal(err)
	}
	if got.After != "59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5" {
		t.Errorf("got %+v", got)
	}
}

func TestVerifyMalformedPush(t *testing.T) {
	for name, body := range map[string]string{
		"not json": `{"ref": `,
		"no ref":   `{"after": "59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5"}`,
		"no after": `{"ref": "refs/heads/main"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Verify(request([]byte(body), map[string]string{"X-GitHub-Event": "push",
				"X-Hub-Signature-256": "sha256={sig}"}), secret)
			if err == nil || errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrIgnored) {
				t.Errorf("error %v, want a malformed-push error", err)
			}
		})
	}
}
