package main

import (
	"context"
	"fmt"
	"io"
)

func cmdSync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sync", "sync [--addr ADDR]", stderr)
	var cf clientFlags
	cf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	base, token, err := cf.resolve()
	if err != nil {
		return err
	}
	if err := call(ctx, "POST", base+"/api/v1/sync", token, nil); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "sync triggered; follow it with: agent status")
	return nil
}
