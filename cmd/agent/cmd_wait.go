package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/hastack/hastack/internal/api"
	agentsync "github.com/hastack/hastack/internal/sync"
)

// errWaitTimeout: agent wait's time ran out (exit 1 with the last progress).
var errWaitTimeout = errors.New("timed out")

func cmdWait(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("wait", "wait [--addr ADDR] [--commit COMMIT] [--timeout 20m]", stderr)
	var cf clientFlags
	cf.register(fs)
	commit := fs.String("commit", "", "the commit to wait for (a full or abbreviated id; default: the source's head as the agent last fetched it)")
	timeout := fs.Duration("timeout", 20*time.Minute, "give up after this long")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("wait: unexpected argument %q", fs.Arg(0))
	}
	base, token, err := cf.resolve()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	show := newWaitProgress(stderr)
	for {
		var st api.StatusResponse
		err := call(ctx, "GET", base+"/api/v1/status", token, &st)
		if err == nil {
			done, derr := st.Deployed(*commit)
			if derr != nil {
				show.end()
				return derr
			}
			if done {
				show.end()
				fmt.Fprintf(stdout, "deployed %s; every service ready\n", short(st.Applied))
				return nil
			}
			show.status(st.Status)
		}
		select {
		case <-ctx.Done():
			show.end()
			if err != nil {
				return fmt.Errorf("wait: %w: %w", errWaitTimeout, err)
			}
			return fmt.Errorf("wait: %w after %v: %s", errWaitTimeout, *timeout, describeWait(st.Status))
		case <-time.After(time.Second):
		}
	}
}

// describeWait says what the agent is at, for a timeout's message.
func describeWait(s agentsync.Status) string {
	switch {
	case s.Progress != nil:
		return "deploying " + short(s.Progress.Commit) + ": " + s.Progress.Line(time.Now())
	case s.Removed:
		return "the stack was removed (no container): `agent sync --redeploy` brings it back"
	case s.LastError != "":
		return "last sync: " + s.LastError
	case s.Remote == "":
		return "the agent has not fetched the repository yet"
	}
	return "applied " + short(s.Applied) + ", source at " + short(s.Remote)
}

// waitProgress shows the deploy's progress: on a terminal one line redrawn in place, else a
// line whenever the phase changes.
type waitProgress struct {
	w    io.Writer
	tty  bool
	last string
	drew bool
}

func newWaitProgress(w io.Writer) *waitProgress {
	f, ok := w.(*os.File)
	return &waitProgress{w: w, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *waitProgress) status(s agentsync.Status) {
	line, key := describeWait(s), ""
	if s.Progress != nil {
		pr := *s.Progress
		key = fmt.Sprint(pr.Commit, pr.Rollback, pr.Phase, pr.Services, pr.Step)
	} else {
		key = line
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drew = true
		return
	}
	if key != p.last {
		fmt.Fprintf(p.w, "%s %s\n", time.Now().Format("15:04:05"), line)
	}
	p.last = key
}

func (p *waitProgress) end() {
	if p.tty && p.drew {
		fmt.Fprintln(p.w)
	}
}
