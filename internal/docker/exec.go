package docker

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// Exec is a command running in a container whose standard output is streamed.
type Exec struct {
	// Stdout streams the command's standard output; read it to the end (or close it).
	Stdout io.ReadCloser
	id     string
	api    *Client
	stderr *bytes.Buffer
	done   chan error
	input  chan error // how sending the input ended (nil at once without input)
}

// ExecStream starts cmd in the container with env and streams its standard output; standard
// error is kept (its last 64 KiB) for the error message. Wait reports how the command ended.
func (c *Client) ExecStream(ctx context.Context, containerName string, cmd, env []string) (*Exec, error) {
	return c.exec(ctx, containerName, cmd, env, nil)
}

// ExecInput starts cmd in the container with env and copies stdin to its standard input,
// closing it at the end of stdin (the command sees EOF). Its standard output is streamed as
// with ExecStream. A failure to read stdin ends the command's input early and is returned
// by Wait, whatever the command's exit status.
func (c *Client) ExecInput(ctx context.Context, containerName string, cmd, env []string, stdin io.Reader) (*Exec, error) {
	return c.exec(ctx, containerName, cmd, env, stdin)
}

func (c *Client) exec(ctx context.Context, containerName string, cmd, env []string, stdin io.Reader) (*Exec, error) {
	created, err := c.api.ContainerExecCreate(ctx, containerName, container.ExecOptions{
		Cmd: cmd, Env: env, AttachStdout: true, AttachStderr: true, AttachStdin: stdin != nil,
	})
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", containerName, err)
	}
	att, err := c.api.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return nil, fmt.Errorf("exec in %s: attach: %w", containerName, err)
	}
	pr, pw := io.Pipe()
	e := &Exec{Stdout: pr, id: created.ID, api: c, stderr: &bytes.Buffer{}, done: make(chan error, 1), input: make(chan error, 1)}
	if stdin == nil {
		e.input <- nil
	} else {
		go func() {
			// Buffered: a dump read line by line would otherwise cost a write per line.
			w := bufio.NewWriterSize(att.Conn, 256<<10)
			_, err := io.Copy(w, stdin)
			if err == nil {
				err = w.Flush()
			}
			if err != nil {
				err = fmt.Errorf("send input: %w", err)
				att.Close() // the command must not take a partial input as complete
			} else if cerr := att.CloseWrite(); cerr != nil {
				err = fmt.Errorf("close input: %w", cerr)
			}
			e.input <- err
		}()
	}
	go func() {
		defer att.Close()
		_, err := stdcopy.StdCopy(pw, &tailWriter{buf: e.stderr, max: 64 << 10}, att.Reader)
		pw.CloseWithError(err)
		e.done <- err
	}()
	return e, nil
}

// Wait waits until the output was copied and returns an error if the command failed, with
// what it printed on standard error.
func (e *Exec) Wait(ctx context.Context) error {
	var copyErr, inputErr error
	select {
	case copyErr = <-e.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case inputErr = <-e.input:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The output ends a moment before the engine records the exit code.
	var in container.ExecInspect
	for i := 0; ; i++ {
		var err error
		if in, err = e.api.api.ContainerExecInspect(ctx, e.id); err != nil {
			return fmt.Errorf("inspect exec: %w", err)
		}
		if !in.Running || i == 100 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if inputErr != nil {
		return inputErr
	}
	if in.Running {
		return fmt.Errorf("exec still running after its output ended")
	}
	if in.ExitCode != 0 {
		return fmt.Errorf("exit status %d: %s", in.ExitCode, strings.TrimSpace(e.stderr.String()))
	}
	if copyErr != nil {
		return fmt.Errorf("read output: %w", copyErr)
	}
	return nil
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	buf *bytes.Buffer
	max int
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

// Run runs cmd in the container and returns what it printed on standard output; a failure
// carries its standard error.
func (c *Client) Run(ctx context.Context, containerName string, cmd []string) (string, error) {
	e, err := c.ExecStream(ctx, containerName, cmd, nil)
	if err != nil {
		return "", err
	}
	out, rerr := io.ReadAll(io.LimitReader(e.Stdout, 1<<20))
	io.Copy(io.Discard, e.Stdout)
	if err := e.Wait(ctx); err != nil {
		return string(out), fmt.Errorf("%s in %s: %w", strings.Join(cmd, " "), containerName, err)
	}
	if rerr != nil {
		return string(out), fmt.Errorf("%s in %s: read output: %w", strings.Join(cmd, " "), containerName, rerr)
	}
	return string(out), nil
}
