package mariadb

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
)

// ApplyBinlog runs the transactions of a binary log stream on the server (point-in-time
// recovery: the archived transactions after a dump). binlog is a binary log file's bytes (the
// magic, a format description event, then events); MariaDB's own mariadb-binlog turns it into
// SQL in the container, and the client runs that SQL as root.
//
// The transactions run as new transactions of this server: the statements that would give each
// one its original GTID and server id are left out (StripTransactionIDs). With them, a restored
// server's binary log would go back in sequence numbers (refused under gtid_strict_mode), and a
// replica would skip, as its own, every transaction that carried its server id. Logged as this
// server's, they reach a replica like the dump's load does. (Measured on MariaDB 11.8: the row
// events of the BINLOG statements are logged with the applying server's id and GTIDs.)
func (s ContainerServer) ApplyBinlog(ctx context.Context, binlog io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dec, err := s.Engine.ExecInput(ctx, s.Container, []string{"mariadb-binlog", "-"}, nil, binlog)
	if err != nil {
		return fmt.Errorf("start mariadb-binlog in %s: %w", s.Container, err)
	}
	pr, pw := io.Pipe()
	stripped := make(chan error, 1)
	go func() {
		err := StripTransactionIDs(dec.Stdout, pw)
		pw.CloseWithError(err)
		stripped <- err
	}()
	loadErr := s.Load(ctx, pr)
	pr.CloseWithError(errors.New("the client ended")) // unblocks the filter if the client stopped early
	if loadErr != nil {
		cancel()
	}
	decErr := dec.Wait(ctx)
	stripErr := <-stripped
	switch {
	case decErr != nil && loadErr == nil:
		return fmt.Errorf("mariadb-binlog in %s: %w", s.Container, decErr)
	case loadErr != nil:
		return fmt.Errorf("apply the binary log on %s: %w", s.Container, loadErr)
	case stripErr != nil:
		return fmt.Errorf("read mariadb-binlog's output: %w", stripErr)
	}
	return nil
}

// gtidHeader is the comment line mariadb-binlog prints for a GTID event ("#261207 13:20:01 server
// id 1  end_log_pos 1276 CRC32 0x1a2b3c4d \tGTID 0-1-3 trans"); the lines that set the
// transaction's session variables follow it, each a versioned comment of its own.
var (
	gtidHeader        = regexp.MustCompile(`^#[0-9]{6} +[0-9]{1,2}:[0-9]{2}:[0-9]{2} server id [0-9]+ .*\bGTID [0-9]+-[0-9]+-[0-9]+\b`)
	sessionLine       = regexp.MustCompile(`^/\*M![0-9]+ SET @@session\.[a-z_]+=[0-9]+\*//\*!\*/;\r?\n$`)
	transactionIDLine = regexp.MustCompile(`^/\*M!100001 SET @@session\.(server_id|gtid_seq_no)=[0-9]+\*//\*!\*/;\r?\n$`)
)

// StripTransactionIDs copies mariadb-binlog's SQL from r to w without the lines that set a
// transaction's original server id and GTID sequence number: only in the run of session lines
// right after a GTID event's header, so that a statement's own text (a DDL's comment, say)
// never loses a line. Lines of any length pass (a row event's BINLOG statement may be
// megabytes).
func StripTransactionIDs(r io.Reader, w io.Writer) error {
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriterSize(w, 64<<10)
	lineStart, afterGTID := true, false
	for {
		chunk, err := br.ReadSlice('\n')
		whole := err == nil && lineStart
		switch {
		case whole && afterGTID && transactionIDLine.Match(chunk):
			// left out
		case len(chunk) > 0:
			if _, werr := bw.Write(chunk); werr != nil {
				return werr
			}
		}
		if lineStart {
			// The run of session lines after a GTID header ends at the first other line.
			afterGTID = whole && (gtidHeader.Match(chunk) || afterGTID && sessionLine.Match(chunk))
		}
		switch {
		case err == nil:
			lineStart = true
		case errors.Is(err, bufio.ErrBufferFull):
			lineStart = false // the rest of a long line follows
		case errors.Is(err, io.EOF):
			return bw.Flush()
		default:
			return err
		}
	}
}
