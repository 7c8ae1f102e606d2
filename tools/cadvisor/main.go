// Command cadvisor is a minimal cAdvisor build, made here from the upstream cAdvisor library
// (github.com/google/cadvisor and github.com/google/cadvisor/lib, Apache-2.0) because the
// upstream main module (github.com/google/cadvisor/cmd) cannot be fetched on our build
// machines and no cAdvisor image can be pulled there.
//
// It wires the library the way upstream's cmd/cadvisor does, keeping only what the stack
// uses: in-memory storage, the Docker container provider (the raw cgroup provider for the
// root container is registered by the manager itself), the common filesystem-stats plugins,
// and Prometheus metrics at /metrics with the upstream metric names and labels (id, name =
// container name, image, container_label_com_docker_compose_service). /healthz answers "ok".
// There is no web UI or REST API.
//
// Flags: -listen (default :8080), -housekeeping_interval (10s), -docker_only (true),
// -store_container_labels (false), -whitelisted_container_labels (com.docker.compose.service),
// -disable_metrics (upstream's default set), and the library's own (-docker, -v, ...).
package main

import (
	"flag"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	_ "github.com/google/cadvisor/container/docker/install" // registers the "docker" provider
	"github.com/google/cadvisor/lib/cache/memory"
	"github.com/google/cadvisor/lib/container"
	_ "github.com/google/cadvisor/lib/fs/overlay/install" // filesystem stats plugins (no tmpfs: noise)
	_ "github.com/google/cadvisor/lib/fs/vfs/install"
	"github.com/google/cadvisor/lib/manager"
	"github.com/google/cadvisor/lib/metrics"
	info "github.com/google/cadvisor/lib/model"
	"github.com/google/cadvisor/lib/utils/sysfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// Metric groups that upstream cAdvisor leaves off by default, plus perf_event (needs a config).
var ignoredMetrics = container.MetricSet{
	container.MemoryNumaMetrics: {}, container.NetworkTcpUsageMetrics: {},
	container.NetworkUdpUsageMetrics: {}, container.NetworkAdvancedTcpUsageMetrics: {},
	container.ProcessSchedulerMetrics: {}, container.ProcessMetrics: {},
	container.HugetlbUsageMetrics: {}, container.ReferencedMemoryMetrics: {},
	container.CPUTopologyMetrics: {}, container.ResctrlMetrics: {}, container.CPUSetMetrics: {},
	container.PerfMetrics: {},
}

func main() {
	listen := flag.String("listen", ":8080", "address to serve /metrics and /healthz on")
	storeLabels := flag.Bool("store_container_labels", false, "export every Docker label as container_label_<key> (upstream's default is true)")
	keptLabels := flag.String("whitelisted_container_labels", "com.docker.compose.service", "comma-separated Docker labels to export when -store_container_labels=false")
	flag.Var(&ignoredMetrics, "disable_metrics", "comma-separated metric groups to leave off (as upstream): "+container.AllMetrics.String())
	klog.InitFlags(nil)
	// -housekeeping_interval and -docker_only belong to the library; only their defaults differ.
	must(flag.Set("housekeeping_interval", "10s"))
	must(flag.Set("docker_only", "true"))
	flag.Parse()
	defer klog.Flush()

	included := container.AllMetrics.Difference(ignoredMetrics)
	cache := memory.New(2*time.Minute, nil)
	// [""] (not nil) is how upstream says "no raw cgroup prefix is whitelisted".
	m, err := manager.New(cache, sysfs.NewRealSysFs(), manager.HousekeepingConfigFlags,
		included, []string{""}, []string{""}, "", 0)
	if err != nil {
		klog.Fatalf("creating the container manager: %v", err)
	}
	if err := m.Start(); err != nil {
		klog.Fatalf("starting the container manager: %v", err)
	}

	labels := metrics.DefaultContainerLabels
	if !*storeLabels {
		labels = metrics.BaseContainerLabels(strings.Split(*keptLabels, ","))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		metrics.NewPrometheusCollector(m, labels, included,
			clock.RealClock{}, info.RequestOptions{IdType: info.TypeName, Count: 1, Recursive: true}),
		metrics.NewPrometheusMachineCollector(m, included),
	)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: klogAdapter{}}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })

	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		if err := m.Stop(); err != nil {
			klog.Errorf("stopping the container manager: %v", err)
		}
		klog.Flush()
		os.Exit(0)
	}()

	klog.Infof("serving /metrics and /healthz on %s", *listen)
	klog.Fatal(http.ListenAndServe(*listen, mux))
}

func must(err error) {
	if err != nil {
		klog.Fatal(err)
	}
}

type klogAdapter struct{}

func (klogAdapter) Println(v ...any) { klog.Errorln(v...) }
