package s3store

import (
	"fmt"
	"net/url"
	"strings"
)

// Defaults and limits applied by New and checked by Options.Validate.
const (
	DefaultRegion = "us-east-1"
	// DefaultPartSize is S3's smallest part: memory holds Concurrency+1 parts, and an upload of
	// unknown length may have 10,000 parts, so 5 MiB parts limit an object to 50 GiB.
	DefaultPartSize    = 5 << 20
	MinPartSize        = 5 << 20 // S3's smallest part (but the last)
	MaxPartSize        = 5 << 30 // S3's largest part
	DefaultConcurrency = 2
	MaxConcurrency     = 64
)

// Options say which store, which bucket and key prefix, how to authenticate,
// and how much memory an upload may hold.
type Options struct {
	// Endpoint is the store's base URL. Empty means AWS S3 (the endpoint is
	// derived from Region); otherwise e.g. "http://127.0.0.1:7070" for an
	// S3-compatible store.
	Endpoint string
	// Region of the bucket; default DefaultRegion. S3-compatible stores
	// usually accept any region, but it is part of every signature.
	Region string
	// Bucket holds the objects. It must exist: New does not create it.
	Bucket string
	// Prefix is prepended to every key, so that several installations can
	// share a bucket. A trailing "/" is added when missing ("hastack" and
	// "hastack/" are the same prefix); it must not start with "/". Empty
	// means the keys are used as they are.
	Prefix string
	// PathStyle addresses the bucket as ENDPOINT/BUCKET/KEY instead of
	// BUCKET.ENDPOINT/KEY. Most S3-compatible stores need it.
	PathStyle bool
	// AccessKeyID and SecretAccessKey are static credentials. Both empty:
	// the usual AWS chain (environment, shared config and credentials files,
	// container or instance role).
	AccessKeyID     string
	SecretAccessKey string
	// CAFile is a PEM bundle of extra certificate authorities trusted for
	// the endpoint (on top of the system's), for a store with a private CA.
	CAFile string
	// PartSize is the multipart upload part size; default DefaultPartSize,
	// at least MinPartSize. S3 allows 10,000 parts, so the largest upload
	// is 10,000 × PartSize (78 GiB with the default).
	PartSize int64
	// Concurrency is the number of parts uploaded at once; default
	// DefaultConcurrency. An upload holds about PartSize × (Concurrency+1)
	// bytes of memory (24 MiB with the defaults).
	Concurrency int
}

// FieldError is returned by Options.Validate: it names the setting (as
// spelled in the agent's configuration file) and what is wrong with it.
type FieldError struct {
	Field  string // e.g. "s3.bucket"
	Reason string // e.g. "required"
}

// Error implements error.
func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Validate checks the options without touching the network or the disk. It
// returns a *FieldError naming the first bad setting.
func (o Options) Validate() error {
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return &FieldError{Field: "s3.endpoint", Reason: fmt.Sprintf("%q is not an http:// or https:// URL: leave it empty for AWS", o.Endpoint)}
		}
		if u.User != nil {
			return &FieldError{Field: "s3.endpoint", Reason: "must not hold credentials: use s3.access_key_id and s3.secret_access_key"}
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return &FieldError{Field: "s3.endpoint", Reason: "must not have a query or fragment"}
		}
	}
	if strings.ContainsAny(o.Region, " /\t\n") {
		return &FieldError{Field: "s3.region", Reason: fmt.Sprintf("%q is not a region name", o.Region)}
	}
	if err := validateBucket(o.Bucket); err != nil {
		return &FieldError{Field: "s3.bucket", Reason: err.Error()}
	}
	if err := validatePrefix(o.Prefix); err != nil {
		return &FieldError{Field: "s3.prefix", Reason: err.Error()}
	}
	if (o.AccessKeyID == "") != (o.SecretAccessKey == "") {
		return &FieldError{Field: "s3.secret_access_key", Reason: "s3.access_key_id and s3.secret_access_key go together: set both, or neither to use the AWS credential chain"}
	}
	if o.PartSize != 0 && (o.PartSize < MinPartSize || o.PartSize > MaxPartSize) {
		return &FieldError{Field: "s3.part_size", Reason: fmt.Sprintf("%d bytes is outside S3's limits: use 5 MiB to 5 GiB, or 0 for the default (5 MiB)", o.PartSize)}
	}
	if o.Concurrency < 0 || o.Concurrency > MaxConcurrency {
		return &FieldError{Field: "s3.concurrency", Reason: fmt.Sprintf("%d: use 1 to %d, or 0 for the default (%d)", o.Concurrency, MaxConcurrency, DefaultConcurrency)}
	}
	return nil
}

// validateBucket applies S3's bucket naming rules (3-63 characters of
// lowercase letters, digits, dots and hyphens, starting and ending with a
// letter or digit), which S3-compatible stores follow too.
func validateBucket(b string) error {
	if b == "" {
		return fmt.Errorf("required")
	}
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("%q must be 3 to 63 characters long", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && c != '.' && c != '-' {
			return fmt.Errorf("%q may only hold lowercase letters, digits, '.' and '-'", b)
		}
		if !alnum && (i == 0 || i == len(b)-1) {
			return fmt.Errorf("%q must start and end with a letter or digit", b)
		}
	}
	if strings.Contains(b, "..") {
		return fmt.Errorf("%q must not hold \"..\"", b)
	}
	return nil
}

// validatePrefix rejects prefixes that would make keys with empty path
// segments, which S3 accepts but tools show confusingly.
func validatePrefix(p string) error {
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q must not start with \"/\"", p)
	}
	if strings.Contains(p, "//") {
		return fmt.Errorf("%q must not hold \"//\"", p)
	}
	return nil
}

// normalizePrefix returns the prefix that is put in front of every key:
// empty, or ending with exactly one "/".
func normalizePrefix(p string) string {
	if p == "" || strings.HasSuffix(p, "/") {
		return p
	}
	return p + "/"
}

// validateKey checks a key passed to a method (relative to the prefix).
func validateKey(key string) error {
	if key == "" {
		return fmt.Errorf("empty key")
	}
	if strings.HasPrefix(key, "/") {
		return fmt.Errorf("key %q must not start with \"/\": keys are relative to s3.prefix", key)
	}
	return nil
}

// fullKey is the object key of key under prefix (already normalised).
func fullKey(prefix, key string) string { return prefix + key }

// relKey is the key relative to prefix of a listed object key; ok is false
// for a key outside the prefix (which List never asks for).
func relKey(prefix, full string) (key string, ok bool) {
	if !strings.HasPrefix(full, prefix) {
		return "", false
	}
	return full[len(prefix):], true
}
