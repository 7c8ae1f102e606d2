package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"

	agentsync "github.com/hastack/hastack/internal/sync"
)

func cmdDiff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("diff", "diff [--addr ADDR] [--json] [COMMIT]", stderr)
	var cf clientFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the plan as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return errUsage
	}
	base, token, err := cf.resolve()
	if err != nil {
		return err
	}
	var out struct {
		Commit  string         `json:"commit"`
		Subject string         `json:"subject"`
		Plan    agentsync.Plan `json:"plan"`
	}
	if err := call(ctx, "GET", base+"/api/v1/diff?commit="+url.QueryEscape(fs.Arg(0)), token, &out); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(stdout, "commit %s %s\n", short(out.Commit), out.Subject)
	if out.Plan.Empty() {
		fmt.Fprintln(stdout, "no change: every service already runs this commit's configuration")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tCHANGE")
	for _, c := range out.Plan.Changes {
		fmt.Fprintf(tw, "%s\t%s\n", c.Service, c.Reason)
	}
	for _, c := range out.Plan.Reloads {
		fmt.Fprintf(tw, "%s\t%s (in place)\n", c.Service, c.Reason)
	}
	return tw.Flush()
}
