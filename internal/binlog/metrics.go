package binlog

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics exports an archiver's Stats on reg, read at each scrape: what the archive may
// be missing now (the number the BinlogArchiveBehind rule watches), where it ends, and totals.
func RegisterMetrics(reg prometheus.Registerer, stats func() Stats) {
	gauge := func(o prometheus.GaugeOpts, v func(Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(o, func() float64 { return v(stats()) })
	}
	counter := func(o prometheus.CounterOpts, v func(Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(o, func() float64 { return float64(v(stats())) })
	}
	seconds := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixMilli()) / 1000
	}
	reg.MustRegister(
		gauge(prometheus.GaugeOpts{Name: "hastack_binlog_archive_at_risk_seconds", Help: "How much committed history the binlog archive may be missing now: the age of the oldest transaction received and not stored, or, while disconnected, of the last one stored."},
			func(s Stats) float64 { return s.AtRisk(time.Now()).Seconds() }),
		gauge(prometheus.GaugeOpts{Name: "hastack_binlog_archive_connected", Help: "1 while the archive streams the primary's binary log."},
			func(s Stats) float64 {
				if s.Connected {
					return 1
				}
				return 0
			}),
		gauge(prometheus.GaugeOpts{Name: "hastack_binlog_archive_last_gtid_seq", Help: "Sequence number of the last archived transaction's GTID (0: none yet)."},
			func(s Stats) float64 { return float64(s.LastGTID.Seq) }),
		gauge(prometheus.GaugeOpts{Name: "hastack_binlog_archive_last_transaction_timestamp_seconds", Help: "Commit time of the last archived transaction (0: none yet)."},
			func(s Stats) float64 { return seconds(s.LastTime) }),
		gauge(prometheus.GaugeOpts{Name: "hastack_binlog_archive_segment_lag_seconds", Help: "For the last stored segment: from the commit of its oldest transaction to the segment stored."},
			func(s Stats) float64 { return s.LastLag.Seconds() }),
		counter(prometheus.CounterOpts{Name: "hastack_binlog_archive_segments_total", Help: "Segments stored."}, func(s Stats) int64 { return s.Segments }),
		counter(prometheus.CounterOpts{Name: "hastack_binlog_archive_transactions_total", Help: "Transactions stored."}, func(s Stats) int64 { return s.Transactions }),
		counter(prometheus.CounterOpts{Name: "hastack_binlog_archive_stored_bytes_total", Help: "Bytes of segments stored (compressed, encrypted)."}, func(s Stats) int64 { return s.StoredBytes }),
		counter(prometheus.CounterOpts{Name: "hastack_binlog_archive_errors_total", Help: "Connection and store errors (each retried)."}, func(s Stats) int64 { return s.Errors }),
		counter(prometheus.CounterOpts{Name: "hastack_binlog_archive_gaps_total", Help: "Holes the archive had to leave (binary logs purged before they were archived)."}, func(s Stats) int64 { return s.Gaps }),
		counter(prometheus.CounterOpts{Name: "hastack_binlog_archive_divergences_total", Help: "Times the archive dropped transactions a new primary does not have."}, func(s Stats) int64 { return s.Divergences }),
	)
}
