//go:build e2e && bench

package binlog

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/docker"
	"github.com/hastack/hastack/internal/mariadb"
)

// The binlog archive's benchmark (scripts/bench-archive): against a real MariaDB 11.8, with the
// archiver in this process and its segments in memory (the store's latency is not part of it),
//
//  1. the archive's lag under 500 writes a second, from each commit to its segment stored, with
//     the flush interval (the lag it is built for) as the baseline;
//
//  2. the memory the archiver adds to this process (RSS and Go heap, sampled every 100 ms);
//
//  3. replay: the agent's way (WriteStream, then mariadb-binlog in the container and the client,
//     as agent restore --at does it) against mariadb-binlog FILE | mariadb inside the container,
//     the same transactions into two fresh servers.
//
//     scripts/bench-archive      (WRITES_PER_SECOND, SECONDS, REPLAY_ROWS to change the load)
func TestArchiveBenchmark(t *testing.T) {
	requireImage(t)
	ctx := context.Background()
	perSecond, seconds, replayRows := envInt("WRITES_PER_SECOND", 500), envInt("SECONDS", 20), envInt("REPLAY_ROWS", 50000)
	src, db := startSource(t, "bench-src")

	runtime.GC()
	rssBefore, heapBefore := rssKiB(t), heapKiB()
	st := newMemStore()
	var (
		mu     sync.Mutex
		stored []storedSegment
	)
	flush := time.Second
	a, err := New(Options{
		Address: func(context.Context) (string, error) { return src.addr, nil },
		User:    "arch", Password: "arch", Store: st, FlushInterval: flush,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnProblem: func(p Problem) { t.Errorf("problem: %+v", p) },
		OnSegment: func(m Manifest) {
			mu.Lock()
			stored = append(stored, storedSegment{first: m.First().Seq, last: m.Last().Seq, at: time.Now()})
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.Run(actx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the archiver to connect", func() bool { return a.Stats().Connected })
	src.sql(t, "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(64), n INT)")

	// Memory, sampled while the load runs.
	var rssMax, heapMax int64
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			rssMax, heapMax = max(rssMax, rssKiB(t)), max(heapMax, heapKiB())
			select {
			case <-sampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	w := &writer{db: db}
	n := perSecond * seconds
	start := time.Now()
	w.rows(t, 1, n, perSecond, 8)
	rate := float64(n) / time.Since(start).Seconds()
	caughtUp(t, a, src)
	close(sampling)
	<-sampled
	mu.Lock()
	lags := w.lags(stored, 1, n)
	segments := len(stored)
	mu.Unlock()

	// Replay: REPLAY_ROWS more rows (as fast as 8 connections go), then the whole archive.
	w.rows(t, n+1, n+replayRows, 0, 8)
	caughtUp(t, a, src)
	c, err := List(ctx, st, ListOptions{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	var stream bytes.Buffer
	sel, err := WriteStream(ctx, &stream, c, ReplayOptions{Objects: st})
	if err != nil {
		t.Fatal(err)
	}
	want := src.sql(t, "SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, v, n))) FROM app.t")

	engine, err := docker.New()
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	agentDst, baseDst := startServer(t, "bench-agent", 3), startServer(t, "bench-base", 4)
	t0 := time.Now()
	if err := (mariadb.ContainerServer{Engine: engine, Container: agentDst.name}).ApplyBinlog(ctx, bytes.NewReader(stream.Bytes())); err != nil {
		t.Fatal(err)
	}
	agentTook := time.Since(t0)
	baseDst.pipe(t, stream.Bytes(), "cat > /tmp/archive.bin")
	t0 = time.Now()
	baseDst.pipe(t, nil, "set -o pipefail; mariadb-binlog /tmp/archive.bin | mariadb")
	baseTook := time.Since(t0)
	for _, d := range []*server{agentDst, baseDst} {
		if got := d.sql(t, "SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, v, n))) FROM app.t"); got != want {
			t.Errorf("%s after the replay: %s, the source %s", d.name, got, want)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\nThe binlog archive against MariaDB 11.8 (%s, %d cores)\n\n", runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(&b, "Lag, commit to segment stored, %d writes at %.0f/s (8 connections), %d segments:\n", n, rate, segments)
	fmt.Fprintf(&b, "  %-28s %8s %8s %8s\n", "", "p50", "p99", "max")
	fmt.Fprintf(&b, "  %-28s %8s %8s %8s\n", "archive", percentile(lags, 50), percentile(lags, 99), percentile(lags, 100))
	fmt.Fprintf(&b, "  %-28s %8s %8s %8s\n", "flush interval (baseline)", flush, flush, flush)
	fmt.Fprintf(&b, "Memory of the archiver (this process, sampled every 100 ms under the load):\n")
	fmt.Fprintf(&b, "  RSS %d KiB before, %d KiB at most (+%d KiB); Go heap %d KiB before, %d KiB at most\n",
		rssBefore, rssMax, rssMax-rssBefore, heapBefore, heapMax)
	fmt.Fprintf(&b, "Replay of the whole archive (%d transactions, %d KiB of binary log) into a fresh server:\n", sel.Transactions, stream.Len()>>10)
	fmt.Fprintf(&b, "  %-44s %10s %12s %7s\n", "", "took", "txn/s", "ratio")
	fmt.Fprintf(&b, "  %-44s %10s %12.0f %7.2f\n", "agent (WriteStream, mariadb-binlog -, client)", agentTook.Round(time.Millisecond),
		float64(sel.Transactions)/agentTook.Seconds(), agentTook.Seconds()/baseTook.Seconds())
	fmt.Fprintf(&b, "  %-44s %10s %12.0f %7.2f\n", "mariadb-binlog FILE | mariadb (baseline)", baseTook.Round(time.Millisecond),
		float64(sel.Transactions)/baseTook.Seconds(), 1.0)
	fmt.Print(b.String())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// rssKiB is this process's resident set (VmRSS).
func rssKiB(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			v, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return v
		}
	}
	return 0
}

func heapKiB() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse >> 10)
}
