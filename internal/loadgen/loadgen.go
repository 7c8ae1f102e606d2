// Package loadgen sends bounded HTTP load to one URL from a fixed number of concurrent clients
// and reports what came back: request and failure counts, latency percentiles and which backend
// served each request. The end-to-end tests use it to prove that a backend can stop under load
// without a failed request; the benchmark command uses it to compare paths.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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
				server, err := get(ctx, client, o.URL, o.ServerHeader)
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

func get(ctx context.Context, c *http.Client, url, header string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	if header == "" {
		return "", nil
	}
	return resp.Header.Get(header), nil
}
