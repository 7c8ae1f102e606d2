package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hastack/hastack/internal/api"
)

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", "status [--addr ADDR] [--json]", stderr)
	var cf clientFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	base, token, err := cf.resolve()
	if err != nil {
		return err
	}
	var st api.StatusResponse
	if err := call(ctx, "GET", base+"/api/v1/status", token, &st); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st)
	return nil
}

func printStatus(w io.Writer, resp api.StatusResponse) {
	st := resp.Status
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "project\t%s\n", st.Project)
	fmt.Fprintf(tw, "source\t%s at %s\n", orDash(st.Ref), short(st.Remote))
	fmt.Fprintf(tw, "applied\t%s\n", short(st.Applied))
	fmt.Fprintf(tw, "last good\t%s\n", short(st.LastGood))
	if st.Bad != "" {
		fmt.Fprintf(tw, "bad commit\t%s (not retried until a newer commit): %s\n", short(st.Bad), st.BadReason)
	}
	switch p := st.Progress; {
	case p != nil:
		subject := ""
		if p.Subject != "" {
			subject = " (" + oneLine(p.Subject, 60) + ")"
		}
		fmt.Fprintf(tw, "deploying\t%s%s for %s: %s\n", short(p.Commit), subject,
			time.Since(p.Started).Round(time.Second), p.Line(time.Now()))
	case st.InProgress != "":
		fmt.Fprintf(tw, "deploying\t%s (interrupted: the agent converges at its next sync)\n", short(st.InProgress))
	}
	if st.Removed {
		fmt.Fprintf(tw, "stack\tremoved: no container is left (docker compose down?); the agent does not recreate it: the next commit deploys it, agent sync --redeploy now\n")
	}
	last := "never"
	if !st.LastSync.IsZero() {
		last = fmt.Sprintf("%s ago, %s", time.Since(st.LastSync).Round(time.Second), st.LastResult)
	}
	fmt.Fprintf(tw, "last sync\t%s\n", last)
	if st.LastError != "" {
		fmt.Fprintf(tw, "last error\t%s\n", st.LastError)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nSERVICES")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tCONTAINER\tSTATE\tREADY")
	for _, s := range st.Services {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", s.Service, s.Container, s.State, s.Ready)
	}
	tw.Flush()

	if resp.Database != nil {
		fmt.Fprintf(w, "\nDATABASE (the watch's view %s ago; docs/failover.md)\n", time.Since(resp.Database.At).Round(time.Second))
		printDBReport(w, *resp.Database)
	}

	fmt.Fprintln(w, "\nALERTS (the agent's own, firing)")
	if len(resp.Alerts) == 0 {
		fmt.Fprintln(w, "none")
	}
	for _, a := range resp.Alerts {
		fmt.Fprintf(w, "%s since %s: %s\n", a.Name, a.Since.Local().Format("2006-01-02 15:04:05"), oneLine(a.Description, 160))
	}

	fmt.Fprintln(w, "\nDRIFT")
	if len(st.Drift) == 0 {
		fmt.Fprintln(w, "none")
	}
	for _, d := range st.Drift {
		fmt.Fprintf(w, "%s: %s\n", d.Service, d.Reason)
	}

	fmt.Fprintln(w, "\nHISTORY (newest first)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FINISHED\tCOMMIT\tTRIGGER\tOUTCOME\tRECREATED\tRELOADED\tREASON")
	for i := len(st.History) - 1; i >= 0; i-- {
		d := st.History[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Finished.Local().Format("2006-01-02 15:04:05"), short(d.Commit),
			d.Trigger, d.Outcome, len(d.Recreated), orDash(strings.Join(d.Reloaded, ",")), oneLine(d.Reason, 100))
	}
	tw.Flush()
}

func short(c string) string {
	if c == "" {
		return "-"
	}
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string, n int) string {
	for i, r := range s {
		if r == '\n' {
			s = s[:i]
			break
		}
	}
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}
