// Package s3store keeps the agent's backups in an S3 bucket: AWS S3 or any
// S3-compatible store (path-style addressing, custom endpoint and CA). It
// streams uploads of unknown length as multipart uploads with bounded memory
// and no temporary file, and aborts a failed upload so that nothing is left
// behind; it reads, lists and deletes objects.
//
// It is the only package of the project that imports aws-sdk-go-v2. The SDK's
// default checksums (on every request since early 2025) are turned off
// (RequestChecksumCalculation and ResponseChecksumValidation are
// WhenRequired), because many S3-compatible stores reject them.
//
// Keys given to a Store's methods, and returned by List, are relative to
// Options.Prefix. Errors say what to do next and wrap one of ErrAuth,
// ErrBucketNotFound, ErrNotFound or ErrUnreachable when they are one of those.
package s3store

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Store is one bucket (and key prefix) of an S3 store. It is safe for
// concurrent use.
type Store struct {
	client      *s3.Client
	bucket      string
	prefix      string // normalised: empty or ending with "/"
	partSize    int64
	concurrency int
	maxKeys     int32 // page size of List; 0 is the server's default (1000). For tests.
}

// Object is a stored object as List reports it.
type Object struct {
	Key      string // relative to Options.Prefix
	Size     int64
	Modified time.Time
}

// New validates o and makes a Store. It does not touch the network (a CA
// file is read): call Check to find out whether the bucket can be reached.
func New(ctx context.Context, o Options) (*Store, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("s3 options: %w", err)
	}
	if o.Region == "" {
		o.Region = DefaultRegion
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}

	loadOpts := []func(*config.LoadOptions) error{
		config.WithRegion(o.Region),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if o.AccessKeyID != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(o.AccessKeyID, o.SecretAccessKey, "")))
	}
	if o.CAFile != "" {
		pool, err := caPool(o.CAFile)
		if err != nil {
			return nil, err
		}
		loadOpts = append(loadOpts, config.WithHTTPClient(awshttp.NewBuildableClient().
			WithTransportOptions(func(tr *http.Transport) {
				if tr.TLSClientConfig == nil {
					tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
				}
				tr.TLSClientConfig.RootCAs = pool
			})))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS configuration: %w: check the AWS_* environment variables and ~/.aws files", err)
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = o.PathStyle
	})
	return &Store{
		client:      client,
		bucket:      o.Bucket,
		prefix:      normalizePrefix(o.Prefix),
		partSize:    o.PartSize,
		concurrency: o.Concurrency,
	}, nil
}

// caPool is the system's certificate authorities plus those of the PEM file.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("s3: read s3.ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("s3: s3.ca_file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// Check makes sure that the bucket exists and that the credentials may use
// it (HeadBucket). Its error wraps ErrAuth, ErrBucketNotFound or
// ErrUnreachable and says what to fix.
func (s *Store) Check(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	return s.wrapErr(fmt.Sprintf("s3: check bucket %q", s.bucket), true, err)
}

// Put stores a small object (such as a manifest) in one request, replacing
// any object of that key. Use Upload for large or streamed data.
func (s *Store) Put(ctx context.Context, key string, data []byte, contentType string) error {
	if err := validateKey(key); err != nil {
		return fmt.Errorf("s3: put: %w", err)
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(fullKey(s.prefix, key)),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
	}
	if contentType != "" {
		in.ContentType = aws.String(contentType)
	}
	_, err := s.client.PutObject(ctx, in)
	return s.wrapErr(fmt.Sprintf("s3: put %q", key), false, err)
}

// Get opens an object for streaming. The caller must close the reader. size
// is the object's length (from Content-Length). A missing object gives an
// error wrapping ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (r io.ReadCloser, size int64, err error) {
	if err := validateKey(key); err != nil {
		return nil, 0, fmt.Errorf("s3: get: %w", err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(fullKey(s.prefix, key)),
	})
	if err != nil {
		return nil, 0, s.wrapErr(fmt.Sprintf("s3: get %q", key), false, err)
	}
	return out.Body, aws.ToInt64(out.ContentLength), nil
}

// Open opens an object for streaming like Get and also returns its ETag. With a non-empty
// ifMatch, the object is read only if its ETag is still ifMatch; otherwise the error wraps
// ErrChanged. A caller reading an object twice (to verify it, then to use it) passes the first
// read's ETag to the second, so both read the same bytes.
func (s *Store) Open(ctx context.Context, key, ifMatch string) (r io.ReadCloser, size int64, etag string, err error) {
	if err := validateKey(key); err != nil {
		return nil, 0, "", fmt.Errorf("s3: get: %w", err)
	}
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(fullKey(s.prefix, key))}
	if ifMatch != "" {
		in.IfMatch = aws.String(ifMatch)
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if status, code := httpStatus(err); status == http.StatusPreconditionFailed || code == "PreconditionFailed" {
			return nil, 0, "", fmt.Errorf("s3: get %q: %w: it was replaced after it was first read (%s)", key, ErrChanged, short(err))
		}
		return nil, 0, "", s.wrapErr(fmt.Sprintf("s3: get %q", key), false, err)
	}
	return out.Body, aws.ToInt64(out.ContentLength), aws.ToString(out.ETag), nil
}

// List returns every object whose key (relative to Options.Prefix) starts
// with prefix, in key order, reading all pages. An empty prefix lists
// everything under Options.Prefix.
func (s *Store) List(ctx context.Context, prefix string) ([]Object, error) {
	return s.ListBefore(ctx, prefix, "")
}

// ListBefore is List of the keys that sort before before (relative to
// Options.Prefix; "" for no bound): S3 lists in key order, so it stops reading
// pages at the first key at or after it, and a store whose other keys sort
// after the ones wanted (the binlog archive's many, after the dumps') is not
// read through.
func (s *Store) ListBefore(ctx context.Context, prefix, before string) ([]Object, error) {
	op := fmt.Sprintf("s3: list %q", prefix)
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(fullKey(s.prefix, prefix)),
	}
	if s.maxKeys > 0 {
		in.MaxKeys = aws.Int32(s.maxKeys)
	}
	var objs []Object
	pages := s3.NewListObjectsV2Paginator(s.client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, s.wrapErr(op, true, err)
		}
		for _, o := range page.Contents {
			key, ok := relKey(s.prefix, aws.ToString(o.Key))
			if !ok || key == "" {
				continue // the prefix's own "directory" object, or a server's oddity
			}
			if before != "" && key >= before {
				return objs, nil
			}
			objs = append(objs, Object{Key: key, Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified)})
		}
	}
	return objs, nil
}

// Delete removes objects, one request each (DeleteObjects needs a
// Content-MD5 that some S3-compatible stores insist on and the SDK no longer
// sends). A key that does not exist is not an error. It stops at the first
// failure.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		if err := validateKey(key); err != nil {
			return fmt.Errorf("s3: delete: %w", err)
		}
	}
	for _, key := range keys {
		_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
			Bucket: aws.String(s.bucket),
			Key:    aws.String(fullKey(s.prefix, key)),
		})
		if err := s.wrapErr(fmt.Sprintf("s3: delete %q", key), false, err); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}
