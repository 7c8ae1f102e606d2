package docker

import (
	"context"
	"fmt"

	"github.com/docker/docker/client"
)

// ContainerReady reports whether the named container runs and, where it has a healthcheck,
// is healthy.
func (c *Client) ContainerReady(ctx context.Context, name string) (bool, error) {
	in, err := c.api.ContainerInspect(ctx, name)
	if client.IsErrNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect %s: %w", name, err)
	}
	if in.State == nil || !in.State.Running {
		return false, nil
	}
	return in.State.Health == nil || in.State.Health.Status == "healthy", nil
}
