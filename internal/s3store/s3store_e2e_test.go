//go:build e2e

package s3store

// End-to-end tests against a real S3-compatible server: versitygw over a
// temporary directory, started (and built first, if it is not installed) by
// the test. Run with: go test -tags e2e ./internal/s3store/

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// versitygwVersion is the versitygw built when none is installed: a version
// that the Go module proxy serves and that builds with our Go toolchain.
const versitygwVersion = "v1.8.0"

const (
	e2eAccess = "hastack-e2e"
	e2eSecret = "hastack-e2e-secret-key"
	e2eBucket = "backups"
	e2eRegion = "us-east-1"
	mib       = 1 << 20
)

func TestE2E(t *testing.T) {
	endpoint := startVersitygw(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	opts := Options{Endpoint: endpoint, Bucket: e2eBucket, Prefix: "hastack/prod", PathStyle: true,
		AccessKeyID: e2eAccess, SecretAccessKey: e2eSecret}
	s := newStore(t, opts)
	if _, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(e2eBucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}

	t.Run("Check", func(t *testing.T) { testCheck(t, ctx, s, opts) })
	t.Run("UploadGet", func(t *testing.T) { testUploadGet(t, ctx, s, endpoint) })
	t.Run("UploadReaderFails", func(t *testing.T) { testUploadReaderFails(t, ctx, s) })
	t.Run("UploadCancelled", func(t *testing.T) { testUploadCancelled(t, ctx, s) })
	t.Run("PutListDelete", func(t *testing.T) { testPutListDelete(t, ctx, s, opts) })
}

func testCheck(t *testing.T, ctx context.Context, s *Store, opts Options) {
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}

	wrong := opts
	wrong.SecretAccessKey = "not-the-secret"
	err := newStore(t, wrong).Check(ctx)
	t.Logf("wrong secret: %v", err)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "s3.secret_access_key") {
		t.Errorf("Check with a wrong secret = %v, want ErrAuth naming s3.secret_access_key", err)
	}

	missing := opts
	missing.Bucket = "no-such-bucket"
	err = newStore(t, missing).Check(ctx)
	t.Logf("missing bucket: %v", err)
	if !errors.Is(err, ErrBucketNotFound) || !strings.Contains(err.Error(), "create it or set s3.bucket") {
		t.Errorf("Check of a missing bucket = %v, want ErrBucketNotFound saying what to do", err)
	}

	down := opts
	down.Endpoint = "http://" + freeAddr(t)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = newStore(t, down).Check(cctx)
	t.Logf("unreachable: %v", err)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "s3.endpoint") {
		t.Errorf("Check of a closed port = %v, want ErrUnreachable naming s3.endpoint", err)
	}
}

func testUploadGet(t *testing.T, ctx context.Context, s *Store, endpoint string) {
	const size = 25 * mib
	const key = "db/2026-01-01T00-00-00Z.sql.zst"
	want := sha256.New()
	src := io.TeeReader(io.LimitReader(randReader(1), size), want)

	peak := watchHeap()
	n, err := s.Upload(ctx, key, src, "application/zstd")
	grew := peak()
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	t.Logf("upload of %d MiB: heap grew by at most %.1f MiB (PartSize %d MiB, Concurrency %d)",
		size/mib, float64(grew)/mib, s.partSize/mib, s.concurrency)
	if n != size {
		t.Fatalf("Upload returned %d bytes, want %d", n, size)
	}
	wantSum := fmt.Sprintf("%x", want.Sum(nil))

	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(e2eBucket), Key: aws.String(fullKey(s.prefix, key))})
	if err != nil {
		t.Fatalf("HeadObject: %v", err)
	}
	parts := (size + s.partSize - 1) / s.partSize
	if etag := strings.Trim(aws.ToString(head.ETag), `"`); !strings.HasSuffix(etag, fmt.Sprintf("-%d", parts)) {
		t.Errorf("ETag %s: want a multipart upload of %d parts (suffix -%d)", etag, parts, parts)
	}
	if ct := aws.ToString(head.ContentType); ct != "application/zstd" {
		t.Errorf("content type %q, want application/zstd", ct)
	}

	body, gotSize, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	got := sha256.New()
	copied, err := io.Copy(got, body)
	body.Close()
	if err != nil {
		t.Fatalf("read the object: %v", err)
	}
	if gotSize != size || copied != size {
		t.Errorf("Get: size %d, read %d bytes, want %d", gotSize, copied, size)
	}
	if sum := fmt.Sprintf("%x", got.Sum(nil)); sum != wantSum {
		t.Errorf("Get: sha256 %s, want %s", sum, wantSum)
	}

	// An independent client: curl signs with SigV4 itself. S3 wants the
	// x-amz-content-sha256 header, which curl before 8.x does not add.
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl is needed for the independent-client check: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	curl := exec.CommandContext(cctx, "curl", "--fail", "--silent", "--show-error",
		"--aws-sigv4", "aws:amz:"+e2eRegion+":s3", "--user", e2eAccess+":"+e2eSecret,
		"--header", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
		endpoint+"/"+e2eBucket+"/"+fullKey(s.prefix, key))
	curlSum := sha256.New()
	var stderr bytes.Buffer
	curl.Stdout, curl.Stderr = curlSum, &stderr
	if err := curl.Run(); err != nil {
		t.Fatalf("curl: %v: %s", err, stderr.String())
	}
	if sum := fmt.Sprintf("%x", curlSum.Sum(nil)); sum != wantSum {
		t.Errorf("curl: sha256 %s, want %s", sum, wantSum)
	}

	_, _, err = s.Get(ctx, "db/missing")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a missing key = %v, want ErrNotFound", err)
	}
}

var errBoom = errors.New("dump failed")

func testUploadReaderFails(t *testing.T, ctx context.Context, s *Store) {
	for _, after := range []int64{12 * mib, 1 * mib} { // multipart, and within the first part
		key := fmt.Sprintf("fail/after-%d", after)
		r := io.MultiReader(io.LimitReader(randReader(2), after), errReader{errBoom})
		n, err := s.Upload(ctx, key, r, "")
		t.Logf("reader fails after %d MiB: %d bytes read, %v", after/mib, n, err)
		if !errors.Is(err, errBoom) {
			t.Errorf("Upload = %v, want it to wrap the reader's error", err)
		}
		assertNothingLeft(t, ctx, s, key)
	}
}

func testUploadCancelled(t *testing.T, ctx context.Context, s *Store) {
	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	const key = "cancel/upload"
	// The reader cancels the upload's context once 12 MiB have been read,
	// then goes on giving data: the upload must stop because of ctx alone.
	r := &cancelAfter{r: randReader(3), after: 12 * mib, cancel: cancel}
	n, err := s.Upload(uctx, key, r, "")
	t.Logf("cancelled after 12 MiB: %d bytes read, %v", n, err)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Upload = %v, want context.Canceled", err)
	}
	assertNothingLeft(t, ctx, s, key)
}

func testPutListDelete(t *testing.T, ctx context.Context, s *Store, opts Options) {
	// A neighbour whose prefix starts like ours: none of its keys may show.
	nopts := opts
	nopts.Prefix = "hastack/prodx/"
	if err := newStore(t, nopts).Put(ctx, "db/neighbour", []byte("x"), ""); err != nil {
		t.Fatalf("Put: %v", err)
	}

	keys := []string{"list/a/1.json", "list/a/2.json", "list/a/3.json", "list/b/4.json", "list/c.json"}
	for i, k := range keys {
		if err := s.Put(ctx, k, bytes.Repeat([]byte("m"), i+1), "application/json"); err != nil {
			t.Fatalf("Put %s: %v", k, err)
		}
	}
	// Pages of two keys: the server must then paginate, which the direct
	// call proves, and List must follow every page.
	s.maxKeys = 2
	defer func() { s.maxKeys = 0 }()
	page, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(e2eBucket),
		Prefix: aws.String(fullKey(s.prefix, "list/")), MaxKeys: aws.Int32(2)})
	if err != nil || !aws.ToBool(page.IsTruncated) {
		t.Fatalf("a page of 2 keys of 5 is not truncated (err %v): pagination is not tested", err)
	}

	objs, err := s.List(ctx, "list/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var got []string
	for i, o := range objs {
		got = append(got, o.Key)
		if o.Size != int64(i+1) || o.Modified.IsZero() || time.Since(o.Modified) > time.Hour {
			t.Errorf("object %+v: want size %d and a recent time", o, i+1)
		}
	}
	if !slices.Equal(got, keys) {
		t.Errorf("List(list/) = %q, want %q", got, keys)
	}
	// Bounded: the keys before list/b, in order, across pages; none at or after it.
	objs, err = s.ListBefore(ctx, "list/", "list/b")
	got = nil
	for _, o := range objs {
		got = append(got, o.Key)
	}
	if err != nil || !slices.Equal(got, keys[:3]) {
		t.Errorf("ListBefore(list/, list/b) = %q, %v; want %q", got, err, keys[:3])
	}
	objs, err = s.List(ctx, "list/a/")
	if err != nil || len(objs) != 3 {
		t.Errorf("List(list/a/) = %v, %v; want 3 objects", objs, err)
	}

	all, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, o := range all {
		if strings.HasPrefix(o.Key, "hastack/") || strings.Contains(o.Key, "neighbour") {
			t.Errorf("List() returned %q: outside the prefix or not stripped", o.Key)
		}
	}

	body, _, err := s.Get(ctx, "list/c.json")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	data, _ := io.ReadAll(body)
	body.Close()
	if string(data) != "mmmmm" {
		t.Errorf("Get(list/c.json) = %q", data)
	}

	if err := s.Delete(ctx, "list/a/1.json", "list/c.json", "list/never-existed"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	objs, err = s.List(ctx, "list/")
	got = got[:0]
	for _, o := range objs {
		got = append(got, o.Key)
	}
	if want := []string{"list/a/2.json", "list/a/3.json", "list/b/4.json"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("after Delete, List = %q, %v; want %q", got, err, want)
	}
	if _, _, err := s.Get(ctx, "list/c.json"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a deleted key = %v, want ErrNotFound", err)
	}
}

// assertNothingLeft checks that key is neither an object nor a pending
// multipart upload.
func assertNothingLeft(t *testing.T, ctx context.Context, s *Store, key string) {
	t.Helper()
	objs, err := s.List(ctx, key)
	if err != nil || len(objs) != 0 {
		t.Errorf("List(%s) = %v, %v; want no object", key, objs, err)
	}
	out, err := s.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(e2eBucket)})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	for _, u := range out.Uploads {
		t.Errorf("multipart upload left behind: key %s, id %s", aws.ToString(u.Key), aws.ToString(u.UploadId))
	}
}

func newStore(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// randReader is an endless stream of pseudo-random bytes.
func randReader(seed uint64) io.Reader {
	return rand.NewChaCha8([32]byte{byte(seed)})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// cancelAfter calls cancel once after bytes have been read, and keeps reading.
type cancelAfter struct {
	r      io.Reader
	after  int64
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}

// watchHeap samples the heap until the returned function is called, which
// returns how far it grew above where it was at the start.
func watchHeap() (stop func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak - base
	}
}

// startVersitygw runs versitygw on a free port over a temporary directory
// and returns its endpoint. The server is killed when the test ends.
func startVersitygw(t *testing.T) (endpoint string) {
	t.Helper()
	bin := versitygwBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	var out bytes.Buffer
	cmd := exec.Command(bin, "--access", e2eAccess, "--secret", e2eSecret, "--region", e2eRegion,
		"--port", addr, "--health", "/health", "--quiet", "posix", dir)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("versitygw (pid %d) did not exit after kill", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("versitygw output:\n%s", out.String())
		}
	})

	endpoint = "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(endpoint + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return endpoint
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("versitygw exited before it was ready: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw not ready on %s after 30s (last: %v)\n%s", addr, err, out.String())
		}
	}
}

// versitygwBinary finds versitygw on PATH or where go install puts it
// (GOBIN, or GOPATH/bin), or builds it there with go install.
func versitygwBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	env, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	lines := strings.Split(string(env), "\n")
	dir := strings.TrimSpace(lines[0])
	if dir == "" {
		dir = filepath.Join(filepath.SplitList(strings.TrimSpace(lines[1]))[0], "bin")
	}
	bin := filepath.Join(dir, "versitygw")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("versitygw not found: building github.com/versity/versitygw/cmd/versitygw@%s (about a minute)", versitygwVersion)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/versity/versitygw/cmd/versitygw@"+versitygwVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build versitygw (needs the Go module proxy): %v\n%s", err, out)
	}
	t.Logf("built versitygw in %s", time.Since(start).Round(time.Second))
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("go install did not make %s: %v", bin, err)
	}
	return bin
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
