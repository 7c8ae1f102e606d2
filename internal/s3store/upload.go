package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// abortTimeout bounds the AbortMultipartUpload sent after a failed upload.
// It runs even when the upload's context was cancelled.
const abortTimeout = 30 * time.Second

// Upload streams r, of unknown length, to the object key: one PutObject when
// r holds less than one part, a multipart upload otherwise. It reads r part
// by part, holding about PartSize × (Concurrency+1) bytes, and writes no
// temporary file. It returns the number of bytes read from r (all of them
// uploaded when the error is nil).
//
// When anything fails (r returns an error, ctx is cancelled, the store
// refuses a part) Upload aborts the multipart upload, so that neither the
// object nor its parts remain, and returns the error; an abort that fails
// too is reported in the same error. A cancelled ctx does not interrupt a
// Read of r that blocks: r must end or fail by itself.
func (s *Store) Upload(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	if err := validateKey(key); err != nil {
		return 0, fmt.Errorf("s3: upload: %w", err)
	}
	op := fmt.Sprintf("s3: upload %q", key)
	in := &s3.PutObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(fullKey(s.prefix, key)),
		// Hide any io.Seeker or io.ReaderAt of r: the manager would then
		// read it twice or ask its length, and we promise a stream.
		Body: &countingReader{r: r},
	}
	if contentType != "" {
		in.ContentType = aws.String(contentType)
	}
	up := manager.NewUploader(s.client, func(u *manager.Uploader) {
		u.PartSize = s.partSize
		u.Concurrency = s.concurrency
		// The manager's own abort (LeavePartsOnError=false) is sent with the
		// upload's context, so it fails silently when that context was
		// cancelled, and it never reports its error. We abort ourselves.
		u.LeavePartsOnError = true
	})
	_, err := up.Upload(ctx, in)
	n := in.Body.(*countingReader).n
	if err == nil {
		return n, nil
	}
	err = s.wrapErr(op, false, err)
	var mu manager.MultiUploadFailure
	if errors.As(err, &mu) && mu.UploadID() != "" {
		if abortErr := s.abort(ctx, in.Key, mu.UploadID()); abortErr != nil {
			err = fmt.Errorf("%w; and %w", err, abortErr)
		}
	}
	return n, err
}

// abort removes the parts of a failed multipart upload. It uses a context of
// its own, detached from the upload's (which may be the cancelled one). A part
// whose request was cancelled may still be stored after the abort (the store
// was still receiving it): as S3's documentation advises, the parts are listed
// afterwards and the abort sent again until the upload is gone (a few tries).
func (s *Store) abort(ctx context.Context, key *string, uploadID string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	const tries = 5
	for try := 1; try <= tries; try++ {
		_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket:   aws.String(s.bucket),
			Key:      key,
			UploadId: aws.String(uploadID),
		})
		var nsu *types.NoSuchUpload
		if err != nil && !(try > 1 && errors.As(err, &nsu)) { // gone since the last try: fine
			return s.abortFailed(key, uploadID, err)
		}
		// Let a part still in flight land, then look.
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(try) * 200 * time.Millisecond):
		}
		if gone, known := s.uploadGone(ctx, key, uploadID); gone || !known {
			return nil // aborted; a store that does not let us list cannot be checked
		}
	}
	return s.abortFailed(key, uploadID, fmt.Errorf("parts still stored after %d aborts", tries))
}

func (s *Store) abortFailed(key *string, uploadID string, err error) error {
	return fmt.Errorf("%w: its parts remain in bucket %s and cost storage; "+
		"remove them with AbortMultipartUpload or a lifecycle rule for incomplete multipart uploads",
		s.wrapErr(fmt.Sprintf("abort multipart upload %s of %q", uploadID, aws.ToString(key)), false, err), s.bucket)
}

// uploadGone tells whether a multipart upload has no part left and is not listed among the
// bucket's incomplete uploads (a store may list an upload whose parts it has removed); known
// is false when the store would not say (a policy without the List permissions).
func (s *Store) uploadGone(ctx context.Context, key *string, uploadID string) (gone, known bool) {
	parts, err := s.client.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(s.bucket), Key: key, UploadId: aws.String(uploadID)})
	var nsu *types.NoSuchUpload
	switch {
	case errors.As(err, &nsu):
		return true, true
	case err != nil:
		return false, false
	case len(parts.Parts) > 0:
		return false, true
	}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket), Prefix: key}
	for {
		out, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return false, false
		}
		for _, u := range out.Uploads {
			if aws.ToString(u.UploadId) == uploadID {
				return false, true
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return true, true
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
