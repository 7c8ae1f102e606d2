// Package binlog keeps the continuous binlog archive, the half of point-in-time recovery that
// follows the last dump: it follows the primary's binary log as a replica would, stores it in
// the backup store in segments, and reads it back as one binary log stream to replay on top of
// a restored dump.
//
// # Following the primary
//
// The Archiver connects with go-mysql's BinlogSyncer (flavor mariadb, its own replica server id)
// and asks for the binary log after a GTID position, so it resumes exactly where the archive
// ends, on whichever server is primary now: after a failover the GTIDs continue. It is not a
// semi-synchronous replica: a commit never waits for it. Heartbeats every second and a read
// timeout notice a frozen or cut-off server within seconds, a timeout on every store operation
// (StoreTimeout) a store that stopped answering; every failure (of the server or of the store)
// is logged and retried with a backoff (0.5 s to 5 s) from the archive's end, dropping what was
// received and not stored: no transaction is ever stored twice, none is skipped.
//
// # Segments
//
// A segment is whole transactions in the order the server logged them, stored as a valid binary
// log file that mariadb-binlog reads: the magic "\xfebin", the Format_description event the
// server sent (it says whether events carry CRC32 checksums, which are kept and checked on every
// read), then each transaction's events exactly as received, from its GTID event to its end
// (MariaDB's own rule: an XID, XA PREPARE, COMMIT or ROLLBACK event, or for a standalone DDL
// its query). Events between transactions are dropped: rotations, the server's own
// Format_description, GTID-list and checkpoint events, heartbeats. Annotate-rows events (the
// statement that made a row change) are requested and kept: they are inside transactions,
// mariadb-binlog shows them and replaying ignores them. A segment is written, compressed with
// zstd and encrypted with age like a dump (backup.Stream), once FlushInterval (1 s) passed since
// its first transaction arrived or it reached MaxSegmentBytes (16 MiB): that bounds the
// archive's lag. An idle server writes nothing.
//
// Each segment has a JSON manifest (Manifest): start position (the GTID position before its
// first transaction) and end position, first and last GTID and commit time, counts, sizes,
// SHA-256 of the stored object, the server. It is signed like a dump's (a sibling .sig object
// covering its exact bytes, written before it) and written last: a segment without a valid
// manifest does not exist. Keys sort by position and never collide:
//
//	binlog/<start ordinal>-<end ordinal>-<written, Unix ns>.binlog.zst[.age]  .json  .json.sig
//
// An ordinal is the sum of a position's sequence numbers (Position.Ordinal): one number that
// grows with every transaction whatever the number of replication domains; with the stack's one
// domain it is simply the sequence number. Every part of a key is a number this package formats,
// so no key leaves binlog/, and a manifest must match its key (positions, writing time).
//
// # The chain, and the supersede rule
//
// List reads the manifests and resolves them into a Chain, with one rule: at every position, the
// archive is what was last written from there. A segment supersedes every segment written before
// it that starts at or after its start, and cuts one that starts before its start and ends after
// it (that one is used only up to the later one's start). Used segments follow each other; where
// one does not start at the previous one's end there is a hole (Hole), with the GTIDs and commit
// times around it. Superseded segments are listed for retention to delete; invalid, incomplete
// or (when refused) unsigned ones are listed as rejected and not used.
//
// # Gaps
//
// When the server no longer has the binary logs after the archive's end (MariaDB error 1236
// saying they were purged), they were purged before they were archived: the archiver writes an
// empty segment at the server's @@gtid_binlog_pos, so that List shows the hole at once, reports
// a ProblemGap (what is lost, and that a dump must be taken now), and continues from there. A
// server behind the archive's end (another database, or one restored to an earlier point) is
// reported (ProblemBehind) and not archived until a restore calls Rebase. Any other refusal is
// retried as any failure: only a purge is a gap.
//
// # Divergence after a failover
//
// Dump threads send a transaction once it is in the binary log, before the semi-synchronous
// acknowledgement, so the archive may hold a failed primary's last transactions that never
// reached the replica promoted in its place; that server's history does not contain them, and
// it refuses to send its binary log from the archive's end (error 1236: "not in the master's
// binlog"). The rule: the archiver then steps back, segment by segment (at most MaxStepBack,
// never to the empty position), to the start of a segment that the server can send from, which
// is therefore in its history (the archiver asks in GTID strict mode: a server sends from a
// GTID only if it has it); before anything else it writes an empty segment at that position,
// which by the supersede rule drops the segments stepped back over at once (ProblemDivergence
// names them), and it archives the server's history from there. The archive never goes on
// claiming a transaction the database did not keep, and it loses nothing: the transactions of
// the superseded segments that the server does have come again from it.
//
// When stepping back finds no such start (the histories part further back than MaxStepBack
// segments, or where the archiver steps back to the server's binary logs are purged), the
// archive stops: the archiver reports a ProblemUnresolvedDivergence, once, saying what to do
// (take a dump, rebase the archive on the server's history), and retries with the backoff
// without writing anything. It never continues from the server's position as after a gap: the
// archive would go on claiming the transactions the server does not have.
//
// # Reading back
//
// OpenSegment checks a segment completely (size and SHA-256 of the stored object, decryption,
// decompression, every event's checksum, its transactions against the manifest). WriteStream
// selects, after a dump's GTID position, the transactions up to a time (a prefix: it stops
// before the first one committed after it) or up to and including a GTID, verifies every
// segment it needs before it writes anything, and writes them as one binary log stream for
// `mariadb-binlog - | mariadb`; Select does the same without writing, for a dry run.
//
// A restore reads the archive through a Spool: Spool.Fetch reads every segment the replay needs
// from the store once, verifies it, and keeps its binary log file (decrypted, uncompressed) in a
// private temporary directory, before the database is touched; the checks before the restore
// (Spool.LastCommit, Tally) and the replay itself (WriteStream with ReplayOptions.Spool) read
// only from there. A store failing during the replay can then no longer leave the database
// partly restored: the store is not read after the spool is complete.
package binlog
