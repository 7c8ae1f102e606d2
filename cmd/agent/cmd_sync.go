package main

import (
	"context"
	"fmt"
	"io"
)

func cmdSync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sync", "sync [--redeploy] [--addr ADDR]", stderr)
	redeploy := fs.Bool("redeploy", false, "deploy the source's commit even if it is the applied one: every service is brought back to it (a stack removed by `docker compose down` is recreated)")
	var cf clientFlags
	cf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	base, token, err := cf.resolve()
	if err != nil {
		return err
	}
	url := base + "/api/v1/sync"
	if *redeploy {
		url += "?redeploy=true"
	}
	if err := call(ctx, "POST", url, token, nil); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "sync triggered; follow it with: agent status")
	return nil
}
