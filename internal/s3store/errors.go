package s3store

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Errors a caller can test for with errors.Is. The error that carries them
// also says, for a person, what to do next, and wraps the SDK's error.
var (
	// ErrAuth means the store refused the credentials or the request, or no
	// credentials were found.
	ErrAuth = errors.New("access denied")
	// ErrBucketNotFound means the bucket does not exist.
	ErrBucketNotFound = errors.New("bucket not found")
	// ErrNotFound means the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrUnreachable means no HTTP answer came from the endpoint: a wrong
	// address, a store that is down, a network problem, or TLS failure.
	ErrUnreachable = errors.New("store unreachable")
	// ErrChanged means the object is not the one an earlier read saw (Open's ifMatch).
	ErrChanged = errors.New("object changed")
)

// opError is an error of one operation, classified for people: the kind is
// one of the Err* values (or nil), advice says what to do next, cause is the
// SDK's error.
type opError struct {
	op     string // what was being done, e.g. `get "x"`
	kind   error
	advice string
	cause  error
}

func (e *opError) Error() string {
	if e.kind == nil {
		return e.op + ": " + e.cause.Error()
	}
	msg := e.op + ": " + e.kind.Error()
	if e.advice != "" {
		msg += ": " + e.advice
	}
	return msg + " (" + short(e.cause) + ")"
}

func (e *opError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.cause}
	}
	return []error{e.kind, e.cause}
}

// wrapErr classifies err, returned by the SDK while doing op, for the bucket
// of s. onBucket says that op names no object, so that a bare 404 means the
// bucket is missing. A nil err stays nil.
func (s *Store) wrapErr(op string, onBucket bool, err error) error {
	if err == nil {
		return nil
	}
	e := &opError{op: op, cause: err}
	var (
		signErr *v4.SigningError
		certErr *tls.CertificateVerificationError
		unkCA   x509.UnknownAuthorityError
		netErr  *net.OpError
		dnsErr  *net.DNSError
		sendErr *smithyhttp.RequestSendError
	)
	switch status, code := httpStatus(err); {
	case errors.As(err, &signErr):
		e.kind, e.advice = ErrAuth, "no usable credentials: set s3.access_key_id and s3.secret_access_key, or AWS credentials in the agent's environment"
	case status == http.StatusForbidden || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "AccessDenied":
		e.kind, e.advice = ErrAuth, "check s3.access_key_id and s3.secret_access_key, and that they may use bucket "+s.bucket
	case code == "NoSuchBucket" || status == http.StatusNotFound && onBucket:
		e.kind, e.advice = ErrBucketNotFound, fmt.Sprintf("bucket %q does not exist: create it or set s3.bucket", s.bucket)
	case code == "NoSuchKey" || status == http.StatusNotFound:
		e.kind = ErrNotFound
	case status == http.StatusMovedPermanently || code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed":
		e.kind, e.advice = ErrBucketNotFound, fmt.Sprintf("bucket %q is in another region: set s3.region to the bucket's region", s.bucket)
	case errors.As(err, &certErr) || errors.As(err, &unkCA):
		e.kind, e.advice = ErrUnreachable, "the endpoint's TLS certificate is not trusted: add its CA with s3.ca_file"
	case errors.As(err, &dnsErr) || errors.As(err, &netErr) || errors.As(err, &sendErr):
		// RequestSendError: the connection failed or was cut before an answer came.
		e.kind, e.advice = ErrUnreachable, "check s3.endpoint and that the store is running and reachable"
	}
	return e
}

// httpStatus returns the HTTP status and the S3 error code of err, if any.
func httpStatus(err error) (status int, code string) {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	return status, code
}

// short describes the SDK's error in a few words: the HTTP status and S3
// code, or the network error.
func short(err error) string {
	status, code := httpStatus(err)
	if status != 0 {
		if code != "" {
			return fmt.Sprintf("HTTP %d %s", status, code)
		}
		return fmt.Sprintf("HTTP %d", status)
	}
	var netErr *net.OpError
	if errors.As(err, &netErr) {
		return netErr.Error()
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Error()
	}
	return err.Error()
}
