package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunCountsServersAndFailures(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		if i%10 == 0 {
			http.Error(w, "boom", http.StatusBadGateway)
			return
		}
		if i%2 == 0 {
			w.Header().Set("X-Served-By", "Webserver2")
		} else {
			w.Header().Set("X-Served-By", "Webserver1")
		}
	}))
	defer srv.Close()

	res, err := Run(context.Background(), Options{
		URL: srv.URL, Concurrency: 4, Duration: 10 * time.Second, MaxRequests: 25,
		Client: srv.Client(), ServerHeader: "X-Served-By",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 100 {
		t.Fatalf("requests = %d, want 100 (4 clients x 25)", res.Requests)
	}
	if len(res.Failures) != 10 {
		t.Errorf("failures = %d, want 10 (every 10th request answers 502)", len(res.Failures))
	}
	if res.Served["Webserver1"] != 50 || res.Served["Webserver2"] != 40 {
		t.Errorf("served = %v, want Webserver1:50 Webserver2:40", res.Served)
	}
	if p := res.Percentile(0.99); p <= 0 {
		t.Errorf("p99 = %v, want > 0", p)
	}
}

func TestRunStopsAtDuration(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	res, err := Run(context.Background(), Options{URL: srv.URL, Concurrency: 2, Duration: 200 * time.Millisecond, Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || len(res.Failures) != 0 {
		t.Fatalf("requests=%d failures=%v: want some requests and no failures", res.Requests, res.Failures)
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	if _, err := Run(context.Background(), Options{URL: "http://x", Concurrency: 0, Duration: time.Second}); err == nil {
		t.Fatal("want an error for Concurrency 0")
	}
}

func TestASlowAnswerIsAFailure(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 3 {
			time.Sleep(300 * time.Millisecond)
		}
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Options{URL: srv.URL, Concurrency: 1, Duration: 10 * time.Second,
		MaxRequests: 5, Client: srv.Client(), Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 5 || len(res.Failures) != 1 || !strings.Contains(res.Failures[0].Err, "within 100ms") {
		t.Fatalf("requests=%d failures=%v: want 5 requests, the third one failed by its timeout", res.Requests, res.Failures)
	}
}

// A server that closes a kept-alive connection instead of answering: Go's transport resends the
// GET on a new connection and would report success; a standard client saw the connection close.
func TestAResentRequestIsAFailure(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 2 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Options{URL: srv.URL, Concurrency: 1, Duration: 10 * time.Second,
		MaxRequests: 3, Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if n.Load() != 4 {
		t.Fatalf("the server saw %d requests, want 4 (3 and the transport's resend)", n.Load())
	}
	if res.Requests != 3 || len(res.Failures) != 1 || !strings.Contains(res.Failures[0].Err, "sent again") {
		t.Fatalf("requests=%d failures=%v: want 3 requests, the second one failed as resent", res.Requests, res.Failures)
	}
}
