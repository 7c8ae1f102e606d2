package docker

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// LabelScratch marks the throw-away containers the agent starts (restore drills, restores into
// a fresh server), with the purpose as its value, so that leftovers can be found and removed.
const LabelScratch = "io.hastack.scratch"

// ScratchSpec is a throw-away container: no published port, no network unless one is named,
// its data in an anonymous volume that goes with it.
type ScratchSpec struct {
	Name    string
	Image   string
	User    string   // the user it runs as ("" for the image's)
	Cmd     []string // overrides the image's command; the entrypoint is replaced too when set
	Env     []string
	Network string // "" for none
	Purpose string // the LabelScratch value
	Volume  string // a path made an anonymous volume (removed with the container)
}

// ImageOf returns the image ID the named container runs.
func (c *Client) ImageOf(ctx context.Context, name string) (string, error) {
	in, err := c.api.ContainerInspect(ctx, name)
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", name, err)
	}
	return in.Image, nil
}

// StartScratch creates and starts a throw-away container, with no capability and no privilege
// gained through setuid binaries, like the stack's own containers.
func (c *Client) StartScratch(ctx context.Context, s ScratchSpec) error {
	cfg := &container.Config{
		Image: s.Image,
		User:  s.User,
		Env:   s.Env,
		// Images built by Compose carry its project and service labels, which a container
		// inherits: blank them, or Compose and the agent would count this one as the service's.
		Labels: map[string]string{LabelScratch: s.Purpose, labelProject: "", labelService: "", "com.docker.compose.version": ""},
	}
	if len(s.Cmd) > 0 {
		cfg.Entrypoint, cfg.Cmd = s.Cmd[:1], s.Cmd[1:]
	}
	if s.Volume != "" {
		cfg.Volumes = map[string]struct{}{s.Volume: {}}
	}
	host := &container.HostConfig{NetworkMode: "none", CapDrop: []string{"ALL"}, SecurityOpt: []string{"no-new-privileges:true"}}
	if s.Network != "" {
		host.NetworkMode = container.NetworkMode(s.Network)
	}
	created, err := c.api.ContainerCreate(ctx, cfg, host, nil, nil, s.Name)
	if err != nil {
		return fmt.Errorf("create container %s from %s: %w", s.Name, s.Image, err)
	}
	if err := c.api.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		rmErr := c.RemoveScratch(context.WithoutCancel(ctx), s.Name)
		return errors.Join(fmt.Errorf("start container %s: %w", s.Name, err), rmErr)
	}
	return nil
}

// RemoveScratch stops and removes a container with its anonymous volumes. A container that is
// already gone is not an error.
func (c *Client) RemoveScratch(ctx context.Context, name string) error {
	err := c.api.ContainerRemove(ctx, name, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !client.IsErrNotFound(err) {
		return fmt.Errorf("remove container %s: %w", name, err)
	}
	return nil
}

// ScratchContainers lists the names of the throw-away containers of a purpose.
func (c *Client) ScratchContainers(ctx context.Context, purpose string) ([]string, error) {
	list, err := c.api.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelScratch+"="+purpose))})
	if err != nil {
		return nil, fmt.Errorf("list %s containers: %w", purpose, err)
	}
	var names []string
	for _, ct := range list {
		if len(ct.Names) > 0 {
			names = append(names, ct.Names[0][1:])
		}
	}
	return names, nil
}
