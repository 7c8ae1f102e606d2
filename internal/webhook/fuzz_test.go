package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fuzzProviders are the ways a request authenticates: its event header, and how it carries
// the proof (sign makes the header's value from the body and the secret).
type fuzzProvider struct {
	name        string // Push.Provider
	eventHeader string
	authHeader  string
	sign        func(body, secret []byte) string
	hmac        bool
}

var fuzzProviders = []fuzzProvider{
	{ProviderGitHub, "X-GitHub-Event", "X-Hub-Signature-256", func(b, s []byte) string { return "sha256=" + sign(s, b) }, true},
	{ProviderGitea, "X-Gitea-Event", "X-Gitea-Signature", func(b, s []byte) string { return sign(s, b) }, true},
	{ProviderGitea, "X-Gitea-Event", "X-Hub-Signature-256", func(b, s []byte) string { return "sha256=" + sign(s, b) }, true},
	{ProviderForgejo, "X-Forgejo-Event", "X-Forgejo-Signature", func(b, s []byte) string { return sign(s, b) }, true},
	{ProviderGitLab, "X-Gitlab-Event", "X-Gitlab-Token", func(_, s []byte) string { return string(s) }, false},
}

// Fuzz modes: how the request is made from the inputs.
const (
	modeSigned   = iota // the proof made with the secret
	modeForged          // the proof header set to the fuzzed value
	modeTampered        // signed, then one byte of the body changed
	modeOversize        // signed, with a body over MaxBodyBytes
	numModes
)

// hmacKey is the key HMAC-SHA256 really uses: a key longer than the block is hashed, and any
// key is padded with zero bytes. Two secrets with the same hmacKey sign alike: that is HMAC,
// not a flaw of Verify ("s" and "s\x00" are one key).
func hmacKey(secret []byte) string {
	if len(secret) > sha256.BlockSize {
		sum := sha256.Sum256(secret)
		secret = sum[:]
	}
	return string(bytes.TrimRight(secret, "\x00"))
}

// FuzzVerify: Verify never panics; a request made with a secret never verifies with another;
// the right proof is never refused as unauthorized, a forged or tampered one always is; a body
// over the limit is refused; every error says it is the webhook's; a push it returns is whole.
func FuzzVerify(f *testing.F) {
	for _, s := range []struct {
		provider uint8
		event    string
		fixture  string
	}{
		{0, "push", "github_push.json"},
		{0, "push", "github_tag_push.json"},
		{0, "ping", "github_ping.json"},
		{0, "push", "github_branch_delete.json"},
		{1, "push", "gitea_push.json"},
		{2, "push", "gitea_push.json"},
		{3, "create", "gitea_create.json"},
		{4, "Push Hook", "gitlab_push.json"},
		{4, "Tag Push Hook", "gitlab_tag_push.json"},
	} {
		body := fixture(f, s.fixture)
		for mode := range uint8(numModes) {
			f.Add(s.provider, mode, s.event, "application/json", body, secret, []byte("another secret"), "sha256=00")
		}
	}
	f.Add(uint8(0), uint8(modeSigned), "push", "application/x-www-form-urlencoded",
		[]byte(`payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%2C%22after%22%3A%2259b2%22%7D`), secret, []byte("s\x00"), "")
	f.Add(uint8(4), uint8(modeForged), "Push Hook", "", []byte(`{"ref":"refs/heads/main","after":"1"}`), []byte("t"), []byte("T"), "t ")

	f.Fuzz(func(t *testing.T, provider, mode uint8, event, contentType string, body, secret, other []byte, forged string) {
		p := fuzzProviders[int(provider)%len(fuzzProviders)]
		mode %= numModes
		proof := p.sign(body, secret)
		switch mode {
		case modeForged:
			proof = forged
		case modeTampered:
			if len(body) == 0 {
				return
			}
			tampered := bytes.Clone(body)
			tampered[len(tampered)/2] ^= 0x01
			body = tampered // signed before the change
		case modeOversize:
			body = append(bytes.Clone(body), bytes.Repeat([]byte(" "), MaxBodyBytes+1)...)
			proof = p.sign(body, secret)
		}
		request := func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
			r.Header.Set("Content-Type", contentType)
			r.Header.Set(p.eventHeader, event)
			r.Header.Set(p.authHeader, proof)
			return r
		}

		push, err := Verify(request(), secret)
		checkOutcome(t, p.name, push, err)
		authentic := len(secret) > 0 && event != ""
		switch mode {
		case modeSigned:
			if authentic && errors.Is(err, ErrUnauthorized) {
				t.Fatalf("a request signed with the secret is refused: %v", err)
			}
		case modeForged:
			if !p.proves(forged, body, secret) && !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("a forged %s %q is not refused: %v", p.authHeader, forged, err)
			}
		case modeTampered:
			if p.hmac && !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("a tampered body is not refused: %v", err)
			}
		case modeOversize:
			if err == nil || authentic && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("a signed body over the limit: %v, want ErrTooLarge", err)
			}
		}

		// A request made with the secret never verifies with another.
		sameKey := bytes.Equal(other, secret) || p.hmac && hmacKey(other) == hmacKey(secret)
		if mode == modeForged || sameKey {
			return
		}
		push, err = Verify(request(), other)
		checkOutcome(t, p.name, push, err)
		if err == nil || errors.Is(err, ErrIgnored) || !errors.Is(err, ErrUnauthorized) && !(p.hmac && errors.Is(err, ErrTooLarge)) {
			t.Fatalf("made with secret %q, verified with %q: %v (%+v)", secret, other, err, push)
		}
	})
}

// proves tells whether proof, as Verify reads the provider's header, is the right one for body
// and secret: the token itself, or the HMAC in hex (any case), after "sha256=" where that
// header wants it.
func (p fuzzProvider) proves(proof string, body, secret []byte) bool {
	if len(secret) == 0 {
		return false
	}
	if !p.hmac {
		return proof == string(secret)
	}
	if p.authHeader == "X-Hub-Signature-256" {
		var ok bool
		if proof, ok = strings.CutPrefix(proof, "sha256="); !ok {
			return false
		}
	}
	got, err := hex.DecodeString(proof)
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return err == nil && hmac.Equal(got, mac.Sum(nil))
}

// checkOutcome: an error is the webhook's own, and a push is whole.
func checkOutcome(t *testing.T, provider string, push Push, err error) {
	t.Helper()
	if err != nil {
		if !strings.HasPrefix(err.Error(), "webhook: ") {
			t.Fatalf("error %q does not say it is the webhook's", err)
		}
		if push != (Push{}) {
			t.Fatalf("error %v with a push %+v", err, push)
		}
		return
	}
	if push.Provider != provider || push.Ref == "" || push.After == "" || strings.Trim(push.After, "0") == "" {
		t.Fatalf("push %+v from %s", push, provider)
	}
}

// FuzzReadBody: the body limit holds for any reader and length.
func FuzzReadBody(f *testing.F) {
	f.Add(uint32(0))
	f.Add(uint32(MaxBodyBytes))
	f.Add(uint32(MaxBodyBytes + 1))
	f.Fuzz(func(t *testing.T, n uint32) {
		n %= 2*MaxBodyBytes + 2
		body, err := readBody(io.LimitReader(zeros{}, int64(n)))
		switch {
		case n <= MaxBodyBytes && (err != nil || len(body) != int(n)):
			t.Fatalf("%d bytes: %d read, %v", n, len(body), err)
		case n > MaxBodyBytes && !errors.Is(err, ErrTooLarge):
			t.Fatalf("%d bytes: %v, want ErrTooLarge", n, err)
		}
	})
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
