package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hastack/hastack/internal/alerts"
	"github.com/hastack/hastack/internal/backup"
	"github.com/hastack/hastack/internal/binlog"
	"github.com/hastack/hastack/internal/config"
	"github.com/hastack/hastack/internal/failover"
	"github.com/hastack/hastack/internal/s3store"
)

// archiveStore is the backup store as the binlog archive sees it: the objects under its prefix
// only (the dumps are listed apart).
type archiveStore struct{ s *s3store.Store }

func (a archiveStore) List(ctx context.Context) ([]backup.Object, error) {
	return listObjects(ctx, a.s, binlog.Prefix, "")
}

func (a archiveStore) Get(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	return catalog{a.s}.Get(ctx, key)
}

func (a archiveStore) Upload(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	return a.s.Upload(ctx, key, r, contentType)
}

func (a archiveStore) Put(ctx context.Context, key string, data []byte, contentType string) error {
	return a.s.Put(ctx, key, data, contentType)
}

// newArchiver makes the binlog archive of `agent run`: it follows the server the database
// watch names the primary (it waits for the watch), starting an empty archive at the newest
// dump's GTID position. Its problems are the agent's alerts; its numbers, metrics.
func newArchiver(ctx context.Context, cfg config.Config, cluster *atomic.Pointer[failover.Cluster], events *alerts.Logger, reg prometheus.Registerer, log *slog.Logger) (*binlog.Archiver, error) {
	store, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	keys, err := loadManifestKeys(cfg, "")
	if err != nil {
		return nil, err
	}
	recipients, err := parseRecipients(cfg.Backup.AgeRecipients)
	if err != nil {
		return nil, err
	}
	log = log.With("component", "archive")
	var start *binlog.Position
	pos, id, passed, err := newestDumpPosition(ctx, catalog{store}, keys)
	for _, p := range passed {
		log.Warn("binlog archive: a backup passed over as where an empty archive starts", "reason", p)
	}
	if err != nil {
		log.Warn("binlog archive: cannot read the newest backup's position; an empty archive starts at the primary's", "error", err)
	} else if id != "" {
		start = &pos
		log.Info("binlog archive: an empty archive starts after the newest backup", "backup", id, "gtid", pos.String())
	}
	var stalled atomic.Bool // BinlogArchiveStalled fires until a segment is stored again
	a, err := binlog.New(binlog.Options{
		Address: func(ctx context.Context) (string, error) {
			cl := cluster.Load()
			if cl == nil {
				return "", errors.New("waiting for the database watch to find the servers")
			}
			addr, err := cl.PrimaryAddr(ctx)
			if err != nil {
				return "", err
			}
			return net.JoinHostPort(addr, "3306"), nil
		},
		User: cfg.Database.User, Password: cfg.Database.Password,
		ServerID: cfg.Backup.Archive.ServerID, FlushInterval: time.Duration(cfg.Backup.Archive.FlushInterval),
		Start: start, Store: archiveStore{store}, Recipients: recipients, Keys: keys, Logger: log,
		OnProblem: func(p binlog.Problem) {
			switch p.Kind {
			case binlog.ProblemGap:
				events.Event(context.WithoutCancel(ctx), "BinlogArchiveGap", true, nil, p.Message)
			case binlog.ProblemDivergence:
				events.Event(context.WithoutCancel(ctx), "BinlogArchiveDiverged", true, nil, p.Message)
			default:
				// The server is behind the archive, or diverged beyond what the archive
				// steps back over: it stopped, and someone must decide (docs/backup.md).
				stalled.Store(true)
				events.Event(context.WithoutCancel(ctx), "BinlogArchiveStalled", true, nil, p.Message)
			}
		},
		OnSegment: func(binlog.Manifest) {
			if stalled.CompareAndSwap(true, false) {
				events.Event(context.WithoutCancel(ctx), "BinlogArchiveStalled", false, nil, "")
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("binlog archive: %w", err)
	}
	binlog.RegisterMetrics(reg, a.Stats)
	return a, nil
}

// newestDumpPosition is the GTID position of the newest complete backup whose manifest is
// authentic ("" id: none). With manifest keys configured, a backup whose signature does not
// verify is passed over (why: in passed): anyone who can write to the bucket could otherwise
// choose where an empty archive starts, and so which transactions it never holds. Without keys
// nothing is signed, and the newest complete backup is taken, as a restore would.
func newestDumpPosition(ctx context.Context, c backup.Catalog, keys *backup.ManifestKeys) (pos binlog.Position, id string, passed []string, err error) {
	entries, err := backup.List(ctx, c)
	if err != nil {
		return binlog.Position{}, "", nil, err
	}
	for _, e := range entries { // newest first
		if !e.Complete || e.Manifest == nil || e.Manifest.GTID == "" {
			continue
		}
		if keys != nil { // (nothing is signed where no key is configured)
			if err := backup.Authenticate(ctx, c, keys, &e); err != nil {
				// Unreadable (a signature too large to be one, the store failing): not
				// authentic either; an older backup may be.
				passed = append(passed, err.Error())
				continue
			}
			if e.Auth.Status != backup.AuthVerified {
				why := fmt.Sprintf("backup %s: its manifest's signature is %s", e.ID, e.Auth.Status)
				if e.Auth.Problem != "" {
					why += ": " + e.Auth.Problem
				}
				passed = append(passed, why)
				continue
			}
		}
		pos, err := binlog.ParsePosition(e.Manifest.GTID)
		return pos, e.ID, passed, err
	}
	return binlog.Position{}, "", passed, nil
}

// runArchive runs the binlog archive until ctx ends; a store it cannot open yet is tried again
// every 30 s.
func runArchive(ctx context.Context, cfg config.Config, cluster *atomic.Pointer[failover.Cluster], events *alerts.Logger, reg prometheus.Registerer, log *slog.Logger) {
	// The database watch finds the servers (a first deploy may take minutes): until then the
	// archive has no primary to follow, and no metrics that would say it is behind.
	for waited := false; cluster.Load() == nil; waited = true {
		if !waited {
			log.Info("binlog archive: waiting for the database watch to find the servers")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
	for {
		a, err := newArchiver(ctx, cfg, cluster, events, reg, log)
		if err == nil {
			_ = a.Run(ctx) // until ctx ends; it logs and retries every failure itself
			return
		}
		log.Error("binlog archive: cannot start; trying again in 30 s", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
	}
}
