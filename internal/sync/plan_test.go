package sync

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/compose"
	"github.com/hastack/hastack/internal/docker"
)

func TestMakePlan(t *testing.T) {
	svcs := []compose.Service{
		{Name: "db", ConfigHash: "d1"},
		{Name: "init", ConfigHash: "i1", Restart: "no"},
		{Name: "lb", ConfigHash: "l1", DependsOn: []string{"proxy"}},
		{Name: "proxy", ConfigHash: "p1", DependsOn: []string{"web2"}},
		{Name: "web1", ConfigHash: "w1", RollingGroup: "web", Digest: "files2"},
		{Name: "web2", ConfigHash: "w1", RollingGroup: "web", Digest: "files2"},
	}
	healthy := func(svc, hash string) docker.Container {
		c := docker.Container{Service: svc, ConfigHash: hash, State: "running", Health: "healthy"}
		if strings.HasPrefix(svc, "web") {
			c.Digest = "files2"
		}
		return c
	}
	tests := []struct {
		name    string
		running []docker.Container
		want    []Change
		steps   [][]string
	}{
		{"nothing runs", nil, []Change{{"db", ReasonMissing}, {"init", ReasonMissing}, {"lb", ReasonMissing}, {"proxy", ReasonMissing}, {"web1", ReasonMissing}, {"web2", ReasonMissing}},
			// lb depends on a rolling member through proxy: it goes last.
			[][]string{{"db", "init"}, {"web1"}, {"web2"}, {"lb", "proxy"}}},
		{"in sync, one-shot exited 0", []docker.Container{healthy("db", "d1"), healthy("lb", "l1"), healthy("proxy", "p1"), {Service: "init", ConfigHash: "i1", State: "exited", Restart: "no"},
			healthy("web1", "w1"), healthy("web2", "w1")}, nil, nil},
		{"configuration changed", []docker.Container{healthy("db", "d0"), healthy("lb", "l1"), healthy("proxy", "p1"), {Service: "init", ConfigHash: "i1", State: "exited", Restart: "no"},
			healthy("web1", "w1"), healthy("web2", "w1")}, []Change{{"db", ReasonConfig}}, [][]string{{"db"}}},
		{"files changed", []docker.Container{healthy("db", "d1"), healthy("lb", "l1"), healthy("proxy", "p1"), {Service: "init", ConfigHash: "i1", State: "exited", Restart: "no"},
			{Service: "web1", ConfigHash: "w0", Digest: "files1", State: "running", Health: "healthy"},
			{Service: "web2", ConfigHash: "w0", Digest: "files1", State: "running", Health: "healthy"}},
			[]Change{{"web1", ReasonFiles}, {"web2", ReasonFiles}}, [][]string{{"web1"}, {"web2"}}},
		{"stopped by hand, unhealthy, failed one-shot, orphan", []docker.Container{
			{Service: "db", ConfigHash: "d1", State: "running", Health: "unhealthy"},
			healthy("lb", "l1"), healthy("proxy", "p1"),
			{Service: "init", ConfigHash: "i1", State: "exited", ExitCode: 1, Restart: "no"},
			{Service: "web1", ConfigHash: "w1", State: "exited", Restart: "unless-stopped"},
			healthy("web2", "w1"), healthy("old", "o1")},
			[]Change{{"db", ReasonStopped}, {"init", ReasonStopped}, {"old", ReasonOrphan}, {"web1", ReasonStopped}},
			[][]string{{"db", "init"}, {"web1"}}},
		{"only an orphan", []docker.Container{healthy("db", "d1"), healthy("lb", "l1"), healthy("proxy", "p1"), {Service: "init", ConfigHash: "i1", State: "exited", Restart: "no"},
			healthy("web1", "w1"), healthy("web2", "w1"), healthy("old", "o1")},
			[]Change{{"old", ReasonOrphan}}, [][]string{{"db", "init"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := MakePlan(svcs, tt.running)
			if !reflect.DeepEqual(p.Changes, tt.want) {
				t.Errorf("changes %v, want %v", p.Changes, tt.want)
			}
			if !reflect.DeepEqual(p.Steps, tt.steps) {
				t.Errorf("steps %v, want %v", p.Steps, tt.steps)
			}
		})
	}
}
