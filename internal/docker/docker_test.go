package docker

import "testing"

func TestReady(t *testing.T) {
	for _, tt := range []struct {
		c    Container
		want bool
	}{
		{Container{State: "running"}, true},
		{Container{State: "running", Health: "healthy"}, true},
		{Container{State: "running", Health: "starting"}, false},
		{Container{State: "running", Health: "unhealthy"}, false},
		{Container{State: "exited", ExitCode: 0, Restart: "no"}, true},
		{Container{State: "exited", ExitCode: 1, Restart: "no"}, false},
		{Container{State: "exited", ExitCode: 0, Restart: "unless-stopped"}, false}, // stopped by hand
		{Container{State: "restarting"}, false},
		{Container{State: "created"}, false},
	} {
		if got := tt.c.Ready(); got != tt.want {
			t.Errorf("%+v: Ready() = %v, want %v", tt.c, got, tt.want)
		}
	}
}

func TestFailed(t *testing.T) {
	for _, tt := range []struct {
		c    Container
		want bool
	}{
		{Container{State: "running", Health: "unhealthy"}, true},
		{Container{State: "running", Health: "starting"}, false},
		{Container{State: "running", Health: "healthy"}, false},
		{Container{State: "running"}, false},
		{Container{State: "exited", ExitCode: 1, Restart: "no"}, true},
		{Container{State: "dead", ExitCode: 137}, true},
		{Container{State: "exited", ExitCode: 0, Restart: "no"}, false},
		{Container{State: "exited", ExitCode: 1, Restart: "unless-stopped"}, false}, // Docker restarts it
		{Container{State: "restarting"}, false},
		{Container{State: "created"}, false},
	} {
		if got := tt.c.Failed(); got != tt.want {
			t.Errorf("%+v: Failed() = %v, want %v", tt.c, got, tt.want)
		}
	}
}
