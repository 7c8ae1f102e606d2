// Package loadgen sends bounded HTTP load to one URL from a fixed number of concurrent clients
// and reports what came back: request and failure counts, latency percentiles and which backend
// served each request. The end-to-end tests use it to prove that a backend can stop under load
// without a failed request; the benchmark command uses it to compare paths.
//
// It judges as a standard client does, and forgives nothing: each request has its own timeout
// (2 s unless said otherwise), and a request the transport had to send a second time (Go's
// http.Transport silently resends a GET whose reused connection was closed before the answer)
// is a failure, not a success: a client without that retry saw the connection close.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync"
	"time"
)

// Options describe one load run. Duration and MaxRequests bound it; whichever is reached first
// ends it.
type Options struct {
	URL         string
	Concurrency int
	Duration    time.Duration
	MaxRequests int // per client; 0 means no limit other than Duration
	Client      *http.Client
	// Timeout bounds each request, from sending it to the end of its body (default 2 s).
	Timeout time.Duration
	// ServerHeader names the response header that says which backend answered.
	ServerHeader string
}

// Failure is one request that did not succeed.
type Failure struct {
	At  time.Time
	Err string
}

// Result is what a run observed.
type Result struct {
	Requests  int
	Failures  []Failure
	Elapsed   time.Duration
	latencies []time.Duration
	// Served counts successful responses per value of ServerHeader.
	Served map[string]int
	// LastServed is the time of the last successful response per backend.
	LastServed map[string]time.Time
}

// RequestsPerSecond is the completed request rate over the run.
func (r *Result) RequestsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Percentile returns the latency below which the fraction p (0..1) of requests completed.
func (r *Result) Percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	i := int(p*float64(len(s)-1) + 0.5)
	return s[min(i, len(s)-1)]
}

// Run sends load until the duration passes, every client reached MaxRequests, or ctx ends.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.URL == "" || o.Concurrency < 1 || o.Duration <= 0 {
		return nil, errors.New("loadgen: URL, Concurrency >= 1 and Duration > 0 are required")
	}
	client := o.Client
	if client == nil {
		client = http.DefaultClient
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()

	var mu sync.Mutex
	res := &Result{Served: map[string]int{}, LastServed: map[string]time.Time{}}
	record := func(start time.Time, server string, err error) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		res.Requests++
		if err != nil {
			res.Failures = append(res.Failures, Failure{At: now, Err: err.Error()})
			return
		}
		res.latencies = append(res.latencies, now.Sub(start))
		res.Served[server]++
		res.LastServed[server] = now
	}

	begin := time.Now()
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; o.MaxRequests == 0 || n < o.MaxRequests; n++ {
				if ctx.Err() != nil {
					return
				}
				start := time.Now()
				server, err := get(ctx, client, o.URL, o.ServerHeader, o.Timeout)
				if err != nil && ctx.Err() != nil {
					return // the run ended mid-request: not a failure of the target
				}
				record(start, server, err)
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(begin)
	return res, nil
}

// DefaultTimeout is a standard client's patience for one request.
const DefaultTimeout = 2 * time.Second

// ErrResent is the failure of a request whose connection closed before its answer: the
// transport sent it again on another connection, which a client without that retry does not.
var ErrResent = errors.New("connection closed before the answer (the request had to be sent again)")

func get(ctx context.Context, c *http.Client, url, header string, timeout time.Duration) (string, error) {
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conns := 0
	reqCtx = httptrace.WithClientTrace(reqCtx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conns++ }})
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		if reqCtx.Err() != nil && ctx.Err() == nil {
			return "", fmt.Errorf("no answer within %s", timeout)
		}
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		if reqCtx.Err() != nil && ctx.Err() == nil {
			return "", fmt.Errorf("body not complete within %s", timeout)
		}
		return "", fmt.Errorf("read body: %w", err)
	}
	if conns > 1 {
		return "", ErrResent
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	if header == "" {
		return "", nil
	}
	return resp.Header.Get(header), nil
}
