package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// The few container operations a database failover needs: fencing (kill, start), the servers'
// addresses, and the roles file written into a volume through a container that mounts it.

// Running reports whether the named container runs and is not paused (a frozen process answers
// nothing).
func (c *Client) Running(ctx context.Context, name string) (bool, error) {
	in, err := c.api.ContainerInspect(ctx, name)
	if client.IsErrNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect %s: %w", name, err)
	}
	return in.State != nil && in.State.Running && !in.State.Paused, nil
}

// Exists tells whether the named container exists, running or not.
func (c *Client) Exists(ctx context.Context, name string) (bool, error) {
	_, err := c.api.ContainerInspect(ctx, name)
	if client.IsErrNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect %s: %w", name, err)
	}
	return true, nil
}

// Kill sends SIGKILL to the container, paused or not, and waits until it has stopped (at most
// 10 s). A container that is not running is not an error.
func (c *Client) Kill(ctx context.Context, name string) error {
	in, err := c.api.ContainerInspect(ctx, name)
	if client.IsErrNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect %s: %w", name, err)
	}
	if in.State == nil || !in.State.Running {
		return nil
	}
	if err := c.api.ContainerKill(ctx, name, "KILL"); err != nil {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	// (The engine thaws a paused container it kills; a frozen process takes its SIGKILL then.)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if in, err := c.api.ContainerInspect(ctx, name); err == nil && (in.State == nil || !in.State.Running) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kill %s: still running after SIGKILL: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Start starts a stopped container.
func (c *Client) Start(ctx context.Context, name string) error {
	if err := c.api.ContainerStart(ctx, name, container.StartOptions{}); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

// Restart stops the container (SIGTERM, then SIGKILL after stopTimeout) and starts it again.
func (c *Client) Restart(ctx context.Context, name string, stopTimeout time.Duration) error {
	secs := int(stopTimeout.Seconds())
	if err := c.api.ContainerRestart(ctx, name, container.StopOptions{Timeout: &secs}); err != nil {
		return fmt.Errorf("restart %s: %w", name, err)
	}
	return nil
}

// IPOn returns the container's IPv4 address on the named network ("" when not attached).
func (c *Client) IPOn(ctx context.Context, name, network string) (string, error) {
	in, err := c.api.ContainerInspect(ctx, name)
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", name, err)
	}
	if in.NetworkSettings == nil {
		return "", nil
	}
	ep := in.NetworkSettings.Networks[network]
	if ep == nil {
		return "", nil
	}
	if ep.IPAMConfig != nil && ep.IPAMConfig.IPv4Address != "" {
		return ep.IPAMConfig.IPv4Address, nil // the fixed address, also while stopped
	}
	return ep.IPAddress, nil
}

// File is a named file's content, for WriteFiles.
type File struct {
	Name string
	Data []byte
}

// WriteFiles writes files into dir (mode 0644, owner 0) in the running container, in order,
// with one call of the engine's archive API (one round trip, however many files: the roles a
// failover writes are on its clock): dir may be in a volume of a container whose root file
// system is read-only.
func (c *Client) WriteFiles(ctx context.Context, containerName, dir string, files ...File) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.Name, Mode: 0o644, Size: int64(len(f.Data)), ModTime: now}); err != nil {
			return err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := c.api.CopyToContainer(ctx, containerName, dir, &buf, container.CopyToContainerOptions{}); err != nil {
		names := make([]string, len(files))
		for i, f := range files {
			names[i] = f.Name
		}
		return fmt.Errorf("write %s in %s (%s): %w", dir, containerName, strings.Join(names, ", "), err)
	}
	return nil
}

// ReadFile reads a regular file of at most 64 KiB from the container. A file that does not exist
// is an error wrapping fs.ErrNotExist; a container that does not exist is another error.
func (c *Client) ReadFile(ctx context.Context, containerName, file string) ([]byte, error) {
	if _, err := c.api.ContainerInspect(ctx, containerName); err != nil {
		return nil, fmt.Errorf("read %s in %s: %w", file, containerName, err)
	}
	rc, _, err := c.api.CopyFromContainer(ctx, containerName, file)
	if client.IsErrNotFound(err) {
		return nil, fmt.Errorf("read %s in %s: %w", file, containerName, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s in %s: %w", file, containerName, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("read %s in %s: %w", file, containerName, err)
	}
	if h.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("read %s in %s: not a regular file", file, containerName)
	}
	return io.ReadAll(io.LimitReader(tr, 64<<10))
}

// BridgeGateway returns the address of the host on Docker's default bridge network
// (host.docker.internal inside containers): the network's gateway, which some engines leave
// empty, else the host's docker0 address, else the first address of the bridge's subnet.
func (c *Client) BridgeGateway(ctx context.Context) (string, error) {
	nw, err := c.api.NetworkInspect(ctx, "bridge", network.InspectOptions{})
	if err != nil {
		return "", fmt.Errorf("inspect the bridge network: %w", err)
	}
	var subnet string
	for _, cfg := range nw.IPAM.Config {
		if ip := net.ParseIP(cfg.Gateway); ip != nil && ip.To4() != nil {
			return cfg.Gateway, nil
		}
		if subnet == "" {
			subnet = cfg.Subnet
		}
	}
	if ifc, err := net.InterfaceByName("docker0"); err == nil {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String(), nil
			}
		}
	}
	if _, ipn, err := net.ParseCIDR(subnet); err == nil && ipn.IP.To4() != nil {
		ip := ipn.IP.To4()
		return net.IPv4(ip[0], ip[1], ip[2], ip[3]+1).String(), nil
	}
	return "", fmt.Errorf("the bridge network has no gateway or subnet, and there is no docker0")
}
