// Package docker reads the state of a Compose project's containers from the Docker Engine API:
// which containers exist, their state and health, and the configuration hash Compose stamped on
// them. It is the only package that imports the Docker client library. Changing containers is
// Compose's job (package compose), not this one's.
package docker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// Compose's container labels.
const (
	labelProject    = "com.docker.compose.project"
	labelService    = "com.docker.compose.service"
	labelConfigHash = "com.docker.compose.config-hash"
	labelOneOff     = "com.docker.compose.oneoff"
	labelDigest     = "io.hastack.content-digest"
)

// Container is one container of a Compose project as the engine reports it.
type Container struct {
	ID         string
	Name       string
	Service    string
	ConfigHash string
	Digest     string // the agent's content digest label, if any
	State      string // created, running, paused, restarting, removing, exited, dead
	Health     string // healthy, unhealthy, starting, or "" without a healthcheck
	ExitCode   int
	Restart    string // restart policy: no, always, unless-stopped, on-failure
	Image      string // image ID the container runs
	OneOff     bool   // made by `compose run`
	Created    time.Time
	StartedAt  time.Time
	FinishedAt time.Time
}

// Ready reports whether the container is where a healthy deployment wants it: running (and
// healthy where it has a healthcheck), or a one-shot service (restart "no") that exited 0.
func (c Container) Ready() bool {
	if c.State == "running" {
		return c.Health == "" || c.Health == "healthy"
	}
	return c.State == "exited" && c.ExitCode == 0 && (c.Restart == "no" || c.Restart == "")
}

// Failed tells whether the container has failed for good, as opposed to not being ready yet:
// its own healthcheck reports it unhealthy (after its start period and retries), or it exited
// with an error and nothing will restart it.
func (c Container) Failed() bool {
	if c.State == "running" {
		return c.Health == "unhealthy"
	}
	return (c.State == "exited" || c.State == "dead") && c.ExitCode != 0 && (c.Restart == "no" || c.Restart == "")
}

// Describe says in a few words where the container is, for logs and status.
func (c Container) Describe() string {
	switch {
	case c.State == "running" && c.Health != "":
		return "running (" + c.Health + ")"
	case c.State == "exited":
		return fmt.Sprintf("exited (%d)", c.ExitCode)
	default:
		return c.State
	}
}

// Event is a container event of the project (start, die, stop, destroy, health_status, ...).
type Event struct {
	Service string
	Action  string
	Time    time.Time
}

// Client talks to the Docker engine.
type Client struct {
	api *client.Client
}

// New connects with the usual environment (DOCKER_HOST, ...) and negotiates the API version,
// so engines as old as API 1.41 (Docker 20.10) work.
func New() (*Client, error) {
	api, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Client{api: api}, nil
}

// Close releases the client's connections.
func (c *Client) Close() error { return c.api.Close() }

// Ping checks that the engine answers.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.api.Ping(ctx); err != nil {
		return fmt.Errorf("docker engine unreachable: %w (is the socket mounted?)", err)
	}
	return nil
}

// ProjectContainers lists every container of the project, in any state, one-off ones excluded.
func (c *Client) ProjectContainers(ctx context.Context, project string) ([]Container, error) {
	list, err := c.api.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", labelProject+"="+project)),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers of project %s: %w", project, err)
	}
	var out []Container
	for _, s := range list {
		if s.Labels[labelOneOff] == "True" {
			continue
		}
		in, err := c.api.ContainerInspect(ctx, s.ID)
		if client.IsErrNotFound(err) {
			continue // removed between list and inspect
		}
		if err != nil {
			return nil, fmt.Errorf("inspect container %s: %w", s.ID[:12], err)
		}
		ct := Container{
			ID:         in.ID,
			Name:       strings.TrimPrefix(in.Name, "/"),
			Service:    s.Labels[labelService],
			ConfigHash: s.Labels[labelConfigHash],
			Digest:     s.Labels[labelDigest],
			Image:      in.Image,
		}
		ct.Created, _ = time.Parse(time.RFC3339Nano, in.Created)
		if in.State != nil {
			ct.State = string(in.State.Status)
			ct.ExitCode = in.State.ExitCode
			if in.State.Health != nil {
				ct.Health = string(in.State.Health.Status)
			}
			ct.StartedAt, _ = time.Parse(time.RFC3339Nano, in.State.StartedAt)
			ct.FinishedAt, _ = time.Parse(time.RFC3339Nano, in.State.FinishedAt)
		}
		if in.HostConfig != nil {
			ct.Restart = string(in.HostConfig.RestartPolicy.Name)
		}
		out = append(out, ct)
	}
	return out, nil
}

// Events streams the project's container events until ctx ends. The error channel receives
// the error that ended the stream.
func (c *Client) Events(ctx context.Context, project string) (<-chan Event, <-chan error) {
	msgs, errs := c.api.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("label", labelProject+"="+project),
	)})
	out := make(chan Event)
	outErr := make(chan error, 1)
	go func() {
		defer close(out)
		for {
			select {
			case m := <-msgs:
				action := string(m.Action)
				if i := strings.IndexByte(action, ':'); i > 0 {
					action = action[:i] // "health_status: healthy" -> "health_status"
				}
				ev := Event{Service: m.Actor.Attributes[labelService], Action: action, Time: time.Unix(0, m.TimeNano)}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			case err := <-errs:
				outErr <- err
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, outErr
}
