package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

func TestValidate(t *testing.T) {
	ok := Options{Bucket: "backups"}
	tests := []struct {
		name  string
		edit  func(*Options)
		field string // "" = valid
	}{
		{"minimal", func(*Options) {}, ""},
		{"full", func(o *Options) {
			*o = Options{Endpoint: "https://s3.example.org:9000/", Region: "eu-west-3", Bucket: "my.backups-1",
				Prefix: "hastack/prod", PathStyle: true, AccessKeyID: "AK", SecretAccessKey: "SK",
				CAFile: "/etc/ca.pem", PartSize: 16 << 20, Concurrency: 4}
		}, ""},
		{"http endpoint", func(o *Options) { o.Endpoint = "http://127.0.0.1:7070" }, ""},
		{"no bucket", func(o *Options) { o.Bucket = "" }, "s3.bucket"},
		{"short bucket", func(o *Options) { o.Bucket = "ab" }, "s3.bucket"},
		{"long bucket", func(o *Options) { o.Bucket = strings.Repeat("a", 64) }, "s3.bucket"},
		{"upper bucket", func(o *Options) { o.Bucket = "Backups" }, "s3.bucket"},
		{"bucket with slash", func(o *Options) { o.Bucket = "a/b/c" }, "s3.bucket"},
		{"bucket starts with dash", func(o *Options) { o.Bucket = "-abc" }, "s3.bucket"},
		{"bucket ends with dot", func(o *Options) { o.Bucket = "abc." }, "s3.bucket"},
		{"bucket double dot", func(o *Options) { o.Bucket = "a..b" }, "s3.bucket"},
		{"endpoint without scheme", func(o *Options) { o.Endpoint = "127.0.0.1:7070" }, "s3.endpoint"},
		{"endpoint ftp", func(o *Options) { o.Endpoint = "ftp://host" }, "s3.endpoint"},
		{"endpoint with credentials", func(o *Options) { o.Endpoint = "http://ak:sk@host" }, "s3.endpoint"},
		{"endpoint with query", func(o *Options) { o.Endpoint = "http://host/?x=1" }, "s3.endpoint"},
		{"region with space", func(o *Options) { o.Region = "us east" }, "s3.region"},
		{"prefix leading slash", func(o *Options) { o.Prefix = "/hastack" }, "s3.prefix"},
		{"prefix double slash", func(o *Options) { o.Prefix = "a//b" }, "s3.prefix"},
		{"key without secret", func(o *Options) { o.AccessKeyID = "AK" }, "s3.secret_access_key"},
		{"secret without key", func(o *Options) { o.SecretAccessKey = "SK" }, "s3.secret_access_key"},
		{"part too small", func(o *Options) { o.PartSize = 5<<20 - 1 }, "s3.part_size"},
		{"part min", func(o *Options) { o.PartSize = 5 << 20 }, ""},
		{"part too big", func(o *Options) { o.PartSize = 5<<30 + 1 }, "s3.part_size"},
		{"negative part", func(o *Options) { o.PartSize = -1 }, "s3.part_size"},
		{"negative concurrency", func(o *Options) { o.Concurrency = -1 }, "s3.concurrency"},
		{"huge concurrency", func(o *Options) { o.Concurrency = MaxConcurrency + 1 }, "s3.concurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			err := o.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v, want a *FieldError for %s", err, tt.field)
			}
			if fe.Field != tt.field {
				t.Fatalf("Validate() names %s (%v), want %s", fe.Field, err, tt.field)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		prefix, key, full string
	}{
		{"", "a.zst", "a.zst"},
		{"", "db/2026/a.zst", "db/2026/a.zst"},
		{"hastack", "a.zst", "hastack/a.zst"},
		{"hastack/", "a.zst", "hastack/a.zst"},
		{"hastack/prod", "db/a.zst", "hastack/prod/db/a.zst"},
		{"hastack/prod/", "db/", "hastack/prod/db/"},
	}
	for _, tt := range tests {
		p := normalizePrefix(tt.prefix)
		if got := fullKey(p, tt.key); got != tt.full {
			t.Errorf("fullKey(%q, %q) = %q, want %q", p, tt.key, got, tt.full)
		}
		if got, ok := relKey(p, tt.full); !ok || got != tt.key {
			t.Errorf("relKey(%q, %q) = %q, %v, want %q", p, tt.full, got, ok, tt.key)
		}
	}
	if _, ok := relKey("hastack/", "other/a.zst"); ok {
		t.Error("relKey accepted a key outside the prefix")
	}
	if _, ok := relKey("hastack/", "hastack2/a.zst"); ok {
		t.Error(`relKey took "hastack2/" for "hastack/"`)
	}
	for _, bad := range []string{"", "/a"} {
		if err := validateKey(bad); err == nil {
			t.Errorf("validateKey(%q) = nil, want an error", bad)
		}
	}
}

func TestNew(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, Options{}); err == nil || !strings.Contains(err.Error(), "s3.bucket") {
		t.Fatalf("New without a bucket = %v, want an error naming s3.bucket", err)
	}
	s, err := New(ctx, Options{Bucket: "backups", Prefix: "hastack", AccessKeyID: "AK", SecretAccessKey: "SK"})
	if err != nil {
		t.Fatal(err)
	}
	if s.prefix != "hastack/" || s.partSize != DefaultPartSize || s.concurrency != DefaultConcurrency {
		t.Fatalf("defaults not applied: prefix %q part %d concurrency %d", s.prefix, s.partSize, s.concurrency)
	}
	if s.client.Options().Region != DefaultRegion {
		t.Fatalf("region %q, want %q", s.client.Options().Region, DefaultRegion)
	}

	missing := filepath.Join(t.TempDir(), "ca.pem")
	if _, err := New(ctx, Options{Bucket: "backups", CAFile: missing}); err == nil || !strings.Contains(err.Error(), "s3.ca_file") {
		t.Fatalf("New with a missing CA file = %v, want an error naming s3.ca_file", err)
	}
	if err := os.WriteFile(missing, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, Options{Bucket: "backups", CAFile: missing}); err == nil || !strings.Contains(err.Error(), "no PEM") {
		t.Fatalf("New with a bad CA file = %v, want an error saying it holds no PEM certificate", err)
	}
}

func TestMethodsRejectBadKeys(t *testing.T) {
	ctx := context.Background()
	s, err := New(ctx, Options{Bucket: "backups", Endpoint: "http://127.0.0.1:1", AccessKeyID: "AK", SecretAccessKey: "SK"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Upload(ctx, "", strings.NewReader("x"), ""); err == nil {
		t.Error("Upload with an empty key succeeded")
	}
	if err := s.Put(ctx, "/abs", nil, ""); err == nil {
		t.Error("Put with a key starting with / succeeded")
	}
	if _, _, err := s.Get(ctx, ""); err == nil {
		t.Error("Get with an empty key succeeded")
	}
	if err := s.Delete(ctx, "ok", ""); err == nil {
		t.Error("Delete with an empty key succeeded")
	}
}

// apiErr builds an error shaped like the SDK's for an HTTP error answer.
func apiErr(status int, code string) error {
	resp := &smithyhttp.Response{Response: &http.Response{StatusCode: status}}
	return &smithy.OperationError{ServiceID: "S3", OperationName: "Op", Err: &smithyhttp.ResponseError{
		Response: resp,
		Err:      &smithy.GenericAPIError{Code: code, Message: "m"},
	}}
}

func TestWrapErr(t *testing.T) {
	s := &Store{bucket: "backups"}
	tests := []struct {
		name     string
		onBucket bool
		err      error
		kind     error  // nil: unclassified
		advice   string // part of the message
	}{
		{"head bucket 404", true, apiErr(404, "NotFound"), ErrBucketNotFound, "create it or set s3.bucket"},
		{"no such bucket", false, apiErr(404, "NoSuchBucket"), ErrBucketNotFound, "create it or set s3.bucket"},
		{"no such key", false, apiErr(404, "NoSuchKey"), ErrNotFound, ""},
		{"head bucket 403", true, apiErr(403, "Forbidden"), ErrAuth, "s3.secret_access_key"},
		{"bad signature", false, apiErr(403, "SignatureDoesNotMatch"), ErrAuth, "s3.secret_access_key"},
		{"unknown key id", false, apiErr(403, "InvalidAccessKeyId"), ErrAuth, "s3.access_key_id"},
		{"no credentials", true, &v4.SigningError{Err: errors.New("failed to retrieve credentials")}, ErrAuth, "no usable credentials"},
		{"wrong region", true, apiErr(301, "PermanentRedirect"), ErrBucketNotFound, "s3.region"},
		{"refused", true, fmt.Errorf("send: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), ErrUnreachable, "s3.endpoint"},
		{"connection cut", false, fmt.Errorf("upload: %w", &smithyhttp.RequestSendError{Err: io.EOF}), ErrUnreachable, "s3.endpoint"},
		{"server error", false, apiErr(500, "InternalError"), nil, "InternalError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.wrapErr("s3: op", tt.onBucket, tt.err)
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Errorf("wrapErr = %v, want it to wrap %v", err, tt.kind)
			}
			for _, k := range []error{ErrAuth, ErrBucketNotFound, ErrNotFound, ErrUnreachable} {
				if k != tt.kind && errors.Is(err, k) {
					t.Errorf("wrapErr = %v, wraps %v too", err, k)
				}
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("wrapErr = %v, lost the SDK's error", err)
			}
			if !strings.HasPrefix(err.Error(), "s3: op: ") || !strings.Contains(err.Error(), tt.advice) {
				t.Errorf("wrapErr = %q, want the op first and %q", err, tt.advice)
			}
		})
	}
	if s.wrapErr("op", false, nil) != nil {
		t.Error("wrapErr(nil) != nil")
	}
}
